//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 document generated from the handlers' own
//! annotations and the types they answer with, so it cannot drift from what the API does.

use std::sync::OnceLock;

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "MasStock API",
        description = "Sign in with `POST /api/v1/auth/login` (httpOnly cookies), or send the access token as `Authorization: Bearer` from scripts. Errors are `{\"error\": code, ...}`.",
    ),
    paths(
        routes::health::health,
        routes::health::ready,
        routes::auth::login,
        routes::auth::refresh,
        routes::auth::logout,
        routes::auth::me,
        routes::workflows::list,
        routes::executions::create,
        routes::executions::list,
        routes::executions::show,
        routes::executions::result,
        crate::metrics::endpoint,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "health", description = "Probes"),
        (name = "auth", description = "Cookie sessions with refresh rotation"),
        (name = "workflows", description = "What can be run"),
        (name = "executions", description = "Batches of prompts on the queue, and their images"),
        (name = "operations", description = "For the inside only"),
    ),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components
            .add_security_scheme("cookie", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("access_token"))));
    }
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

pub async fn serve() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(document())
}
