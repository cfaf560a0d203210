//! JSON bodies checked the way Zod reports: every problem with its path, as
//! `400 {"error":"validation_failed","issues":[{"path":"prompts[3]","message":"..."}]}`;
//! a body that is not JSON is 415, one over the limit 413. No input reaches a 500.
//!
//! Every rule here has its twin in the OpenAPI document (`openapi`), so that a request the
//! document calls valid is accepted and one it calls invalid is refused; Schemathesis checks both
//! directions. Where JSON Schema and Rust could read a rule differently, the rule is spelled out
//! for both: "blank" is made of exactly the characters [`char::is_whitespace`] names, listed in
//! [`NOT_BLANK_PATTERN`]; lengths count characters (code points), as JSON Schema does; a UUID is
//! the hyphenated form only, as JSON Schema's `format: uuid`.
//!
//! What is stored reads back unchanged. PostgreSQL's `jsonb` refuses NUL characters in strings
//! and keys, and stores numbers as exact decimals that it prints in full (`1e308` comes back as
//! 309 digits). [`stored_json_issues`] therefore refuses NUL anywhere and any number of magnitude
//! over [`MAX_SAFE_INTEGER`] (2^53 − 1, I-JSON's interoperable range, RFC 7493: beyond it a
//! client's integer is silently rounded to a double on the way in, and a browser rounds it on the
//! way out). The crate parses JSON with `serde_json`'s `float_roundtrip`, so the full decimal
//! PostgreSQL prints reads back as the very double that was stored; without it, `serde_json`'s
//! fast parser could round `17976931348623157` followed by 292 zeros up to infinity and fail the
//! whole listing with "number out of range".

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, Issue};

/// Checks that serde cannot express (lengths, ranges), after the shape is right.
pub trait Validate {
    fn issues(&self) -> Vec<Issue>;
}

/// A JSON body of type `T` that passed [`Validate`].
#[derive(Debug)]
pub struct Valid<T>(pub T);

impl<S, T> FromRequest<S> for Valid<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::Validation(vec![Issue { path: String::new(), message: "the body could not be read".into() }])
            }
        })?;
        let value: T = parse(&bytes)?;
        let issues = value.issues();
        if issues.is_empty() {
            Ok(Self(value))
        } else {
            Err(ApiError::Validation(issues))
        }
    }
}

/// The largest magnitude of a number the API stores: 2^53 − 1, JavaScript's
/// `Number.MAX_SAFE_INTEGER`.
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// The characters [`char::is_whitespace`] calls white space, as a regular-expression class body.
const WHITESPACE_CLASS: &str = r"\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// A string without NUL characters: the pattern the document gives every stored string.
pub const NO_NUL_PATTERN: &str = r"^[^\x00]*$";

/// A string with a character other than white space, and no NUL: [`is_blank`] and NUL refused.
pub static NOT_BLANK_PATTERN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!(r"^[^\x00]*[^\x00{WHITESPACE_CLASS}][^\x00]*$"));

/// Whether `text` is empty or only white space (what [`NOT_BLANK_PATTERN`] refuses, NUL aside).
#[must_use]
pub fn is_blank(text: &str) -> bool {
    text.chars().all(char::is_whitespace)
}

/// A UUID in its hyphenated form (either case), as JSON Schema's `format: uuid` reads it; the
/// simple, braced and URN forms the `uuid` crate also takes are refused.
#[must_use]
pub fn strict_uuid(text: &str) -> Option<uuid::Uuid> {
    let id = uuid::Uuid::try_parse(text).ok()?;
    (text.len() == 36).then_some(id)
}

/// What of `value` PostgreSQL's `jsonb` would not give back as it is: NUL characters in keys or
/// strings, numbers of magnitude over [`MAX_SAFE_INTEGER`]. Each issue names its place under
/// `path` (`config.n`, `config.list[2]`).
#[must_use]
pub fn stored_json_issues(value: &Value, path: &str) -> Vec<Issue> {
    let mut issues = Vec::new();
    collect_stored_json_issues(value, path, &mut issues);
    issues
}

fn collect_stored_json_issues(value: &Value, path: &str, issues: &mut Vec<Issue>) {
    match value {
        Value::Null | Value::Bool(_) => {}
        Value::Number(number) => {
            if number.as_f64().is_none_or(|number| number.abs() > MAX_SAFE_INTEGER) {
                issues.push(Issue {
                    path: path.to_owned(),
                    message: format!("must be a number from -{MAX_SAFE_INTEGER_TEXT} to {MAX_SAFE_INTEGER_TEXT}"),
                });
            }
        }
        Value::String(text) => {
            if text.contains('\0') {
                issues.push(Issue { path: path.to_owned(), message: "must not contain NUL characters".into() });
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                collect_stored_json_issues(item, &format!("{path}[{index}]"), issues);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                if key.contains('\0') {
                    issues.push(Issue { path, message: "must not contain NUL characters in its name".into() });
                } else {
                    collect_stored_json_issues(item, &path, issues);
                }
            }
        }
    }
}

const MAX_SAFE_INTEGER_TEXT: &str = "9007199254740991";

