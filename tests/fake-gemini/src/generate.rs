//! `POST /v1beta/models/{model}:generateContent`: reading Gemini's request, the prompt's triggers, and
//! the answer in Gemini's format.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::google_error::GoogleError;
use crate::png;
use crate::settings::ImageMode;
use crate::state::{Answer, Arrival, Generation, Shared};

/// The method the fake serves, after the colon in the path's last segment.
pub(crate) const GENERATE_CONTENT: &str = "generateContent";

/// The aspect ratios Gemini's image models offer in `imageConfig.aspectRatio`.
const ASPECT_RATIOS: [&str; 10] = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"];

/// The top-level fields of a `GenerateContentRequest`, in both spellings proto JSON accepts.
const KNOWN_FIELDS: [&str; 13] = [
    "contents",
    "generationConfig",
    "generation_config",
    "safetySettings",
    "safety_settings",
    "systemInstruction",
    "system_instruction",
    "tools",
    "toolConfig",
    "tool_config",
    "cachedContent",
    "cached_content",
    "model",
];

/// What the fake needs of a request: the prompt and what kind of answer is wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GenerateRequest {
    pub prompt: String,
    /// Width and height of the image to draw, from `imageConfig.aspectRatio` (square by default).
    pub image_size: (u32, u32),
    /// False when `responseModalities` leaves out `IMAGE`.
    pub wants_image: bool,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    parts: Vec<Part>,
}

/// Parts other than text (`inlineData`, `fileData`, …) are accepted and ignored.
#[derive(Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(default, alias = "response_modalities")]
    response_modalities: Option<Vec<String>>,
    #[serde(default, alias = "image_config")]
    image_config: Option<ImageConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ImageConfig {
    #[serde(default, alias = "aspect_ratio")]
    aspect_ratio: Option<String>,
}

fn invalid_payload(reason: impl std::fmt::Display) -> GoogleError {
    GoogleError::invalid_argument(format!("Invalid JSON payload received. {reason}"))
}

/// Reads a `GenerateContentRequest`, answering what Gemini would to one it rejects.
pub(crate) fn parse_request(body: &[u8]) -> Result<GenerateRequest, GoogleError> {
    let request: Value = serde_json::from_slice(body).map_err(invalid_payload)?;
    let Value::Object(fields) = request else {
        return Err(invalid_payload("Expected an object at the top level."));
    };
    if let Some(unknown) = fields.keys().find(|name| !KNOWN_FIELDS.contains(&name.as_str())) {
        return Err(invalid_payload(format!("Unknown name \"{unknown}\": Cannot find field.")));
    }

    let contents = match fields.get("contents") {
        None | Some(Value::Null) => Vec::new(),
        Some(contents) => {
            Vec::<Content>::deserialize(contents).map_err(|error| invalid_payload(format!("contents: {error}")))?
        }
    };
    if contents.is_empty() {
        return Err(GoogleError::invalid_argument("* GenerateContentRequest.contents: contents is not specified\n"));
    }
    if contents.iter().any(|content| !matches!(content.role.as_deref(), None | Some("" | "user" | "model"))) {
        return Err(GoogleError::invalid_argument("Please use a valid role: user, model."));
    }
    let texts: Vec<&str> = contents
        .iter()
        .filter(|content| matches!(content.role.as_deref(), None | Some("" | "user")))
        .flat_map(|content| &content.parts)
        .filter_map(|part| part.text.as_deref())
        .filter(|text| !text.trim().is_empty())
        .collect();
    if texts.is_empty() {
        return Err(GoogleError::invalid_argument(
            "* GenerateContentRequest.contents: the user's contents hold no text part to take as the prompt\n",
        ));
    }

    let generation_config = match fields.get("generationConfig").or_else(|| fields.get("generation_config")) {
        None | Some(Value::Null) => GenerationConfig::default(),
        Some(config) => GenerationConfig::deserialize(config)
            .map_err(|error| invalid_payload(format!("generationConfig: {error}")))?,
    };
    let image_size = match generation_config.image_config.and_then(|config| config.aspect_ratio) {
        None => png::dimensions(1, 1),
        Some(aspect_ratio) => parse_aspect_ratio(&aspect_ratio).ok_or_else(|| {
            GoogleError::invalid_argument(format!(
                "* GenerateContentRequest.generation_config.image_config.aspect_ratio: unsupported aspect ratio \
                 `{aspect_ratio}`, use one of {}\n",
                ASPECT_RATIOS.join(", ")
            ))
        })?,
    };
    let wants_image = generation_config
        .response_modalities
        .is_none_or(|modalities| modalities.iter().any(|modality| modality.eq_ignore_ascii_case("IMAGE")));

    Ok(GenerateRequest { prompt: texts.join("\n"), image_size, wants_image })
}

