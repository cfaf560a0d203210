//! Gemini's REST API: `POST {base}/v1beta/models/{model}:generateContent`, one prompt in, one
//! image out, with the retry rules of a well-behaved client.
//!
//! - 429 `RESOURCE_EXHAUSTED` waits for the answer's `RetryInfo.retryDelay` (or the backoff);
//! - 5xx, timeouts and broken connections are retried with exponential backoff and jitter;
//! - any other 4xx fails the prompt at once, with Gemini's own message;
//! - an answer without an image part is an error that says what came instead.
//!
//! Every request, retries included, first takes a slot from the shared [`GeminiQuota`]. The API key
//! travels only in the `x-goog-api-key` header and is scrubbed from every error message.
//!
//! In numbers: `retryDelay` is obeyed up to 5 min; the backoff doubles a base per attempt, capped
//! at 30 s, and waits a random point in its upper half; another 4xx is `Rejected` with Google's
//! status and message; a 200 without an image part is `NoImage` saying what came instead (block
//! reason, finish reason, text).

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::config::GeminiSettings;
use crate::gemini_quota::{GeminiQuota, QuotaError};
use crate::text::truncate;

/// The longest delay a 429's `RetryInfo` is obeyed for; beyond it the prompt gives up at once (a
/// transient failure: a later attempt of the job tries again).
const MAX_RETRY_INFO_DELAY: Duration = Duration::from_secs(300);
/// The longest backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The largest answer read: an image a few megabytes large, base64-encoded, with room to spare.
const MAX_RESPONSE_BYTES: usize = 40 * 1024 * 1024;
/// What an answer without an image said, as shown in the error: 200 characters and `…`.
const SHOWN_TEXT_CHARS: usize = 201;
/// Google's error message, as shown in the error: 500 characters and `…`.
const SHOWN_ERROR_CHARS: usize = 501;

/// An image Gemini made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedImage {
    pub mime_type: String,
    pub bytes: Vec<u8>,
}

/// Why a prompt has no image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeminiError {
    /// Gemini refused the request; sending it again cannot help.
    #[error("gemini refused the request ({status} {code}): {message}")]
    Rejected { status: u16, code: String, message: String },
    /// Gemini answered without an image.
    #[error("gemini answered without an image: {0}")]
    NoImage(String),
    /// Every attempt met a transient failure; a later run may succeed.
    #[error("gemini still failing after {attempts} attempt{}: {last}", if *attempts == 1 { "" } else { "s" })]
    GaveUp { attempts: u32, last: String },
    /// The shared Gemini quota (Redis) could not be asked: a failure of ours, not the prompt's.
    #[error("the rate limiter is unavailable: {0}")]
    Quota(String),
    /// The worker is stopping and the request was not sent.
    #[error("the worker is stopping")]
    Stopping,
}

impl GeminiError {
    /// Whether trying the prompt again later cannot help.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Rejected { .. } | Self::NoImage(_))
    }

    /// Whether the failure is ours (the worker's infrastructure or its shutdown), not the
    /// prompt's: it must not count against the prompt.
    #[must_use]
    pub fn is_ours(&self) -> bool {
        matches!(self, Self::Quota(_) | Self::Stopping)
    }
}

/// What one request came to.
#[derive(Debug)]
enum Attempt {
    Image(GeneratedImage),
    Permanent(GeminiError),
    /// Worth another try, after `wait` when the server said how long.
    Transient {
        error: String,
        wait: Option<Duration>,
    },
}

/// A client for one model, with its key.
pub struct GeminiClient {
    http: reqwest::Client,
    endpoint: String,
    key_header: reqwest::header::HeaderValue,
    settings: GeminiSettings,
}

/// Why a client cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("GEMINI_API_KEY: holds characters an HTTP header cannot carry (a trailing newline?)")]
    Key,
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

