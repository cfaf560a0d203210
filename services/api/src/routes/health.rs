//! `GET /health` (the process answers) and `GET /health/ready` (its dependencies answer too).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::app::AppState;

/// How long a readiness probe waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/health/ready", get(ready))
}

/// 200 `{"status":"ok","timestamp":…}`, touching nothing: the liveness probe.
async fn health() -> Json<Value> {
    Json(
        json!({ "status": "ok", "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true) }),
    )
}

/// 200 when PostgreSQL and Redis both answer, else 503 naming which did not.
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let postgres = async {
        let probe = sqlx::query_scalar::<_, i32>("select 1").fetch_one(&state.db);
        matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Ok(1)))
    };
    let redis = async {
        let probe = async {
            let mut connection = state.redis.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut connection).await
        };
        matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Ok(pong)) if pong == "PONG")
    };
    let (postgres, redis) = tokio::join!(postgres, redis);
    let verdict = |up: bool| if up { "ok" } else { "unreachable" };
    let checks = json!({ "postgres": verdict(postgres), "redis": verdict(redis) });
    if postgres && redis {
        (StatusCode::OK, Json(json!({ "status": "ready", "checks": checks })))
    } else {
        let failed: Vec<&str> = [("postgres", postgres), ("redis", redis)]
            .into_iter()
            .filter(|(_, up)| !up)
            .map(|(name, _)| name)
            .collect();
        tracing::warn!(failed = ?failed, "not ready");
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "failed": failed, "checks": checks })))
    }
}