fn parse_aspect_ratio(aspect_ratio: &str) -> Option<(u32, u32)> {
    if !ASPECT_RATIOS.contains(&aspect_ratio) {
        return None;
    }
    let (width, height) = aspect_ratio.split_once(':')?;
    Some(png::dimensions(width.parse().ok()?, height.parse().ok()?))
}

/// The markers a prompt may carry (see the crate's documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Triggers {
    pub fail: Option<u16>,
    pub flaky: Option<u32>,
    pub slow: Duration,
    pub no_image: bool,
    pub blocked: bool,
    /// MiB of padding in the image (`[bloat:MIB]`).
    pub bloat_mib: u32,
}

impl Triggers {
    pub(crate) fn in_prompt(prompt: &str) -> Self {
        let mut triggers = Self::default();
        let mut rest = prompt;
        while let Some(open) = rest.find('[') {
            let after_open = &rest[open + 1..];
            let Some(close) = after_open.find(']') else { break };
            if triggers.apply(&after_open[..close]) {
                rest = &after_open[close + 1..];
            } else {
                // Not a marker: look again from the next character, so `[[fail:500]` still counts.
                rest = after_open;
            }
        }
        triggers
    }

    /// Applies one marker's inside (`fail:500`); false if it is not a marker.
    fn apply(&mut self, marker: &str) -> bool {
        match marker.split_once(':') {
            Some(("fail", code)) => match code.parse::<u16>() {
                Ok(code @ 400..=599) => {
                    self.fail.get_or_insert(code);
                    true
                }
                _ => false,
            },
            Some(("flaky", times)) => times.parse().map(|times| self.flaky = Some(times)).is_ok(),
            Some(("bloat", mebibytes)) => match mebibytes.parse::<u32>() {
                Ok(mebibytes @ 1..=MAX_BLOAT_MIB) => {
                    self.bloat_mib = mebibytes;
                    true
                }
                _ => false,
            },
            Some(("slow", milliseconds)) => {
                milliseconds.parse().map(|milliseconds| self.slow += Duration::from_millis(milliseconds)).is_ok()
            }
            None if marker == "noimage" => {
                self.no_image = true;
                true
            }
            None if marker == "blocked" => {
                self.blocked = true;
                true
            }
            _ => false,
        }
    }
}

/// Roughly Gemini's count: a token is about four characters.
fn prompt_token_count(prompt: &str) -> u32 {
    u32::try_from(prompt.chars().count().div_ceil(4)).unwrap_or(u32::MAX).max(1)
}

/// The largest `[bloat:MIB]`: beyond the worker's 40 MiB answer limit once in base64.
const MAX_BLOAT_MIB: u32 = 64;

/// What Gemini bills an image output: 1290 tokens for one up to 1024×1024.
const IMAGE_TOKEN_COUNT: u32 = 1290;

