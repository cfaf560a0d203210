//! Errors exactly as Google's APIs answer them: `{"error": {"code", "message", "status", "details"}}`.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

/// The metric and quota id Google names when the free tier's per-minute quota is exhausted.
const FREE_TIER_METRIC: &str = "generativelanguage.googleapis.com/generate_content_free_tier_requests";
const FREE_TIER_QUOTA_ID: &str = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier";
/// The same for a paid project, which is what the fake's own `requests_per_minute` imitates.
const PAID_TIER_METRIC: &str = "generativelanguage.googleapis.com/generate_content_requests";
const PAID_TIER_QUOTA_ID: &str = "GenerateRequestsPerMinutePerProjectPerModel";

/// One error answer; its HTTP status is `code`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GoogleError {
    pub code: u16,
    pub message: String,
    pub details: Vec<Value>,
}

impl GoogleError {
    fn new(code: u16, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: Vec::new() }
    }

    /// 400 `INVALID_ARGUMENT`, with a `BadRequest` detail as Google adds to payload errors.
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        let message = message.into();
        let details = vec![json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{ "description": message }],
        })];
        Self { code: 400, message, details }
    }

    /// 403: no key at all, in Google's words.
    pub(crate) fn missing_api_key() -> Self {
        Self::new(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). \
             Please use API Key or other form of API consumer identity to call this API.",
        )
    }

    /// 400: a key Google does not know.
    pub(crate) fn invalid_api_key() -> Self {
        let message = "API key not valid. Please pass a valid API key.";
        let details = vec![
            json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": { "service": "generativelanguage.googleapis.com" },
            }),
            json!({
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            }),
        ];
        Self { code: 400, message: message.into(), details }
    }

    /// 404 for a method the fake does not serve, or a path Gemini does not have.
    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(404, format!("{what} is not found for API version v1beta, or is not supported by the fake."))
    }

    /// 429 as the free tier answers it (rate-limit bursts and `[fail:429]`).
    pub(crate) fn free_tier_exhausted(model: &str, retry_delay: Duration) -> Self {
        Self::resource_exhausted(FREE_TIER_METRIC, FREE_TIER_QUOTA_ID, model, None, retry_delay)
    }

    /// 429 from the fake's own per-minute quota, naming its limit.
    pub(crate) fn quota_exhausted(model: &str, requests_per_minute: u32, retry_delay: Duration) -> Self {
        Self::resource_exhausted(PAID_TIER_METRIC, PAID_TIER_QUOTA_ID, model, Some(requests_per_minute), retry_delay)
    }

    fn resource_exhausted(
        metric: &str,
        quota_id: &str,
        model: &str,
        quota_value: Option<u32>,
        retry_delay: Duration,
    ) -> Self {
        let mut violation = json!({
            "quotaMetric": metric,
            "quotaId": quota_id,
            "quotaDimensions": { "location": "global", "model": model },
        });
        if let Some(quota_value) = quota_value {
            violation["quotaValue"] = Value::String(quota_value.to_string());
        }
        let details = vec![
            json!({ "@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation] }),
            json!({
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": protobuf_duration(retry_delay),
            }),
        ];
        Self { code: 429, message: "Resource has been exhausted (e.g. check quota).".into(), details }
    }

    pub(crate) fn internal() -> Self {
        Self::new(
            500,
            "An internal error has occurred. Please retry or report in \
             https://developers.generativeai.google/guide/troubleshooting",
        )
    }

    pub(crate) fn overloaded() -> Self {
        Self::new(503, "The model is overloaded. Please try again later.")
    }

    /// What `[fail:CODE]` answers: Google's usual message for that status.
    pub(crate) fn for_code(code: u16, model: &str) -> Self {
        match code {
            400 => Self::new(400, "Request contains an invalid argument."),
            401 => Self::new(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie \
                 or other valid authentication credential.",
            ),
            403 => Self::new(403, "The caller does not have permission"),
            404 => Self::not_found(&format!("models/{model}")),
            429 => Self::free_tier_exhausted(model, Duration::from_secs(1)),
            500 => Self::internal(),
            503 => Self::overloaded(),
            504 => Self::new(504, "Deadline expired before operation could complete."),
            other => Self::new(other, format!("The fake Gemini server answers {other} as the prompt asked.")),
        }
    }

    /// Google's name for a status code, as in `google.rpc.Code`.
    pub(crate) fn status_name(code: u16) -> &'static str {
        match code {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ABORTED",
            429 => "RESOURCE_EXHAUSTED",
            499 => "CANCELLED",
            500 => "INTERNAL",
            501 => "UNIMPLEMENTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "UNKNOWN",
        }
    }

    fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorFields {
                code: self.code,
                message: &self.message,
                status: Self::status_name(self.code),
                details: &self.details,
            },
        }
    }

    #[cfg(test)]
    pub(crate) fn to_json(&self) -> Value {
        serde_json::to_value(self.body()).expect("an error body is JSON")
    }
}

/// Structs rather than `json!` so the fields come in Google's order (`serde_json` sorts map keys).
#[derive(Serialize)]
struct ErrorBody<'error> {
    error: ErrorFields<'error>,
}

#[derive(Serialize)]
struct ErrorFields<'error> {
    code: u16,
    message: &'error str,
    status: &'static str,
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    details: &'error [Value],
}

impl IntoResponse for GoogleError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}

/// A `google.protobuf.Duration` in its JSON form: seconds with 0, 3, 6 or 9 fractional digits, then `s`.
pub(crate) fn protobuf_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if nanos == 0 {
        format!("{seconds}s")
    } else if nanos % 1_000_000 == 0 {
        format!("{seconds}.{:03}s", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{seconds}.{:06}s", nanos / 1_000)
    } else {
        format!("{seconds}.{nanos:09}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_protobuf_json() {
        assert_eq!(protobuf_duration(Duration::from_secs(2)), "2s");
        assert_eq!(protobuf_duration(Duration::from_millis(1500)), "1.500s");
        assert_eq!(protobuf_duration(Duration::from_micros(250)), "0.000250s");
        assert_eq!(protobuf_duration(Duration::from_nanos(7)), "0.000000007s");
    }

    #[test]
    fn the_free_tier_429_is_googles() {
        let error = GoogleError::free_tier_exhausted("gemini-2.5-flash-image", Duration::from_secs(2)).to_json();
        assert_eq!(error["error"]["code"], 429);
        assert_eq!(error["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(error["error"]["message"], "Resource has been exhausted (e.g. check quota).");
        assert_eq!(error["error"]["details"][0]["@type"], "type.googleapis.com/google.rpc.QuotaFailure");
        assert_eq!(error["error"]["details"][0]["violations"][0]["quotaId"], FREE_TIER_QUOTA_ID);
        assert_eq!(error["error"]["details"][1]["@type"], "type.googleapis.com/google.rpc.RetryInfo");
        assert_eq!(error["error"]["details"][1]["retryDelay"], "2s");
    }

    #[test]
    fn errors_without_details_leave_them_out() {
        let error = GoogleError::overloaded().to_json();
        assert_eq!(
            error,
            json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}})
        );
    }
}
