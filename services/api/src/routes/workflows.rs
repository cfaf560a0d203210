//! `GET /api/v1/workflows`: what a user can run.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/workflows", get(list))
}

async fn list(State(state): State<AppState>, _user: AuthUser) -> Result<Json<Value>, ApiError> {
    let rows: Vec<(uuid::Uuid, String, String, Value)> =
        sqlx::query_as("select id, name, prompt_template, model_config from workflows order by name")
            .fetch_all(&state.db)
            .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(id, name, prompt_template, model_config)| {
            json!({ "id": id, "name": name, "promptTemplate": prompt_template, "modelConfig": model_config })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}