/// The body of a 200 answer, as Gemini's `GenerateContentResponse`.
pub(crate) fn generated_body(generation: &Generation) -> Value {
    let prompt_tokens = prompt_token_count(&generation.prompt);
    match generation.kind {
        ImageMode::Image => {
            let (width, height) = generation.image_size;
            let mut image = png::image_for_prompt(&generation.prompt, width, height);
            let bloat_mib = Triggers::in_prompt(&generation.prompt).bloat_mib;
            if bloat_mib > 0 {
                image = png::padded(&image, usize::try_from(bloat_mib).unwrap_or(0) << 20);
            }
            let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, image);
            let text_tokens = 5;
            json!({
                "candidates": [{
                    "content": {
                        "role": "model",
                        "parts": [
                            { "text": "Here is your image" },
                            { "inlineData": { "mimeType": "image/png", "data": data } },
                        ],
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }],
                "usageMetadata": {
                    "promptTokenCount": prompt_tokens,
                    "candidatesTokenCount": IMAGE_TOKEN_COUNT + text_tokens,
                    "totalTokenCount": prompt_tokens + IMAGE_TOKEN_COUNT + text_tokens,
                    "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": prompt_tokens }],
                    "candidatesTokensDetails": [{ "modality": "IMAGE", "tokenCount": IMAGE_TOKEN_COUNT }],
                },
                "modelVersion": generation.model,
                "responseId": generation.response_id,
            })
        }
        ImageMode::TextOnly => {
            let text =
                "I can't draw this one, but here is what the image would show: the scene described in your prompt.";
            let text_tokens = prompt_token_count(text);
            json!({
                "candidates": [{
                    "content": { "role": "model", "parts": [{ "text": text }] },
                    "finishReason": "STOP",
                    "index": 0,
                }],
                "usageMetadata": {
                    "promptTokenCount": prompt_tokens,
                    "candidatesTokenCount": text_tokens,
                    "totalTokenCount": prompt_tokens + text_tokens,
                    "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": prompt_tokens }],
                },
                "modelVersion": generation.model,
                "responseId": generation.response_id,
            })
        }
        ImageMode::PromptBlocked => json!({
            "promptFeedback": {
                "blockReason": "SAFETY",
                "safetyRatings": [
                    { "category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE" },
                    { "category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE" },
                    { "category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE" },
                    { "category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true },
                ],
            },
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "totalTokenCount": prompt_tokens,
                "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": prompt_tokens }],
            },
            "modelVersion": generation.model,
            "responseId": generation.response_id,
        }),
    }
}

/// The key from the `x-goog-api-key` header, or else from `?key=`, as Google takes it.
fn presented_api_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(header) = headers.get("x-goog-api-key") {
        return Some(String::from_utf8_lossy(header.as_bytes()).into_owned());
    }
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(name, _)| *name == "key")
        .map(|(_, value)| percent_decode(value))
}

