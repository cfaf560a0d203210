//! The `/_fake/…` endpoints another process uses to read the accounting and change the knobs.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{client, generate, generate_url, post, request_body, start, API_KEY};

fn get(url: &str) -> Value {
    let response = client().get(url).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().unwrap()
}

fn post_settings(base_url: &str, settings: &Value) -> (u16, Value) {
    let response = client().post(format!("{base_url}/_fake/settings")).json(settings).send().unwrap();
    (response.status().as_u16(), response.json().unwrap())
}

#[test]
fn stats_count_requests_by_status() {
    let gemini = start();
    gemini.rate_limit_burst(1, Duration::from_secs(2));
    for prompt in ["a", "b", "c", "d [fail:500]"] {
        generate(&gemini, prompt);
    }
    let stats = get(&format!("{}/_fake/stats", gemini.url()));
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["max_in_60s"], 4);
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["by_status"], json!({ "200": 2, "429": 1, "500": 1 }));
    assert_eq!(serde_json::to_value(gemini.stats()).unwrap(), stats);
}

#[test]
fn settings_change_from_another_process() {
    let gemini = start();
    let (status, settings) = post_settings(
        &gemini.url(),
        &json!({
            "api_key": "from-elsewhere",
            "requests_per_minute": 10,
            "latency_ms": 5,
            "image_mode": "text_only",
            "rate_limit_burst": { "count": 1, "retry_delay_ms": 3000 },
        }),
    );
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["expects_api_key"], true);
    assert_eq!(settings["requests_per_minute"], 10);
    assert_eq!(settings["image_mode"], "text_only");
    assert_eq!(settings["port"], gemini.address().port());
    assert!(!settings.to_string().contains("from-elsewhere"), "the key is never answered: {settings}");

    let current = gemini.settings();
    assert_eq!(current.api_key.as_deref(), Some("from-elsewhere"));
    assert_eq!(current.latency, Duration::from_millis(5));

    let url = generate_url(&gemini);
    assert_eq!(post(&url, Some(API_KEY), &request_body("a cat")).status, 400, "the old key is refused");
    let answer = post(&url, Some("from-elsewhere"), &request_body("a cat"));
    assert_eq!(answer.status, 429, "the burst: {}", answer.json);
    let answer = post(&url, Some("from-elsewhere"), &request_body("a cat"));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json["candidates"][0]["content"]["parts"].as_array().unwrap().len(), 1, "text only");

    let (status, settings) = post_settings(&gemini.url(), &json!({ "api_key": null, "requests_per_minute": null }));
    assert_eq!(status, 200);
    assert_eq!(settings["expects_api_key"], false);
    assert_eq!(settings["requests_per_minute"], Value::Null);
    assert_eq!(get(&format!("{}/_fake/settings", gemini.url())), settings);
}

#[test]
fn bad_settings_are_refused_with_a_reason() {
    let gemini = start();
    for (settings, expected) in [
        (json!({ "failure_rate": 3 }), "`failure_rate` must be between 0 and 1"),
        (json!({ "latency": 5 }), "unknown field `latency`"),
        (json!({ "requests_per_minute": 0 }), "`requests_per_minute` must be at least 1"),
        (json!({ "image_mode": "sometimes" }), "unknown variant `sometimes`"),
    ] {
        let (status, answer) = post_settings(&gemini.url(), &settings);
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(expected), "{answer}");
    }
    assert!(gemini.settings().failure_rate.abs() < f64::EPSILON, "unchanged");
}

#[test]
fn requests_and_reset_from_another_process() {
    let gemini = start();
    generate(&gemini, "a cat");
    let requests = get(&format!("{}/_fake/requests", gemini.url()));
    assert_eq!(requests[0]["prompt"], "a cat");
    assert_eq!(requests[0]["status"], 200);
    assert_eq!(requests[0]["key_accepted"], true);
    assert!(requests[0]["arrived_at_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(!requests.to_string().contains(API_KEY), "the key is never recorded: {requests}");

    let response = client().post(format!("{}/_fake/reset", gemini.url())).send().unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(get(&format!("{}/_fake/stats", gemini.url()))["requests"], 0);
}
