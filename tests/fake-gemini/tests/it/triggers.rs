//! Markers in a prompt that make that prompt, and only it, misbehave.

use std::time::{Duration, Instant};

use crate::support::{assert_google_error, check_png, detail, generate, inline_png, start};

#[test]
fn fail_answers_that_status_for_that_prompt_only() {
    let gemini = start();
    let prompts = ["a cat", "a dog [fail:500]", "a bird", "a fish [fail:400]", "a cow [fail:503]", "an owl [fail:429]"];
    let answers: Vec<_> = prompts.iter().map(|prompt| generate(&gemini, prompt)).collect();
    assert_eq!(answers[0].status, 200);
    assert_google_error(&answers[1], 500, "INTERNAL");
    assert_eq!(answers[2].status, 200);
    assert_google_error(&answers[3], 400, "INVALID_ARGUMENT");
    assert_google_error(&answers[4], 503, "UNAVAILABLE");
    assert_google_error(&answers[5], 429, "RESOURCE_EXHAUSTED");
    assert!(detail(&answers[5], "RetryInfo")["retryDelay"].is_string());
    assert_google_error(&generate(&gemini, "[fail:504]"), 504, "DEADLINE_EXCEEDED");
    // The same prompt fails every time.
    assert_eq!(generate(&gemini, "a dog [fail:500]").status, 500);
}

#[test]
fn noimage_answers_a_candidate_without_an_image() {
    let gemini = start();
    let answer = generate(&gemini, "a cat [noimage]");
    assert_eq!(answer.status, 200);
    let candidate = &answer.json["candidates"][0];
    assert_eq!(candidate["finishReason"], "STOP");
    let parts = candidate["content"]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    assert!(parts[0]["text"].is_string() && parts[0].get("inlineData").is_none(), "{}", answer.json);
}

#[test]
fn blocked_answers_prompt_feedback_without_candidates() {
    let gemini = start();
    let answer = generate(&gemini, "something [blocked]");
    assert_eq!(answer.status, 200);
    assert!(answer.json.get("candidates").is_none(), "{}", answer.json);
    assert_eq!(answer.json["promptFeedback"]["blockReason"], "SAFETY");
}

#[test]
fn flaky_fails_the_first_times_then_succeeds() {
    let gemini = start();
    let prompt = "a cat [flaky:2]";
    assert_google_error(&generate(&gemini, prompt), 503, "UNAVAILABLE");
    assert_eq!(generate(&gemini, "a dog [flaky:1]").status, 503, "each prompt has its own count");
    assert_google_error(&generate(&gemini, prompt), 503, "UNAVAILABLE");
    check_png(&inline_png(&generate(&gemini, prompt)));
    assert_eq!(generate(&gemini, prompt).status, 200);
    assert_eq!(generate(&gemini, "a dog [flaky:1]").status, 200);

    gemini.reset_requests();
    assert_eq!(generate(&gemini, prompt).status, 503, "a reset forgets the counts");
}

#[test]
fn slow_and_the_latency_delay_the_answer() {
    let gemini = start();
    let started = Instant::now();
    assert_eq!(generate(&gemini, "a cat [slow:300]").status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());

    gemini.set_latency(Duration::from_millis(200), Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(generate(&gemini, "a dog").status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
}
