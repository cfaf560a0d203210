//! Caching: `Cache-Control` by kind of file, and `ETag` with `If-None-Match`.
//!
//! - Fingerprinted assets (a content hash of 8 or more characters, with at least one digit,
//!   before the extension: `app.3f9a1c2b.js`, `index-BxC3rT9a.css`) never change under their
//!   name: `public, max-age=31536000, immutable`.
//! - Everything else, `index.html` first, may change at the next deploy: `no-cache`, so the
//!   browser revalidates every time and a 304 makes that cheap.
//! - The `ETag` is weak and derived from the file's modification time, its full length and its
//!   encoding, so a precompressed variant has its own, and a byte range carries the whole file's.
//!   `If-None-Match` wins over `If-Modified-Since`, as RFC 9110 says.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use axum::middleware::Next;

/// A year: what `immutable` assets may be kept for.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Sets `Cache-Control` on static answers that have none.
pub async fn cache_control(request: Request<Body>, next: Next) -> Response<Body> {
    let fingerprinted = is_fingerprinted(request.uri().path());
    let mut response = next.run(request).await;
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        let value = if fingerprinted && response.status().is_success() { IMMUTABLE } else { REVALIDATE };
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

/// Adds an `ETag` to files served whole or in part, and answers 304 when the client has it.
pub async fn etag(mut request: Request<Body>, next: Next) -> Response<Body> {
    let conditional = matches!(*request.method(), Method::GET | Method::HEAD);
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    if if_none_match.is_some() {
        // The ETag decides; the date must not answer 304 on its own.
        request.headers_mut().remove(header::IF_MODIFIED_SINCE);
    }
    let mut response = next.run(request).await;
    let Some(tag) = tag_of(response.headers(), response.status()) else { return response };
    let Ok(tag_header) = HeaderValue::from_str(&tag) else { return response };
    response.headers_mut().insert(header::ETAG, tag_header.clone());
    if conditional && response.status() == StatusCode::OK && if_none_match.is_some_and(|values| matches(&values, &tag))
    {
        let mut not_modified = Response::new(Body::empty());
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        for name in [header::CACHE_CONTROL, header::LAST_MODIFIED, header::VARY, header::CONTENT_LOCATION] {
            if let Some(value) = response.headers().get(&name) {
                not_modified.headers_mut().insert(name, value.clone());
            }
        }
        not_modified.headers_mut().insert(header::ETAG, tag_header);
        return not_modified;
    }
    response
}

/// `W/"<hash>"` of the modification time, the full length and the encoding; `None` for answers
/// that are not files (no `Last-Modified`).
fn tag_of(headers: &HeaderMap, status: StatusCode) -> Option<String> {
    if status != StatusCode::OK && status != StatusCode::PARTIAL_CONTENT {
        return None;
    }
    let modified = headers.get(header::LAST_MODIFIED)?.to_str().ok()?;
    let length = match headers.get(header::CONTENT_RANGE).and_then(|range| range.to_str().ok()) {
        Some(range) => range.rsplit('/').next()?.to_owned(),
        None => headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.to_owned(),
    };
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()).unwrap_or("identity");
    // FNV-1a: stable across builds and processes, which the std hasher does not promise.
    let hash = [modified, &length, encoding]
        .iter()
        .flat_map(|part| part.bytes().chain([0]))
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    Some(format!("W/\"{hash:016x}\""))
}

/// Whether `If-None-Match` names `tag` (weak comparison) or is `*`.
fn matches(values: &HeaderValue, tag: &str) -> bool {
    let Ok(values) = values.to_str() else { return false };
    let bare = tag.trim_start_matches("W/");
    values.split(',').map(str::trim).any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == bare)
}

/// Whether the file name carries a content hash before its extension.
fn is_fingerprinted(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let Some((stem, _extension)) = name.rsplit_once('.') else { return false };
    let hash = stem.rsplit(['.', '-']).next().unwrap_or_default();
    hash.len() >= 8
        && hash.len() < stem.len()
        && hash.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && hash.chars().any(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_recognised() {
        for path in ["/app.3f9a1c2b.js", "/assets/index-BxC3rT9a.css", "/chunk-4f2a9b1c0d.mjs"] {
            assert!(is_fingerprinted(path), "{path}");
        }
        for path in ["/index.html", "/app.js", "/index-settings.css", "/3f9a1c2b.js", "/logo.svg", "/"] {
            assert!(!is_fingerprinted(path), "{path}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists() {
        let tag = "W/\"00000000000000ab\"";
        assert!(matches(&HeaderValue::from_static("\"00000000000000ab\""), tag));
        assert!(matches(&HeaderValue::from_static("\"x\", W/\"00000000000000ab\""), tag));
        assert!(matches(&HeaderValue::from_static("*"), tag));
        assert!(!matches(&HeaderValue::from_static("W/\"00000000000000ac\""), tag));
    }
}
