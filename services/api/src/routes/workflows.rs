//! `GET /api/v1/workflows`: what a user can run.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};

/// A workflow: how each prompt becomes an image.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    pub id: uuid::Uuid,
    #[schema(example = "Image from prompt")]
    pub name: String,
    /// The prompt sent to the model, `{prompt}` replaced by each of the execution's prompts.
    #[schema(example = "{prompt}")]
    pub prompt_template: String,
    #[schema(value_type = Object)]
    pub model_config: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowList {
    pub items: Vec<Workflow>,
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/workflows", get(list))
}

/// Every workflow, by name.
#[utoipa::path(get, path = "/api/v1/workflows", operation_id = "list_workflows", tag = "workflows", security(("bearer" = []), ("cookie" = [])), responses(
    (status = 200, description = "The workflows", body = WorkflowList),
    (status = 401, description = "Not signed in", body = ErrorBody),
))]
pub async fn list(State(state): State<AppState>, _user: AuthUser) -> Result<Json<WorkflowList>, ApiError> {
    let items: Vec<Workflow> =
        sqlx::query_as("select id, name, prompt_template, model_config from workflows order by name")
            .fetch_all(&state.db)
            .await?;
    Ok(Json(WorkflowList { items }))
}
