//! 429s: bursts queued by tests, and the fake's own per-minute quota.

use std::time::Duration;

use masstock_fake_gemini::Settings;

use crate::support::{
    assert_google_error, detail, generate, generate_url, post, request_body, start, start_with, API_KEY,
};

#[test]
fn a_burst_answers_429_with_retry_info_then_lets_requests_through() {
    let gemini = start();
    gemini.rate_limit_burst(2, Duration::from_secs(2));
    for _ in 0..2 {
        let answer = generate(&gemini, "a cat");
        assert_google_error(&answer, 429, "RESOURCE_EXHAUSTED");
        assert_eq!(answer.json["error"]["message"], "Resource has been exhausted (e.g. check quota).");
        let details = answer.json["error"]["details"].as_array().unwrap();
        assert_eq!(details[0]["@type"], "type.googleapis.com/google.rpc.QuotaFailure");
        assert_eq!(
            details[0]["violations"][0]["quotaMetric"],
            "generativelanguage.googleapis.com/generate_content_free_tier_requests"
        );
        assert_eq!(details[0]["violations"][0]["quotaId"], "GenerateRequestsPerMinutePerProjectPerModel-FreeTier");
        assert_eq!(details[1]["@type"], "type.googleapis.com/google.rpc.RetryInfo");
        assert_eq!(details[1]["retryDelay"], "2s");
    }
    assert_eq!(generate(&gemini, "a cat").status, 200);

    gemini.rate_limit_burst(1, Duration::from_millis(1500));
    assert_eq!(detail(&generate(&gemini, "a cat"), "RetryInfo")["retryDelay"], "1.500s");
    assert_eq!(generate(&gemini, "a cat").status, 200);
}

#[test]
fn a_burst_spares_requests_with_a_bad_key() {
    let gemini = start();
    gemini.rate_limit_burst(1, Duration::from_secs(1));
    assert_eq!(post(&generate_url(&gemini), Some("wrong"), &request_body("a cat")).status, 400);
    assert_eq!(generate(&gemini, "a cat").status, 429);
    assert_eq!(generate(&gemini, "a cat").status, 200);
}

#[test]
fn the_quota_answers_429_beyond_the_requests_per_minute() {
    let gemini = start_with(Settings::default().with_api_key(API_KEY).with_requests_per_minute(3));
    for index in 0..3 {
        assert_eq!(generate(&gemini, &format!("prompt {index}")).status, 200);
    }
    for _ in 0..2 {
        let answer = generate(&gemini, "one too many");
        assert_google_error(&answer, 429, "RESOURCE_EXHAUSTED");
        assert_eq!(detail(&answer, "QuotaFailure")["violations"][0]["quotaValue"], "3");
        let retry_delay = detail(&answer, "RetryInfo")["retryDelay"].as_str().unwrap().to_owned();
        let seconds: u64 = retry_delay.strip_suffix('s').and_then(|seconds| seconds.parse().ok()).expect(&retry_delay);
        assert!((1..=60).contains(&seconds), "the first slot frees within a minute: {retry_delay}");
    }
    // Every arrival counts in the accounting, including the rejected ones.
    assert_eq!(gemini.request_count(), 5);
    assert_eq!(gemini.max_requests_in_window(Duration::from_secs(60)), 5);

    // Raising the quota at runtime admits more; turning it off admits everything.
    gemini.set_requests_per_minute(Some(4));
    assert_eq!(generate(&gemini, "a fourth").status, 200);
    assert_eq!(generate(&gemini, "a fifth").status, 429);
    gemini.set_requests_per_minute(None);
    assert_eq!(generate(&gemini, "a sixth").status, 200);
}

#[test]
fn the_quota_is_not_used_by_rejected_keys() {
    let gemini = start_with(Settings::default().with_api_key(API_KEY).with_requests_per_minute(1));
    assert_eq!(post(&generate_url(&gemini), Some("wrong"), &request_body("a cat")).status, 400);
    assert_eq!(post(&generate_url(&gemini), None, &request_body("a cat")).status, 403);
    assert_eq!(generate(&gemini, "a cat").status, 200);
    assert_eq!(generate(&gemini, "a cat").status, 429);
}
