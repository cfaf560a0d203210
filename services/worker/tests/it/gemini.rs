//! The Gemini client against the fake server: retry rules, timeouts, and what each failure says.

use std::time::{Duration, Instant};

use masstock_fake_gemini::{FakeGemini, Settings};
use masstock_kit::Secret;
use masstock_worker::config::GeminiSettings;
use masstock_worker::gemini::{GeminiClient, GeminiError};
use masstock_worker::gemini_quota::{self, GeminiQuota};
use serde_json::json;

use crate::support::{Namespace, GEMINI_KEY, REDIS_URL};

fn settings(base_url: &str) -> GeminiSettings {
    GeminiSettings {
        base_url: base_url.to_owned(),
        model: "gemini-2.5-flash-image".to_owned(),
        api_key: Secret::from(GEMINI_KEY),
        requests_per_minute: 1000,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_attempts: 3,
        backoff: Duration::from_millis(50),
    }
}

async fn quota(namespace: &Namespace, requests_per_minute: u32) -> GeminiQuota {
    let client = redis::Client::open(namespace.redis_url.as_str()).unwrap();
    let connection = client.get_connection_manager().await.unwrap();
    // Never stopping: the sender is dropped at once.
    GeminiQuota::new(
        connection,
        gemini_quota::key(&namespace.prefix),
        requests_per_minute,
        tokio::sync::watch::channel(false).1,
    )
}

#[tokio::test]
async fn a_429_waits_for_its_retry_info_then_succeeds() {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    gemini.rate_limit_burst(1, Duration::from_millis(1500));
    let client = GeminiClient::new(settings(&gemini.url())).unwrap();
    let started = Instant::now();
    let image = client.generate_image("a cat", &json!({}), &quota(&namespace, 1000).await).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1500), "waited {:?}", started.elapsed());
    assert_eq!(image.mime_type, "image/png");
    assert!(image.bytes.starts_with(b"\x89PNG"));
    let statuses: Vec<Option<u16>> = gemini.requests().iter().map(|request| request.status).collect();
    assert_eq!(statuses, [Some(429), Some(200)]);
}

#[tokio::test]
async fn server_errors_are_retried_up_to_the_bound() {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let client = GeminiClient::new(settings(&gemini.url())).unwrap();
    let error = client.generate_image("x [fail:500]", &json!({}), &quota(&namespace, 1000).await).await.unwrap_err();
    assert!(!error.is_permanent());
    assert!(error.to_string().starts_with("gemini still failing after 3 attempts: 500 INTERNAL: "), "{error}");
    assert_eq!(gemini.request_count(), 3);
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let client = GeminiClient::new(GeminiSettings {
        request_timeout: Duration::from_millis(500),
        max_attempts: 2,
        ..settings(&gemini.url())
    })
    .unwrap();
    let error = client.generate_image("x [slow:3000]", &json!({}), &quota(&namespace, 1000).await).await.unwrap_err();
    assert_eq!(error, GeminiError::GaveUp { attempts: 2, last: "timed out".to_owned() }, "{error}");
}

#[tokio::test]
async fn client_errors_fail_at_once_with_the_api_message() {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key("the-right-key")).unwrap();
    let client = GeminiClient::new(settings(&gemini.url())).unwrap();
    let error = client.generate_image("x", &json!({}), &quota(&namespace, 1000).await).await.unwrap_err();
    assert!(error.is_permanent());
    assert_eq!(
        error.to_string(),
        "gemini refused the request (400 INVALID_ARGUMENT): API key not valid. Please pass a valid API key."
    );
    assert_eq!(gemini.request_count(), 1);
}

#[tokio::test]
async fn the_gemini_quota_spaces_requests_beyond_the_limit() {
    let namespace = Namespace::new(REDIS_URL);
    let quota = quota(&namespace, 3).await;
    for _ in 0..3 {
        quota.acquire().await.unwrap();
    }
    // The fourth waits for the window (61 s): it does not come within two seconds.
    let fourth = tokio::time::timeout(Duration::from_secs(2), quota.acquire()).await;
    assert!(fourth.is_err(), "a fourth request in the same minute must wait");
}