/// Decodes `application/x-www-form-urlencoded` text (`%XX` escapes and `+` for space).
fn percent_decode(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        if let Some(byte) = escaped {
            decoded.push(byte);
            index += 3;
        } else {
            decoded.push(if bytes[index] == b'+' { b' ' } else { bytes[index] });
            index += 1;
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Records the status answered when the answer is ready, or 499 (the client went away) when the
/// request is dropped while it waits.
struct InFlight {
    shared: Arc<Shared>,
    request_id: u64,
    status: u16,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.record_status(self.request_id, self.status);
    }
}

/// The largest body the fake reads; Gemini takes inline data up to 20 MB in a request.
pub(crate) const BODY_LIMIT: usize = 20 * 1024 * 1024;

pub(crate) async fn generate_content(
    State(shared): State<Arc<Shared>>,
    Path(model_and_method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived_at = Instant::now();
    let arrived_at_system = SystemTime::now();
    let (model, method) = model_and_method.rsplit_once(':').unwrap_or((model_and_method.as_str(), ""));
    let request = match &body {
        Ok(body) => parse_request(body),
        Err(_) => {
            Err(GoogleError::invalid_argument(format!("Request payload size exceeds the limit: {BODY_LIMIT} bytes.")))
        }
    };
    let prompt_characters = request.as_ref().map_or(0, |request| request.prompt.chars().count());
    let decision = shared.decide(&Arrival {
        arrived_at,
        arrived_at_system,
        model: model.to_owned(),
        method: method.to_owned(),
        presented_api_key: presented_api_key(&headers, query.as_deref()),
        request,
    });
    let mut in_flight = InFlight { shared: Arc::clone(&shared), request_id: decision.request_id, status: 499 };
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    let response = match decision.answer {
        Answer::Error(error) => error.into_response(),
        Answer::Generated(generation) => Json(generated_body(&generation)).into_response(),
    };
    in_flight.status = response.status().as_u16();
    tracing::info!(
        request_id = decision.request_id,
        model,
        method,
        prompt_characters,
        status = in_flight.status,
        elapsed_ms = u64::try_from(arrived_at.elapsed().as_millis()).unwrap_or(u64::MAX),
        "answered"
    );
    drop(in_flight);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_the_users_text() {
        let body = br#"{"contents":[
            {"role":"user","parts":[{"text":"a red bicycle"},{"inlineData":{"mimeType":"image/png","data":""}}]},
            {"role":"model","parts":[{"text":"sure"}]},
            {"parts":[{"text":"at dawn"}]}],
            "generationConfig":{"responseModalities":["TEXT","IMAGE"],"imageConfig":{"aspectRatio":"16:9"}}}"#;
        let request = parse_request(body).unwrap();
        assert_eq!(request.prompt, "a red bicycle\nat dawn");
        assert_eq!(request.image_size, (64, 36));
        assert!(request.wants_image);
    }

    #[test]
    fn snake_case_fields_are_accepted_as_by_proto_json() {
        let body = br#"{"contents":[{"parts":[{"text":"x"}]}],"generation_config":{"response_modalities":["TEXT"]}}"#;
        assert!(!parse_request(body).unwrap().wants_image);
    }

    #[test]
    fn bad_requests_are_invalid_arguments() {
        for body in [
            &b"not json"[..],
            br"[1]",
            br#"{"contents":[{"role":"user","parts":[{"text":"x"}]}],"prompt":"x"}"#,
            br#"{"contents":[]}"#,
            br#"{"contents":[{"role":"user","parts":[{"inlineData":{}}]}]}"#,
            br#"{"contents":[{"role":"user","parts":[{"text":"   "}]}]}"#,
            br#"{"contents":[{"role":"system","parts":[{"text":"x"}]}]}"#,
            br#"{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"imageConfig":{"aspectRatio":"7:3"}}}"#,
            br#"{"contents":"x"}"#,
        ] {
            let error = parse_request(body).expect_err(&String::from_utf8_lossy(body));
            assert_eq!(error.code, 400, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn triggers_are_found_anywhere_in_the_prompt() {
        let triggers = Triggers::in_prompt("a cat [slow:20] [[fail:503] [flaky:2] [noimage] [blocked] [slow:5]");
        assert_eq!(
            triggers,
            Triggers {
                fail: Some(503),
                flaky: Some(2),
                slow: Duration::from_millis(25),
                no_image: true,
                blocked: true,
                bloat_mib: 0,
            }
        );
    }

    #[test]
    fn malformed_markers_are_plain_text() {
        assert_eq!(
            Triggers::in_prompt("[fail:abc] [fail:200] [slow:] [flaky:-1] [noimage:1] [unclosed"),
            Triggers::default()
        );
        assert_eq!(Triggers::in_prompt("[fail:400] [fail:500]").fail, Some(400));
        assert_eq!(Triggers::in_prompt("a big one [bloat:24]").bloat_mib, 24);
        assert_eq!(Triggers::in_prompt("[bloat:0] [bloat:65] [bloat:x]"), Triggers::default());
    }

    #[test]
    fn the_key_comes_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_api_key(&headers, Some("alt=json&key=abc%2Fd+e")), Some("abc/d e".into()));
        assert_eq!(presented_api_key(&headers, Some("alt=json")), None);
        assert_eq!(presented_api_key(&headers, None), None);
        headers.insert("x-goog-api-key", "from-header".parse().unwrap());
        assert_eq!(presented_api_key(&headers, Some("key=from-query")), Some("from-header".into()));
    }

    #[test]
    fn percent_decoding_leaves_broken_escapes_alone() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