/// Deserializes `bytes`, reporting the path of the first problem.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let message = clean_message(&error.inner().to_string());
        let mut path = issue_path(error.path());
        // Zod names the missing field itself; serde names its parent.
        if let Some(field) = message.strip_prefix("missing field `").and_then(|rest| rest.strip_suffix('`')) {
            path = if path.is_empty() { field.to_owned() } else { format!("{path}.{field}") };
        }
        ApiError::Validation(vec![Issue { path, message }])
    })?;
    deserializer.end().map_err(|_| {
        ApiError::Validation(vec![Issue {
            path: String::new(),
            message: "trailing characters after the JSON value".into(),
        }])
    })?;
    Ok(value)
}

/// `prompts[3]`, `config.model`: the path as a client writes it; unknown steps are left out.
fn issue_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            serde_path_to_error::Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
            }
            serde_path_to_error::Segment::Map { key } | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

/// `serde_json`'s message without its " at line 1 column 12", which means nothing to an API client.
fn clean_message(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    message.replace("invalid type: ", "expected another type: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code, reason = "only its presence and type are checked")]
        prompts: Vec<String>,
    }

    fn issues(json: &str) -> Vec<Issue> {
        match parse::<Body>(json.as_bytes()) {
            Err(ApiError::Validation(issues)) => issues,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    /// The characters a regular-expression class body names: escapes `\\t`, `\\xHH`, `\\uHHHH`,
    /// plain characters, and ranges between them.
    fn class_characters(class: &str) -> std::collections::BTreeSet<char> {
        let mut singles = Vec::new();
        let mut rest = class;
        while let Some(first) = rest.chars().next() {
            let (character, length) = match rest.strip_prefix('\\') {
                Some(escape) => match escape.chars().next().unwrap() {
                    't' => ('\t', 2),
                    'n' => ('\n', 2),
                    'r' => ('\r', 2),
                    'x' => (char::from_u32(u32::from_str_radix(&escape[1..3], 16).unwrap()).unwrap(), 4),
                    'u' => (char::from_u32(u32::from_str_radix(&escape[1..5], 16).unwrap()).unwrap(), 6),
                    other => panic!("unknown escape `\\{other}`"),
                },
                None => (first, first.len_utf8()),
            };
            singles.push(character);
            rest = &rest[length..];
        }
        let mut characters = std::collections::BTreeSet::new();
        let mut index = 0;
        while index < singles.len() {
            if singles.get(index + 1) == Some(&'-') && index + 2 < singles.len() {
                characters.extend(singles[index]..=singles[index + 2]);
                index += 3;
            } else {
                characters.insert(singles[index]);
                index += 1;
            }
        }
        characters
    }

    #[test]
    fn the_documented_white_space_is_exactly_rusts() {
        let rust: std::collections::BTreeSet<char> = (char::MIN..=char::MAX).filter(|c| c.is_whitespace()).collect();
        assert_eq!(class_characters(WHITESPACE_CLASS), rust);
        assert!(NOT_BLANK_PATTERN.contains(WHITESPACE_CLASS));
        assert!(is_blank("") && is_blank(" \u{3000}\t") && !is_blank(" a "));
    }

    #[test]
    fn uuids_are_hyphenated_only() {
        let id = "0b6f2c1e-6a43-4c1f-9a57-2d1e5f0c7a10";
        assert!(strict_uuid(id).is_some() && strict_uuid(&id.to_uppercase()).is_some());
        for other in [
            "0b6f2c1e6a434c1f9a572d1e5f0c7a10",
            "{0b6f2c1e-6a43-4c1f-9a57-2d1e5f0c7a10}",
            "urn:uuid:0b6f2c1e-6a43-4c1f-9a57-2d1e5f0c7a10",
            "",
        ] {
            assert_eq!(strict_uuid(other), None, "`{other}`");
        }
    }

    #[test]
    fn stored_json_issues_name_each_place() {
        let value = serde_json::json!({
            "ok": [1, 0.1, -9_007_199_254_740_991_i64, "text", null, {"nested": true}],
            "big": 9_007_199_254_740_992_u64,
            "max": f64::MAX,
            "list": ["a", "b\u{0}"],
            "map": {"k\u{0}": 1},
        });
        let mut places: Vec<String> =
            stored_json_issues(&value, "config").into_iter().map(|issue| issue.path).collect();
        places.sort();
        assert_eq!(places, ["config.big", "config.list[1]", "config.map.k\u{0}", "config.max"]);
    }

    #[test]
    fn paths_point_at_the_bad_value() {
        assert_eq!(issues(r#"{"prompts": ["a", 3]}"#)[0].path, "prompts[1]");
        assert_eq!(issues(r#"{"prompts": ["a"], "extra": 1}"#)[0].message, "unknown field `extra`, expected `prompts`");
        assert_eq!(issues("{}")[0].message, "missing field `prompts`");
        assert_eq!(issues("{")[0].path, "");
        assert!(issues(r#"{"prompts": []} x"#)[0].message.contains("trailing"));
        assert!(parse::<Body>(br#"{"prompts": []}"#).is_ok());
    }
}
