//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 document generated from the handlers' own
//! annotations and the types they answer with, so it cannot drift from what the API does.

use std::sync::OnceLock;

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
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
        serve,
    ),
    modifiers(&SecuritySchemes, &SharedResponses),
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

/// Answers any operation can give, added to each rather than repeated on every handler: 500
/// everywhere, 429 wherever the rate limit applies, 503 wherever the database is read.
struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                    )
                    .build(),
            )
        };
        for (path, item) in &mut openapi.paths.paths {
            let probe = matches!(path.as_str(), "/health" | "/health/ready" | "/metrics");
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses.entry("500".into()).or_insert_with(|| error("Internal error; logged with the request id"));
                if !probe {
                    responses.entry("429".into()).or_insert_with(|| error("Over the rate limit; see `Retry-After`"));
                }
                if path.starts_with("/api/v1/") && path != "/api/v1/openapi.json" {
                    responses
                        .entry("503".into())
                        .or_insert_with(|| error("A dependency is unavailable; `dependency` names it"));
                }
            }
        }
    }
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn serve() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(document())
}
