//! JSON bodies checked the way Zod reports: every problem with its path, as
//! `400 {"error":"validation_failed","issues":[{"path":"prompts[3]","message":"..."}]}`;
//! a body that is not JSON is 415, one over the limit 413. No input reaches a 500.

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

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
