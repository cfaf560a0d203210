//! Errors in Google's format: keys, bodies, methods, and the random failure rate.

use masstock_fake_gemini::Settings;
use serde_json::json;

use crate::support::{
    assert_google_error, client, detail, generate, generate_url, post, request_body, start, start_with, API_KEY, MODEL,
};

#[test]
fn a_missing_key_is_permission_denied() {
    let gemini = start();
    let answer = post(&generate_url(&gemini), None, &request_body("a cat"));
    assert_google_error(&answer, 403, "PERMISSION_DENIED");
    assert!(answer.json["error"]["message"].as_str().unwrap().contains("unregistered callers"), "{}", answer.json);
    assert_google_error(&post(&generate_url(&gemini), Some(""), &request_body("a cat")), 403, "PERMISSION_DENIED");
    assert!(gemini.requests().iter().all(|request| !request.key_accepted && !request.reached_generation));
}

#[test]
fn an_invalid_key_is_googles_api_key_invalid() {
    let gemini = start();
    let answer = post(&generate_url(&gemini), Some("wrong-key"), &request_body("a cat"));
    assert_google_error(&answer, 400, "INVALID_ARGUMENT");
    assert_eq!(answer.json["error"]["message"], "API key not valid. Please pass a valid API key.");
    let error_info = detail(&answer, "ErrorInfo");
    assert_eq!(error_info["reason"], "API_KEY_INVALID");
    assert_eq!(error_info["domain"], "googleapis.com");
    assert_eq!(gemini.requests()[0].status, Some(400));
    assert!(!gemini.requests()[0].key_accepted);
}

#[test]
fn the_key_can_change_while_running() {
    let gemini = start();
    gemini.set_api_key(Some("rotated"));
    assert_eq!(generate(&gemini, "a cat").status, 400);
    assert_eq!(post(&generate_url(&gemini), Some("rotated"), &request_body("a cat")).status, 200);
    gemini.set_api_key(None);
    assert_eq!(post(&generate_url(&gemini), Some("anything"), &request_body("a cat")).status, 200);
}

#[test]
fn bad_bodies_are_invalid_arguments() {
    let gemini = start();
    let response =
        client().post(generate_url(&gemini)).header("x-goog-api-key", API_KEY).body("{not json").send().unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let json: serde_json::Value = response.json().unwrap();
    assert_eq!(json["error"]["status"], "INVALID_ARGUMENT");

    for body in [
        json!({}),
        json!({ "contents": [] }),
        json!({ "contents": [{ "role": "user", "parts": [{ "inlineData": { "mimeType": "image/png", "data": "" } }] }] }),
        json!({ "contents": [{ "role": "user", "parts": [{ "text": "a cat" }] }], "prompt": "a cat" }),
        json!({ "contents": [{ "role": "user", "parts": [{ "text": "a cat" }] }], "generationConfig": { "imageConfig": { "aspectRatio": "7:5" } } }),
    ] {
        assert_google_error(&post(&generate_url(&gemini), Some(API_KEY), &body), 400, "INVALID_ARGUMENT");
    }
    let requests = gemini.requests();
    assert_eq!(requests.len(), 6);
    assert!(requests
        .iter()
        .all(|request| request.key_accepted && !request.reached_generation && request.prompt.is_none()));
}

#[test]
fn other_methods_and_paths_are_not_found() {
    let gemini = start();
    let url = format!("{}/v1beta/models/{MODEL}:streamGenerateContent", gemini.url());
    assert_google_error(&post(&url, Some(API_KEY), &request_body("a cat")), 404, "NOT_FOUND");
    let url = format!("{}/v2/somewhere", gemini.url());
    assert_google_error(&post(&url, Some(API_KEY), &request_body("a cat")), 404, "NOT_FOUND");
}

#[test]
fn a_failure_rate_of_one_fails_everything_with_500_or_503() {
    let gemini = start_with(Settings::default().with_failure_rate(1.0).with_seed(3));
    let mut seen = std::collections::BTreeSet::new();
    for index in 0..12 {
        let answer = generate(&gemini, &format!("prompt {index}"));
        match answer.status {
            500 => {
                assert_google_error(&answer, 500, "INTERNAL");
            }
            503 => {
                assert_google_error(&answer, 503, "UNAVAILABLE");
                assert_eq!(answer.json["error"]["message"], "The model is overloaded. Please try again later.");
            }
            other => panic!("status {other}: {}", answer.json),
        }
        seen.insert(answer.status);
    }
    assert_eq!(seen.len(), 2, "both kinds of failure appear in twelve draws: {seen:?}");
    gemini.set_failure_rate(0.0);
    assert_eq!(generate(&gemini, "now it works").status, 200);
}

#[test]
fn failures_are_reproducible_from_the_seed() {
    let statuses = |seed: u64| {
        let gemini = start_with(Settings::default().with_failure_rate(0.5).with_seed(seed));
        (0..24).map(|index| generate(&gemini, &format!("prompt {index}")).status).collect::<Vec<_>>()
    };
    let first = statuses(7);
    assert_eq!(first, statuses(7));
    assert!(first.contains(&200) && first.iter().any(|status| *status >= 500), "{first:?}");
}
