//! Successful answers: Gemini's `GenerateContentResponse` with a real PNG.

use masstock_fake_gemini::{FakeGemini, ImageMode, Settings};
use serde_json::json;

use crate::support::{
    check_png, generate, generate_url, inline_png, post, request_body, start, start_with, API_KEY, MODEL,
};

#[test]
fn an_image_answer_is_in_geminis_format() {
    let gemini = start();
    let answer = generate(&gemini, "a red bicycle on a beach");
    assert_eq!(answer.status, 200, "{}", answer.json);
    let candidate = &answer.json["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(candidate["content"]["parts"][0]["text"], "Here is your image");
    assert_eq!(candidate["content"]["parts"][1]["inlineData"]["mimeType"], "image/png");
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(candidate["index"], 0);
    let usage = &answer.json["usageMetadata"];
    let prompt_tokens = usage["promptTokenCount"].as_u64().expect("promptTokenCount");
    let candidate_tokens = usage["candidatesTokenCount"].as_u64().expect("candidatesTokenCount");
    assert!(prompt_tokens > 0);
    assert_eq!(usage["totalTokenCount"], prompt_tokens + candidate_tokens);
    assert_eq!(answer.json["modelVersion"], MODEL);
    assert!(answer.json["responseId"].as_str().is_some_and(|id| id.len() >= 16), "{}", answer.json);

    assert_eq!(check_png(&inline_png(&answer)), (64, 64));
}

#[test]
fn the_image_depends_on_the_prompt_only() {
    let gemini = start();
    let cat = inline_png(&generate(&gemini, "a cat"));
    let dog = inline_png(&generate(&gemini, "a dog"));
    let cat_again = inline_png(&generate(&gemini, "a cat"));
    assert_ne!(cat, dog);
    assert_eq!(cat, cat_again);
    let response_ids: Vec<_> = (0..3).map(|_| generate(&gemini, "a cat").json["responseId"].clone()).collect();
    assert_ne!(response_ids[0], response_ids[1], "each answer has its own id");
}

#[test]
fn the_aspect_ratio_shapes_the_image() {
    let gemini = start();
    let mut body = request_body("a wide landscape");
    body["generationConfig"]["imageConfig"]["aspectRatio"] = json!("16:9");
    assert_eq!(check_png(&inline_png(&post(&generate_url(&gemini), Some(API_KEY), &body))), (64, 36));
    body["generationConfig"]["imageConfig"]["aspectRatio"] = json!("9:16");
    assert_eq!(check_png(&inline_png(&post(&generate_url(&gemini), Some(API_KEY), &body))), (36, 64));
}

#[test]
fn the_key_may_come_in_the_query_as_with_google() {
    let gemini = start();
    let url = format!("{}?key={API_KEY}", generate_url(&gemini));
    assert_eq!(post(&url, None, &request_body("a boat")).status, 200);
}

#[test]
fn without_an_expected_key_any_key_is_accepted() {
    let gemini = start_with(Settings::default());
    assert_eq!(post(&generate_url(&gemini), Some("whatever"), &request_body("a boat")).status, 200);
    assert!(gemini.requests()[0].key_accepted);
}

#[test]
fn text_only_modalities_get_a_text_candidate() {
    let gemini = start();
    let mut body = request_body("describe a boat");
    body["generationConfig"]["responseModalities"] = json!(["TEXT"]);
    let answer = post(&generate_url(&gemini), Some(API_KEY), &body);
    assert_eq!(answer.status, 200);
    let parts = answer.json["candidates"][0]["content"]["parts"].as_array().unwrap();
    assert!(parts.iter().all(|part| part.get("inlineData").is_none()), "{}", answer.json);
}

#[test]
fn the_image_mode_can_withhold_the_image() {
    let gemini = start();
    gemini.set_image_mode(ImageMode::TextOnly);
    let answer = generate(&gemini, "a boat");
    assert_eq!(answer.status, 200);
    let parts = answer.json["candidates"][0]["content"]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{}", answer.json);
    assert!(parts[0]["text"].is_string());
    assert_eq!(answer.json["candidates"][0]["finishReason"], "STOP");

    gemini.set_image_mode(ImageMode::PromptBlocked);
    let answer = generate(&gemini, "a boat");
    assert_eq!(answer.status, 200);
    assert!(answer.json.get("candidates").is_none(), "{}", answer.json);
    assert_eq!(answer.json["promptFeedback"]["blockReason"], "SAFETY");

    gemini.set_image_mode(ImageMode::Image);
    check_png(&inline_png(&generate(&gemini, "a boat")));
}

/// The worker's tests are async: the fake must serve while their runtime (even a current-thread
/// one) waits on it, and be dropped inside it.
#[tokio::test]
async fn it_serves_async_clients_on_a_current_thread_runtime() {
    let gemini = FakeGemini::start(Settings::default()).unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/v1beta/models/{MODEL}:generateContent", gemini.url()))
        .header("x-goog-api-key", "any")
        .json(&request_body("an async cat"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["candidates"][0]["finishReason"], "STOP");
    drop(gemini);
}
