//! CORS from `CORS_ORIGIN`, as the reference's Express backend answered it: an allowed origin gets
//! itself back with credentials, the reference's methods and headers and a one-day max-age; any
//! other origin gets no `Access-Control-Allow-*` header at all. Preflights are answered here.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub const ALLOWED_METHODS: &str = "GET, POST, PUT, DELETE, PATCH, OPTIONS";
pub const ALLOWED_HEADERS: &str = "Content-Type, Authorization, X-Requested-With";
pub const MAX_AGE_SECONDS: &str = "86400";

/// The allowed origins, exactly as browsers send them.
#[derive(Debug, Clone)]
pub struct AllowedOrigins(pub Arc<[HeaderValue]>);

impl AllowedOrigins {
    #[must_use]
    pub fn new(origins: &[String]) -> Self {
        Self(origins.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()).collect())
    }
}

pub async fn cors(State(allowed): State<AllowedOrigins>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(ORIGIN).filter(|origin| allowed.0.contains(origin)).cloned();
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight { StatusCode::NO_CONTENT.into_response() } else { next.run(request).await };
    let headers = response.headers_mut();
    // Caches must keep one answer per origin.
    headers.append(VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        if preflight {
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOWED_METHODS));
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
            headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE_SECONDS));
        }
    }
    response
}