impl std::fmt::Debug for GeminiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiClient").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl GeminiClient {
    pub fn new(settings: GeminiSettings) -> Result<Self, ClientError> {
        let mut key_header =
            reqwest::header::HeaderValue::from_str(settings.api_key.expose()).map_err(|_| ClientError::Key)?;
        // Kept out of reqwest's and hyper's debug output.
        key_header.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("masstock-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let endpoint = format!("{}/v1beta/models/{}:generateContent", settings.base_url, settings.model);
        Ok(Self { http, endpoint, key_header, settings })
    }

    /// Generates the image for `prompt`; `config` is the execution's (e.g. `aspectRatio`).
    pub async fn generate_image(
        &self,
        prompt: &str,
        config: &Value,
        quota: &GeminiQuota,
    ) -> Result<GeneratedImage, GeminiError> {
        let body = request_body(prompt, config);
        let mut last = String::new();
        for attempt in 1..=self.settings.max_attempts {
            quota.acquire().await.map_err(|error| match error {
                QuotaError::Stopping => GeminiError::Stopping,
                QuotaError::Redis(error) => GeminiError::Quota(error.to_string()),
            })?;
            let wait = match self.send(&body).await {
                Attempt::Image(image) => return Ok(image),
                Attempt::Permanent(error) => return Err(error),
                Attempt::Transient { error, wait } => {
                    tracing::warn!(attempt, max_attempts = self.settings.max_attempts, %error, "gemini request failed");
                    last = error;
                    wait
                }
            };
            if let Some(wait) = wait.filter(|wait| *wait > MAX_RETRY_INFO_DELAY) {
                // Asked to come back much later: retrying sooner would only be refused again.
                return Err(GeminiError::GaveUp {
                    attempts: attempt,
                    last: format!("{last} (retry in {} s)", wait.as_secs()),
                });
            }
            if attempt < self.settings.max_attempts {
                tokio::time::sleep(wait.unwrap_or_else(|| backoff(self.settings.backoff, attempt))).await;
            }
        }
        Err(GeminiError::GaveUp { attempts: self.settings.max_attempts, last })
    }

    async fn send(&self, body: &Value) -> Attempt {
        let sent = self.http.post(&self.endpoint).header("x-goog-api-key", self.key_header.clone()).json(body).send();
        let response = match sent.await {
            Ok(response) => response,
            Err(error) => {
                return Attempt::Transient { error: self.scrub(&describe_transport_error(&error)), wait: None }
            }
        };
        let status = response.status().as_u16();
        let text = match read_limited(response).await {
            Ok(text) => text,
            Err(error) => return Attempt::Transient { error: self.scrub(&error), wait: None },
        };
        let parsed: Option<Value> = serde_json::from_slice(&text).ok();
        match status {
            200..=299 => match parsed {
                Some(answer) => match image_of(&answer) {
                    Ok(image) => Attempt::Image(image),
                    Err(error) => Attempt::Permanent(error),
                },
                None => {
                    Attempt::Transient { error: format!("status {status} with a body that is not JSON"), wait: None }
                }
            },
            429 | 500..=599 => {
                let (code, message) = error_of(parsed.as_ref(), status);
                let wait = parsed.as_ref().and_then(retry_delay);
                Attempt::Transient { error: self.scrub(&format!("{status} {code}: {message}")), wait }
            }
            // 408 is the server giving up on a slow request: a timeout, worth another try.
            408 => Attempt::Transient { error: "408 request timeout".to_owned(), wait: None },
            _ => {
                let (code, message) = error_of(parsed.as_ref(), status);
                Attempt::Permanent(GeminiError::Rejected { status, code, message: self.scrub(&message) })
            }
        }
    }

    /// `text` without the API key, whatever echoed it.
    fn scrub(&self, text: &str) -> String {
        let key = self.settings.api_key.expose();
        if key.is_empty() {
            text.to_owned()
        } else {
            text.replace(key, "[redacted]")
        }
    }
}

/// The request: the prompt as the user's text part, asking for an image.
fn request_body(prompt: &str, config: &Value) -> Value {
    let mut generation = json!({ "responseModalities": ["TEXT", "IMAGE"] });
    if let Some(aspect_ratio) = config.get("aspectRatio").and_then(Value::as_str) {
        generation["imageConfig"] = json!({ "aspectRatio": aspect_ratio });
    }
    json!({
        "contents": [{ "role": "user", "parts": [{ "text": prompt }] }],
        "generationConfig": generation,
    })
}

/// The image in the first candidate's `inlineData` part, or why there is none.
fn image_of(answer: &Value) -> Result<GeneratedImage, GeminiError> {
    let Some(candidate) = answer.pointer("/candidates/0") else {
        let reason = answer.pointer("/promptFeedback/blockReason").and_then(Value::as_str);
        return Err(GeminiError::NoImage(match reason {
            Some(reason) => format!("the prompt was blocked ({reason})"),
            None => "the answer has no candidate".to_owned(),
        }));
    };
    let parts = candidate.pointer("/content/parts").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for part in parts {
        let Some(inline) = part.get("inlineData") else { continue };
        let mime_type = inline.get("mimeType").and_then(Value::as_str).unwrap_or_default();
        let data = inline.get("data").and_then(Value::as_str).unwrap_or_default();
        if !mime_type.starts_with("image/") {
            continue;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|error| GeminiError::NoImage(format!("the image part is not valid base64 ({error})")))?;
        if bytes.is_empty() {
            return Err(GeminiError::NoImage("the image part is empty".to_owned()));
        }
        return Ok(GeneratedImage { mime_type: mime_type.to_owned(), bytes });
    }
    let finish = candidate.get("finishReason").and_then(Value::as_str).unwrap_or("unknown");
    let text: String = parts.iter().filter_map(|part| part.get("text").and_then(Value::as_str)).collect();
    Err(GeminiError::NoImage(if text.is_empty() {
        format!("no image part (finishReason {finish})")
    } else {
        format!("no image part (finishReason {finish}); it said: {}", truncate(&text, SHOWN_TEXT_CHARS))
    }))
}

