//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 document generated from the handlers' own
//! annotations and the types they answer with, so it cannot drift from what the API does.
//!
//! The document is the API: it states every constraint the handlers enforce (lengths, patterns,
//! ranges, `additionalProperties: false` where unknown fields are refused) and every status they
//! answer. The schemas whose rules live in `validation` are built here from the same constants
//! (`email_schema`, `prompts_schema`, `config_schema` and the recursive `StoredJson`), and the
//! answers every operation shares are added by `SharedResponses`: 401 wherever credentials are
//! read, 413 and 415 wherever a body is, 429 wherever the rate limit applies, 503 wherever a
//! dependency is read, 500 everywhere. Schemathesis (`tests/it/schemathesis.rs`) checks that the
//! API and this document agree in both directions.
//!
//! Credentials: an `Authorization` header, when present, decides alone. It must be
//! `Bearer <valid access token>`; anything else (another scheme, a malformed or expired token) is
//! a 401 even when a valid `access_token` cookie comes with it, so that a script's broken token is
//! never papered over by a browser's session. Without the header, the cookie is read.

use std::sync::OnceLock;

use axum::Json;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::schema::{AdditionalProperties, AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HttpMethod, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes;
use crate::validation::{MAX_SAFE_INTEGER, NOT_BLANK_PATTERN, NO_NUL_PATTERN};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "MasStock API",
        description = "Sign in with `POST /api/v1/auth/login` (httpOnly cookies), or send the access token as `Authorization: Bearer` from scripts. An `Authorization` header, when present, decides alone: anything but `Bearer` and a valid access token is a 401, whatever the cookie says. Errors are `{\"error\": code, ...}`.",
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
    modifiers(&SecuritySchemes, &StoredJsonSchema, &Links, &SharedResponses),
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

/// A string without NUL characters, which PostgreSQL does not store.
fn no_nul_string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(NO_NUL_PATTERN))
}

/// `LoginBody.email`: what `LoginBody::issues` enforces.
pub fn email_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(254))
        .pattern(Some(NOT_BLANK_PATTERN.as_str()))
        .description(Some("1 to 254 characters, with a character other than white space and no NUL"))
        .examples([serde_json::json!("ana@example.com")])
}

/// `NewExecution.prompts`: what `NewExecution::issues` enforces.
pub fn prompts_schema() -> impl Into<RefOr<Schema>> {
    let prompt = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(routes::executions::MAX_PROMPT_CHARS))
        .pattern(Some(NOT_BLANK_PATTERN.as_str()));
    ArrayBuilder::new().items(prompt).min_items(Some(1)).max_items(Some(masstock_schema::MAX_PROMPTS)).description(
        Some("1 to 50 prompts of 1 to 2000 characters, each with a character other than white space and no NUL"),
    )
}

/// `NewExecution.config`: an object of [`StoredJson`](StoredJsonSchema) values.
#[must_use]
pub fn config_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::RefOr(Ref::from_schema_name("StoredJson").into())))
        .property_names(Some(no_nul_string()))
        .description(Some(
            "Options for the model: at most 8 KiB of JSON, without NUL characters in names or strings, numbers from -(2^53 - 1) to 2^53 - 1; stored and given back unchanged",
        ))
}

/// `StoredJson`: any JSON value PostgreSQL's `jsonb` gives back unchanged, as
/// `validation::stored_json_issues` enforces it: no NUL in strings or names, numbers within
/// ±(2^53 − 1). Recursive, through arrays and objects.
struct StoredJsonSchema;

impl Modify for StoredJsonSchema {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        #[allow(clippy::cast_possible_truncation, reason = "2^53 - 1 is an exact integer")]
        let bound = MAX_SAFE_INTEGER as isize;
        let itself = || RefOr::Ref(Ref::from_schema_name("StoredJson"));
        let stored = AnyOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ObjectBuilder::new().schema_type(Type::Number).minimum(Some(-bound)).maximum(Some(bound)))
            .item(no_nul_string())
            .item(ArrayBuilder::new().items(itself()))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(AdditionalProperties::RefOr(itself())))
                    .property_names(Some(no_nul_string())),
            )
            .description(Some(
                "A JSON value stored as it is: no NUL in strings or names, numbers from -(2^53 - 1) to 2^53 - 1",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .schemas
            .insert("StoredJson".into(), RefOr::T(Schema::AnyOf(stored)));
    }
}

/// How one answer leads to the next request: a new execution to itself, a page to its first
/// item, an execution to its first image. Clients (and Schemathesis's stateful phase) follow them.
struct Links;

/// A link from the `status` answer of `method path`, named `name`, to the operation
/// `operation_id` with `parameters` (runtime expressions).
struct LinkSpec {
    method: HttpMethod,
    path: &'static str,
    status: &'static str,
    name: &'static str,
    operation_id: &'static str,
    parameters: &'static [(&'static str, &'static str)],
}

const LINKS: [LinkSpec; 3] = [
    LinkSpec {
        method: HttpMethod::Post,
        path: "/api/v1/executions",
        status: "202",
        name: "show",
        operation_id: "show",
        parameters: &[("id", "$response.body#/id")],
    },
    LinkSpec {
        method: HttpMethod::Get,
        path: "/api/v1/executions",
        status: "200",
        name: "firstItem",
        operation_id: "show",
        parameters: &[("id", "$response.body#/items/0/id")],
    },
    LinkSpec {
        method: HttpMethod::Get,
        path: "/api/v1/executions/{id}",
        status: "200",
        name: "firstResult",
        operation_id: "result",
        parameters: &[("id", "$request.path.id"), ("index", "$response.body#/results/0/index")],
    },
];

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for spec in &LINKS {
            let Some(item) = openapi.paths.paths.get_mut(spec.path) else { continue };
            let operation = match spec.method {
                HttpMethod::Post => item.post.as_mut(),
                _ => item.get.as_mut(),
            };
            let Some(RefOr::T(response)) =
                operation.and_then(|operation| operation.responses.responses.get_mut(spec.status))
            else {
                continue;
            };
            // utoipa 5.5 writes `Link::operation_id` as `operation_id`, which no reader knows:
            // the field goes in as `operationId` through the flattened extensions instead.
            let link = spec
                .parameters
                .iter()
                .fold(LinkBuilder::new(), |link, (parameter, value)| link.parameter(*parameter, *value))
                .extensions(Some(Extensions::from_iter([("operationId", spec.operation_id)])))
                .build();
            response.links.insert(spec.name.to_owned(), RefOr::T(link));
        }
    }
}

/// Answers any operation can give, added to each rather than repeated on every handler: 500
/// everywhere; 429 wherever the rate limit applies; 503 wherever a dependency is read; 401
/// wherever credentials are read; 413 and 415 wherever a JSON body is read.
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
                if operation.security.as_ref().is_some_and(|security| !security.is_empty()) {
                    responses.entry("401".into()).or_insert_with(|| {
                        error("Not signed in, or an `Authorization` header that is not `Bearer` and a valid access token (whatever the cookie says)")
                    });
                }
                if operation.request_body.is_some() {
                    responses.entry("413".into()).or_insert_with(|| error("Body over 512 KiB"));
                    responses.entry("415".into()).or_insert_with(|| error("Not `Content-Type: application/json`"));
                }
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
