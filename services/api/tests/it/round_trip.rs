//! What the API stores reads back unchanged, or is refused with a 400 naming the field: the
//! `config` that once broke a user's listing for good (`1.7976931348623157e308`, which
//! PostgreSQL prints as 309 digits), numbers beyond 2^53, NUL characters, lone surrogates and
//! deep nesting, against the real PostgreSQL.

use masstock_api::config::AppEnv;
use masstock_schema::{DEFAULT_WORKFLOW_ID, MIGRATOR};
use serde_json::{json, Value};

use crate::support::{api_on, client, set_cookie, user, TestApi, PASSWORD};

async fn token(api: &TestApi) -> String {
    let response = client()
        .post(format!("{}/api/v1/auth/login", api.url))
        .json(&json!({ "email": "ana@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    set_cookie(&response, "access_token").expect("signed in").0
}

/// Posts `body` as it is written: some cases are JSON that `serde_json::Value` cannot hold.
async fn post_raw(api: &TestApi, token: &str, body: String) -> reqwest::Response {
    client()
        .post(format!("{}/api/v1/executions", api.url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn list(api: &TestApi, token: &str) -> reqwest::Response {
    client().get(format!("{}/api/v1/executions", api.url)).bearer_auth(token).send().await.unwrap()
}

/// `depth` arrays, one inside the other, around `1`.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn values_that_would_not_read_back_are_refused_naming_the_field(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    let token = token(&api).await;
    let range = "must be a number from -9007199254740991 to 9007199254740991";
    let start = format!(r#"{{"workflowId": "{DEFAULT_WORKFLOW_ID}", "prompts": ["#);
    let cases = [
        // The issue's request: accepted before, and then every listing of its user was a 500.
        (format!(r#"{start}"a"], "config": {{"n": 1.7976931348623157e308}}}}"#), "config.n", range),
        // Rounded to a double on the way in: it would not come back as written.
        (format!(r#"{start}"a"], "config": {{"big": 123456789012345678901234567890}}}}"#), "config.big", range),
        (format!(r#"{start}"a"], "config": {{"a": [1, {{"b": -9007199254740992}}]}}}}"#), "config.a[1].b", range),
        (
            format!(r#"{start}"a"], "config": {{"a": ["ok", "x\u0000y"]}}}}"#),
            "config.a[1]",
            "must not contain NUL characters",
        ),
        (
            format!(r#"{start}"a"], "config": {{"a": {{"k\u0000": 1}}}}}}"#),
            "config.a.k\u{0}",
            "must not contain NUL characters in its name",
        ),
        // JSON that no UTF-8 string holds, and nesting past what the parser follows.
        (format!(r#"{start}"ok", "\ud800"]}}"#), "prompts[1]", "unexpected end of hex escape"),
        (format!(r#"{start}"a"], "config": {{"deep": {}}}}}"#, nested(200)), "config.deep", "recursion limit exceeded"),
    ];
    for (body, path, message) in cases {
        let response = post_raw(&api, &token, body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "validation_failed", "{body}");
        let issue = &answer["issues"][0];
        assert!(issue["path"].as_str().unwrap().starts_with(path) && issue["message"] == message, "{body}: {answer}");
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from executions").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, 0, "nothing refused was stored");
    assert_eq!(list(&api, &token).await.status(), 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn what_is_accepted_reads_back_unchanged(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    let token = token(&api).await;
    // Each number is one PostgreSQL prints differently from serde_json (all digits, no exponent),
    // and each must come back as the same double.
    let config = format!(
        r#"{{"max": 9007199254740991, "min": -9007199254740991, "tenth": 0.1, "third": 0.3333333333333333,
            "tiny": 5e-324, "small": 1.5e-7, "large": 9.007199254740991e15, "text": "é 😀 \uffff \t",
            "list": [null, true, false, "", {{}}, []], "with spaces": {{"and.dots": 1}}, "deep": {}}}"#,
        nested(100)
    );
    let prompts = json!(["😀".repeat(2000), "  a fox  ", "\u{3000}x"]);
    let body = format!(r#"{{"workflowId": "{DEFAULT_WORKFLOW_ID}", "prompts": {prompts}, "config": {config}}}"#);
    let response = post_raw(&api, &token, body).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let sent: Value = serde_json::from_str(&config).unwrap();

    let shown: Value = client()
        .get(format!("{}/api/v1/executions/{id}", api.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["config"], sent);
    assert_eq!(shown["prompts"], prompts);
    assert_eq!(shown["config"]["tiny"].as_f64(), Some(5e-324));
    let listed: Value = list(&api, &token).await.json().await.unwrap();
    assert_eq!(listed["items"][0]["config"], sent);
}

/// A row stored before the check (or by hand) with numbers PostgreSQL prints in full still
/// lists: the reading side parses them exactly instead of failing the whole page.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_row_stored_before_the_check_still_lists(pool: sqlx::PgPool) {
    let owner = user(&pool, "ana@example.com", false).await;
    sqlx::query(
        "insert into executions (user_id, workflow_id, prompts, config, progress_total)
         values ($1, $2::uuid, '[\"a\"]', '{\"n\": 1.7976931348623157e308, \"big\": 123456789012345678901234567890}', 1)",
    )
    .bind(owner)
    .bind(DEFAULT_WORKFLOW_ID)
    .execute(&pool)
    .await
    .unwrap();
    let printed: String = sqlx::query_scalar("select config->>'n' from executions").fetch_one(&pool).await.unwrap();
    assert_eq!(printed.len(), 309, "PostgreSQL prints the number in full: {printed}");
    let api = api_on(&pool, AppEnv::Test).await;
    let token = token(&api).await;
    let response = list(&api, &token).await;
    assert_eq!(response.status(), 200);
    let listed: Value = response.json().await.unwrap();
    assert_eq!(listed["items"][0]["config"]["n"].as_f64(), Some(f64::MAX));
    assert_eq!(listed["items"][0]["config"]["big"].as_f64(), Some(1.234_567_890_123_456_8e29));
}
