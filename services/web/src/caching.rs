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

/// Sets `Cache-Control` on static answers that have none. A 304 says what the 200 would, or a
/// cache updating its copy from it would stop treating an immutable asset as immutable.
pub async fn cache_control(request: Request<Body>, next: Next) -> Response<Body> {
    let fingerprinted = is_fingerprinted(request.uri().path());
    let mut response = next.run(request).await;
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        let kept = response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED;
        let value = if fingerprinted && kept { IMMUTABLE } else { REVALIDATE };
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

/// The tag of a file's stored representation (modification time, whole length, stored
/// encoding), found inside the compression layer and completed outside it by [`etag`].
#[derive(Debug, Clone)]
struct StoredTag(u64);

/// Inside the compression layer: notes the stored representation's tag on file answers.
pub async fn stored_tag(request: Request<Body>, next: Next) -> Response<Body> {
    let mut response = next.run(request).await;
    if let Some(hash) = stored_hash(response.headers(), response.status()) {
        response.extensions_mut().insert(StoredTag(hash));
    }
    response
}

/// Outside the compression layer: sets the `ETag` of what is actually sent (a body compressed
/// on the fly is another representation, with its own tag), `Vary: Accept-Encoding` on every
/// file answer, and answers 304 when the client already has it.
pub async fn etag(mut request: Request<Body>, next: Next) -> Response<Body> {
    let conditional = matches!(*request.method(), Method::GET | Method::HEAD);
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    if if_none_match.is_some() {
        // The ETag decides; the date must not answer 304 on its own.
        request.headers_mut().remove(header::IF_MODIFIED_SINCE);
    }
    let mut response = next.run(request).await;
    let is_file = response.extensions().get::<StoredTag>().is_some()
        || (response.status() == StatusCode::NOT_MODIFIED && response.headers().contains_key(header::LAST_MODIFIED));
    if is_file && !response.headers().contains_key(header::VARY) {
        response.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    let Some(StoredTag(stored)) = response.extensions().get::<StoredTag>().cloned() else { return response };
    let encoding =
        response.headers().get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()).unwrap_or("identity");
    let tag = format!("W/\"{:016x}\"", fnv(&[&stored.to_le_bytes(), encoding.as_bytes()]));
    let Ok(tag_header) = HeaderValue::from_str(&tag) else { return response };
    response.headers_mut().insert(header::ETAG, tag_header.clone());
    let has_it = if_none_match.is_some_and(|values| matches(&values, &tag));
    // RFC 9110 §13.2.2: If-None-Match is evaluated before Range.
    let whole_or_part = matches!(response.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT);
    if conditional && whole_or_part && has_it {
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

/// A hash of the stored representation: modification time, whole length (a range carries the
/// whole file's), stored encoding (a `.br` or `.gz` sibling). `None` for answers that are not
/// files (no `Last-Modified`).
fn stored_hash(headers: &HeaderMap, status: StatusCode) -> Option<u64> {
    if status != StatusCode::OK && status != StatusCode::PARTIAL_CONTENT {
        return None;
    }
    let modified = headers.get(header::LAST_MODIFIED)?.to_str().ok()?;
    let length = match headers.get(header::CONTENT_RANGE).and_then(|range| range.to_str().ok()) {
        Some(range) => range.rsplit('/').next()?.to_owned(),
        None => headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.to_owned(),
    };
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()).unwrap_or("identity");
    Some(fnv(&[modified.as_bytes(), length.as_bytes(), encoding.as_bytes()]))
}

/// FNV-1a over `parts`: stable across builds and processes, which the std hasher does not promise.
fn fnv(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|part| part.iter().copied().chain([0]))
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Whether `If-None-Match` names `tag` (weak comparison) or is `*`.
fn matches(values: &HeaderValue, tag: &str) -> bool {
    let Ok(values) = values.to_str() else { return false };
    let bare = tag.trim_start_matches("W/");
    values.split(',').map(str::trim).any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == bare)
}

/// Whether the file name carries a content hash before its extension: after a `.` or a `-`,
/// either exactly 8 characters of base64url (Vite and Rollup's `index-B-7tWqvE.js`, which may hold
/// a `-`) or 8 or more hexadecimal digits (webpack's `app.3f9a1c2b.js`), mixing letters and digits
/// so that a date (`report-20240115.txt`) is not taken for one.
fn is_fingerprinted(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let Some((stem, _extension)) = name.rsplit_once('.') else { return false };
    let mixed = |hash: &str| hash.chars().any(|c| c.is_ascii_digit()) && hash.chars().any(|c| c.is_ascii_alphabetic());
    let base64url = stem.len() > 9
        && stem.is_char_boundary(stem.len() - 8)
        && matches!(stem.as_bytes()[stem.len() - 9], b'.' | b'-')
        && stem[stem.len() - 8..].chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && mixed(&stem[stem.len() - 8..]);
    let hex = stem.rsplit_once(['.', '-']).is_some_and(|(head, hash)| {
        !head.is_empty() && hash.len() >= 8 && hash.chars().all(|c| c.is_ascii_hexdigit()) && mixed(hash)
    });
    base64url || hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_recognised() {
        for path in [
            "/app.3f9a1c2b.js",
            "/assets/index-BxC3rT9a.css",
            "/chunk-4f2a9b1c0d.mjs",
            "/index-B-7tWqvE.js",
            "/a-abcdef_1.js",
        ] {
            assert!(is_fingerprinted(path), "{path}");
        }
        let plain =
            ["/index.html", "/app.js", "/index-settings.css", "/3f9a1c2b.js", "/logo.svg", "/", "/report-20240115.txt"];
        for path in plain {
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