/// Google's error status and message (`{"error": {"code", "status", "message"}}`).
fn error_of(answer: Option<&Value>, status: u16) -> (String, String) {
    let error = answer.and_then(|answer| answer.get("error"));
    let code = error.and_then(|error| error.get("status")).and_then(Value::as_str).unwrap_or("UNKNOWN").to_owned();
    let message = error.and_then(|error| error.get("message")).and_then(Value::as_str).map_or_else(
        || format!("status {status} without Google's error body"),
        |message| truncate(message, SHOWN_ERROR_CHARS),
    );
    (code, message)
}

/// `RetryInfo.retryDelay` from a 429's details: a protobuf duration such as `"2s"` or `"0.5s"`.
fn retry_delay(answer: &Value) -> Option<Duration> {
    let details = answer.pointer("/error/details")?.as_array()?;
    details
        .iter()
        .filter(|detail| {
            detail.get("@type").and_then(Value::as_str).is_some_and(|kind| kind.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|detail| detail.get("retryDelay").and_then(Value::as_str))
        .and_then(|delay| delay.strip_suffix('s')?.parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        // Anything beyond the bound is as good as the bound plus a second: the caller gives up.
        .map(|seconds| Duration::from_secs_f64(seconds.min(MAX_RETRY_INFO_DELAY.as_secs_f64() + 1.0)))
}

/// The wait before attempt `attempt + 1`: `base`, doubled at each attempt up to [`MAX_BACKOFF`],
/// then a random point in its upper half, so that workers that failed together do not retry
/// together.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(2_u32.saturating_pow(attempt.saturating_sub(1))).min(MAX_BACKOFF);
    let mut random = [0_u8; 8];
    let fraction = match getrandom::fill(&mut random) {
        Ok(()) => f64::from(u32::from_le_bytes([random[0], random[1], random[2], random[3]])) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    ceiling.mul_f64(0.5 + fraction / 2.0)
}

/// A transport error in words: what failed, without the URL's query (reqwest prints the URL).
fn describe_transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let kind = if error.is_connect() { "cannot connect" } else { "the exchange failed" };
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}

/// The body, refusing more than [`MAX_RESPONSE_BYTES`].
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => return Err(describe_transport_error(&error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_is_the_first_inline_image_part() {
        let answer = json!({"candidates": [{"content": {"parts": [
            {"text": "Here it is"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw=="}}
        ]}, "finishReason": "STOP"}]});
        assert_eq!(
            image_of(&answer).unwrap(),
            GeneratedImage { mime_type: "image/png".into(), bytes: vec![0x89, b'P', b'N', b'G'] }
        );
    }

    #[test]
    fn answers_without_an_image_say_what_came_instead() {
        let text_only =
            json!({"candidates": [{"content": {"parts": [{"text": "I cannot draw that"}]}, "finishReason": "STOP"}]});
        assert_eq!(
            image_of(&text_only).unwrap_err().to_string(),
            "gemini answered without an image: no image part (finishReason STOP); it said: I cannot draw that"
        );
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}});
        assert_eq!(
            image_of(&blocked).unwrap_err().to_string(),
            "gemini answered without an image: the prompt was blocked (SAFETY)"
        );
        assert!(image_of(&blocked).unwrap_err().is_permanent());
    }

    #[test]
    fn retry_delays_are_read_from_retry_info() {
        let answer = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}
        ]}});
        assert_eq!(retry_delay(&answer), Some(Duration::from_millis(1500)));
        assert_eq!(retry_delay(&json!({"error": {"details": [{"retryDelay": "2s"}]}})), None);
        assert_eq!(
            retry_delay(&json!({"error": {"details": [{"@type": "google.rpc.RetryInfo", "retryDelay": "soon"}]}})),
            None
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_ceiling() {
        for attempt in 1..=10 {
            let ceiling = Duration::from_secs(1).saturating_mul(2_u32.pow(attempt - 1)).min(MAX_BACKOFF);
            let wait = backoff(Duration::from_secs(1), attempt);
            assert!(wait >= ceiling / 2 && wait <= ceiling, "attempt {attempt}: {wait:?}");
        }
    }

    #[test]
    fn the_request_carries_the_prompt_and_the_aspect_ratio() {
        let body = request_body("a red fox", &json!({"aspectRatio": "16:9"}));
        assert_eq!(body["contents"][0]["parts"][0]["text"], "a red fox");
        assert_eq!(body["generationConfig"]["imageConfig"]["aspectRatio"], "16:9");
        assert!(request_body("x", &json!({})).pointer("/generationConfig/imageConfig").is_none());
    }
}
