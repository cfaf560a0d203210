//! The `/_fake/…` endpoints: accounting and knobs for tests in another process and `deploy --env local`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::accounting::{RecordedRequestView, Stats};
use crate::settings::{SettingsUpdate, SettingsView};
use crate::state::Shared;

/// `GET /_fake/stats`.
pub(crate) async fn stats(State(shared): State<Arc<Shared>>) -> Json<Stats> {
    Json(Stats::of(&shared.lock().requests))
}

/// `GET /_fake/requests`.
pub(crate) async fn requests(State(shared): State<Arc<Shared>>) -> Response {
    let inner = shared.lock();
    let views: Vec<RecordedRequestView<'_>> = inner.requests.iter().map(RecordedRequestView::from).collect();
    Json(views).into_response()
}

fn settings_view(shared: &Shared) -> Json<SettingsView> {
    let settings = shared.lock().settings.clone();
    Json(SettingsView::new(&settings, shared.rate_limit_burst_remaining()))
}

/// `GET /_fake/settings`.
pub(crate) async fn get_settings(State(shared): State<Arc<Shared>>) -> Json<SettingsView> {
    settings_view(&shared)
}

/// `POST /_fake/settings`: a partial JSON object; answers the settings in force, or 400 with
/// `{"error": "…"}`.
pub(crate) async fn post_settings(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let update = match SettingsUpdate::parse(&body) {
        Ok(update) => update,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": error.to_string() }))).into_response();
        }
    };
    shared.update_settings(|settings| update.apply_to(settings));
    if let Some(burst) = &update.rate_limit_burst {
        shared.rate_limit_burst(burst.count, Duration::from_millis(burst.retry_delay_ms));
    }
    tracing::info!("settings changed through /_fake/settings");
    settings_view(&shared).into_response()
}

/// `POST /_fake/reset`.
pub(crate) async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset();
    StatusCode::NO_CONTENT
}
