//! No input yields a 500: generated bodies, paths and headers against every route, with a fixed
//! seed so that a failure can be replayed.

use masstock_api::config::AppEnv;
use masstock_schema::MIGRATOR;
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::{Config, TestRng, TestRunner};
use serde_json::{json, Value};

use crate::support::{client, serve_args_on, set_cookie, user, TestApi, PASSWORD};

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("workflowId".to_owned()),
                    Just("prompts".to_owned()),
                    Just("config".to_owned()),
                    Just("email".to_owned()),
                    Just("password".to_owned()),
                    "[a-z]{1,8}"
                ],
                inner,
                0..5
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A request body: JSON, broken JSON, or arbitrary bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|value| value.to_string().into_bytes()),
        // Cut anywhere, even inside a character.
        json_value().prop_map(|value| {
            let mut bytes = value.to_string().into_bytes();
            bytes.truncate(bytes.len() / 2);
            bytes
        }),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn no_input_yields_a_500(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    // Thousands of requests from one address: lift the limits, which are not what is tested.
    let mut args = serve_args_on(&pool);
    args.rate_limit_general = "100000/60s".into();
    args.rate_limit_auth = "100000/60s".into();
    args.app_env = AppEnv::Test;
    let api = TestApi::start(args).await;
    let login = client()
        .post(format!("{}/api/v1/auth/login", api.url))
        .json(&json!({ "email": "ana@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let (token, _) = set_cookie(&login, "access_token").unwrap();

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let bodies = body();
    let segments = "[a-zA-Z0-9%._~-]{0,40}";
    let mut failures = Vec::new();
    for case in 0..300 {
        let body = bodies.new_tree(&mut runner).unwrap().current();
        let segment = segments.new_tree(&mut runner).unwrap().current();
        let content_type = [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
        ][case % 5];
        let requests = [
            client().post(format!("{}/api/v1/executions", api.url)).bearer_auth(&token),
            client().post(format!("{}/api/v1/auth/login", api.url)),
            client()
                .post(format!("{}/api/v1/auth/refresh", api.url))
                .header("cookie", format!("refresh_token={segment}")),
            client().get(format!("{}/api/v1/executions/{segment}", api.url)).bearer_auth(&token),
            client().get(format!("{}/api/v1/executions/{segment}/results/{segment}", api.url)).bearer_auth(&token),
            client().get(format!("{}/api/v1/executions?limit={segment}&cursor={segment}", api.url)).bearer_auth(&token),
            client().get(format!("{}/api/v1/auth/me", api.url)).bearer_auth(&segment),
        ];
        for request in requests {
            let request = if content_type.is_empty() { request } else { request.header("content-type", content_type) };
            let response = request.body(body.clone()).send().await.unwrap();
            if response.status().is_server_error() {
                failures.push(format!(
                    "case {case}: {} for body {:?} segment {segment:?}",
                    response.status(),
                    String::from_utf8_lossy(&body)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} server errors:\n{}", failures.len(), failures.join("\n"));

    // Inputs a generator rarely finds: each is a JSON 4xx, never a 500 and never plain text.
    let nul = '\u{0}';
    // Beyond the year 9999: PostgreSQL cannot compare it, so it is no cursor of ours.
    let far_cursor = format!("99999999999999999999.{}", "0".repeat(32));
    let cases = [
        client().post(format!("{}/api/v1/auth/login", api.url)).json(&json!({ "email": format!("a{nul}@b.fr"), "password": "x" })),
        client().post(format!("{}/api/v1/executions", api.url)).bearer_auth(&token).json(&json!({ "workflowId": masstock_schema::DEFAULT_WORKFLOW_ID, "prompts": [format!("a{nul}b")] })),
        client().post(format!("{}/api/v1/executions", api.url)).bearer_auth(&token).json(&json!({ "workflowId": masstock_schema::DEFAULT_WORKFLOW_ID, "prompts": ["a"], "config": { format!("k{nul}"): 1 } })),
        client().get(format!("{}/api/v1/executions?cursor={far_cursor}", api.url)).bearer_auth(&token),
        client().get(format!("{}/api/v1/executions/%FF", api.url)).bearer_auth(&token),
        client().get(format!("{}/api/v1/executions/%FF/results/%FE", api.url)).bearer_auth(&token),
        client().get(format!("{}/api/v1/executions?limit=1&limit=2", api.url)).bearer_auth(&token),
    ];
    for (index, request) in cases.into_iter().enumerate() {
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type =
            response.headers().get("content-type").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_client_error(), "case {index}: {status} {body}");
        assert_eq!(content_type, "application/json", "case {index}: {body}");
        assert!(body["error"].is_string(), "case {index}: {body}");
    }
}
