//! `GET /health` (the process answers) and `GET /health/ready` (its dependencies answer too).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;

/// How long a readiness probe waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The process answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// RFC 3339, milliseconds, UTC.
    #[schema(example = "2025-12-18T19:31:46.923Z", format = DateTime)]
    pub timestamp: String,
}

/// Each dependency: `ok` or `unreachable`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub postgres: &'static str,
    pub redis: &'static str,
}

/// Whether the API can serve: `ready`, or `unavailable` with what failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: &'static str,
    pub checks: Checks,
    /// The dependencies that did not answer, when any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<&'static str>,
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/health/ready", get(ready))
}

/// The liveness probe: touches nothing.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "The process answers", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok", timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true) })
}

/// The readiness probe: PostgreSQL and Redis, each within 2 s.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses(
    (status = 200, description = "PostgreSQL and Redis answer", body = Readiness),
    (status = 503, description = "A dependency does not answer; `failed` names it", body = Readiness),
))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
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
    let checks = Checks { postgres: verdict(postgres), redis: verdict(redis) };
    let failed: Vec<&'static str> =
        [("postgres", postgres), ("redis", redis)].into_iter().filter(|(_, up)| !up).map(|(name, _)| name).collect();
    if failed.is_empty() {
        (StatusCode::OK, Json(Readiness { status: "ready", checks, failed }))
    } else {
        tracing::warn!(failed = ?failed, "not ready");
        (StatusCode::SERVICE_UNAVAILABLE, Json(Readiness { status: "unavailable", checks, failed }))
    }
}
