//! The site: one folder of static files served as nginx serves a SPA, plus `/health` and
//! `/config.json`.
//!
//! - A path that names a file serves it; `/` and folders serve their `index.html`.
//! - A path without a file and without an extension (`/executions/42`) serves the root's
//!   `index.html`, as `try_files $uri /index.html` does: the app's router takes over.
//! - A path with an extension and no file (`/app.3f9a1c2b.js`) is a 404: a missing asset must
//!   not be answered with HTML that the browser would try to run as a script.
//! - Paths are decoded and checked by tower-http's `ServeDir`, which refuses `..`, absolute and
//!   drive-letter components in any encoding. Symbolic links inside the root are followed: the
//!   root is the image's own folder, and holds none.
//! - The landing page gets the same fallback: an unknown path shows the page (a soft 404), which
//!   suits a one-page site.
//! - `foo.br` / `foo.gz` next to `foo` are sent to clients that accept them; other compressible
//!   answers are compressed on the fly. Range, HEAD, `Last-Modified`/`If-Modified-Since` and MIME
//!   types come from `ServeDir`; `ETag` and `Cache-Control` from [`crate::caching`].

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use masstock_kit::AppEnv;
use tower::ServiceExt as _;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;

/// What the site serves, and what `/config.json` tells the browser.
#[derive(Debug, Clone)]
pub struct SiteSettings {
    /// The folder served.
    pub root: PathBuf,
    /// `APP_ENV`, for the browser to know where it runs.
    pub environment: AppEnv,
    /// `API_BASE_URL`: where the app calls the API (another origin in production).
    pub api_base_url: Option<String>,
    /// `APP_URL`: where the landing page's links to the app point.
    pub app_url: Option<String>,
}

/// The whole service.
pub fn router(settings: &SiteSettings) -> Router {
    let index = settings.root.join("index.html");
    let spa_fallback = tower::service_fn(move |request: Request<Body>| {
        let index = index.clone();
        async move {
            if has_extension(request.uri().path()) {
                return Ok::<_, Infallible>((StatusCode::NOT_FOUND, "not found\n").into_response());
            }
            let served = ServeFile::new(index).precompressed_br().precompressed_gzip().oneshot(request).await;
            Ok(match served {
                Ok(response) => response.map(Body::new),
                Err(error) => match error {},
            })
        }
    });
    let files = ServeDir::new(&settings.root)
        .precompressed_br()
        .precompressed_gzip()
        .append_index_html_on_directories(true)
        .fallback(spa_fallback);
    let config = serde_json::json!({
        "environment": environment_name(settings.environment),
        "api_base_url": settings.api_base_url,
        "app_url": settings.app_url,
    });
    Router::new()
        .route("/health", get(|| async { ([(header::CACHE_CONTROL, "no-store")], "healthy\n") }))
        .route(
            "/config.json",
            get(move || {
                let config = config.clone();
                async move { ([(header::CACHE_CONTROL, "no-cache")], axum::Json(config)) }
            }),
        )
        .fallback_service(files)
        .layer(axum::middleware::from_fn(crate::caching::cache_control))
        .layer(axum::middleware::from_fn(crate::caching::stored_tag))
        .layer(CompressionLayer::new().compress_when(DefaultPredicate::new().and(NotPartial)))
        .layer(axum::middleware::from_fn(crate::caching::etag))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<Body>| {
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
                })
                .on_response(|response: &Response<_>, latency: Duration, _span: &tracing::Span| {
                    let latency_ms = (latency.as_secs_f64() * 100_000.0).round() / 100.0;
                    tracing::info!(status = response.status().as_u16(), latency_ms, "response");
                }),
        )
}

fn environment_name(environment: AppEnv) -> &'static str {
    match environment {
        AppEnv::Production => "production",
        AppEnv::Staging => "staging",
        AppEnv::Local => "local",
        AppEnv::Test => "test",
    }
}

/// Whether the path's last segment has an extension (`app.js`, not `executions` or `.well-known`).
fn has_extension(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    name.rfind('.').is_some_and(|dot| dot > 0 && dot + 1 < name.len())
}

/// A byte range is sent as stored: compressing it would make `Content-Range` lie.
#[derive(Debug, Clone, Copy)]
struct NotPartial;

impl Predicate for NotPartial {
    fn should_compress<B: axum::body::HttpBody>(&self, response: &Response<B>) -> bool {
        response.status() != StatusCode::PARTIAL_CONTENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_read_from_the_last_segment() {
        for path in ["/app.js", "/assets/index-BxC3rT9a.css", "/favicon.ico"] {
            assert!(has_extension(path), "{path}");
        }
        for path in ["/", "/executions/42", "/.well-known", "/a.b/c", "/trailing."] {
            assert!(!has_extension(path), "{path}");
        }
    }
}
