//! `/health`, `/health/ready`, request ids, JSON errors, graceful shutdown.

use std::time::Duration;

use masstock_api::config::Secret;

use crate::support::{black_hole, client, serve_args, TestApi};

#[tokio::test]
async fn health_answers_without_touching_dependencies() {
    // Both dependencies unreachable: liveness does not care.
    let mut args = serve_args();
    args.redis_url = Secret::from("redis://127.0.0.1:1");
    args.database.database_url = Secret::from("postgres://nobody:nothing@127.0.0.1:1/none");
    let api = TestApi::start(args).await;
    let response = client().get(format!("{}/health", api.url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(request_id.len(), 36, "a UUID: {request_id}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let timestamp = body["timestamp"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(timestamp).unwrap_or_else(|_| panic!("RFC 3339: {timestamp}"));
}

#[tokio::test]
async fn ready_when_postgres_and_redis_answer() {
    let api = TestApi::start(serve_args()).await;
    let response = client().get(format!("{}/health/ready", api.url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "status": "ready", "checks": { "postgres": "ok", "redis": "ok" } }));
}

#[tokio::test]
async fn not_ready_names_the_dependency_that_failed() {
    let mut args = serve_args();
    args.redis_url = Secret::from("redis://:secret-password@127.0.0.1:1");
    let api = TestApi::start(args).await;
    let response = client().get(format!("{}/health/ready", api.url)).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let text = response.text().await.unwrap();
    assert!(!text.contains("secret-password"), "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["failed"], serde_json::json!(["redis"]));
    assert_eq!(body["checks"]["postgres"], "ok");

    let mut args = serve_args();
    args.database.database_url = Secret::from("postgres://masstock:masstock@127.0.0.1:1/masstock_test");
    let api = TestApi::start(args).await;
    let body: serde_json::Value =
        client().get(format!("{}/health/ready", api.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["failed"], serde_json::json!(["postgres"]));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let api = TestApi::start(serve_args()).await;
    let missing = client().get(format!("{}/api/v1/nothing", api.url)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("x-request-id"));
    assert_eq!(missing.json::<serde_json::Value>().await.unwrap(), serde_json::json!({ "error": "not_found" }));
    let wrong_method = client().delete(format!("{}/health", api.url)).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.json::<serde_json::Value>().await.unwrap()["error"], "method_not_allowed");
}

#[tokio::test]
async fn a_request_id_from_the_edge_is_kept() {
    let api = TestApi::start(serve_args()).await;
    let response =
        client().get(format!("{}/health", api.url)).header("x-request-id", "edge-1234").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "edge-1234");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    // Redis hangs, so a readiness probe takes its full 2 s timeout: a request in flight.
    let (address, _hole) = black_hole().await;
    let mut args = serve_args();
    args.redis_url = Secret::from(format!("redis://{address}").as_str());
    let mut api = TestApi::start(args).await;
    let in_flight = tokio::spawn(client().get(format!("{}/health/ready", api.url)).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.shut_down();
    let response = in_flight.await.unwrap().expect("the in-flight request completes");
    assert_eq!(response.status(), 503);
    // And the server then stops, taking no new connection.
    let server = api.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("the server stops").unwrap().unwrap();
    assert!(client().get(format!("{}/health", api.url)).send().await.is_err());
}

#[tokio::test]
async fn metrics_count_by_route_template_and_stay_inside() {
    let api = TestApi::start(serve_args()).await;
    for _ in 0..3 {
        client().get(format!("{}/health", api.url)).send().await.unwrap();
    }
    client().get(format!("{}/api/v1/executions/0b6f2c1e-6a43-4c1f-9a57-2d1e5f0c7a10", api.url)).send().await.unwrap();
    client().get(format!("{}/no/such/route", api.url)).send().await.unwrap();
    let response = client().get(format!("{}/metrics", api.url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], masstock_api::metrics::CONTENT_TYPE_OPENMETRICS);
    let text = response.text().await.unwrap();
    assert!(text.contains(r#"masstock_http_requests_total{method="GET",route="/health",status="200"} 3"#), "{text}");
    assert!(text.contains(r#"route="/api/v1/executions/{id}",status="401"} 1"#), "route templates, not ids: {text}");
    assert!(text.contains(r#"masstock_http_requests_total{method="GET",route="unmatched",status="404"} 1"#), "{text}");
    assert!(text.contains("masstock_http_request_duration_seconds_bucket{"), "{text}");
    assert!(text.contains("masstock_jobs_enqueued_total 0"), "{text}");
    // Through the edge (nginx adds X-Real-IP): not there.
    let forwarded =
        client().get(format!("{}/metrics", api.url)).header("x-real-ip", "203.0.113.5").send().await.unwrap();
    assert_eq!(forwarded.status(), 404);
}

/// Every route of the API, as the router serves it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/health/ready"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("get", "/api/v1/auth/me"),
    ("get", "/api/v1/workflows"),
    ("post", "/api/v1/executions"),
    ("get", "/api/v1/executions"),
    ("get", "/api/v1/executions/{id}"),
    ("get", "/api/v1/executions/{id}/results/{index}"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
];

const VALIDATE: &str = r"
import json, sys
from openapi_spec_validator import validate
validate(json.load(sys.stdin))
print('valid')
";

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_is_valid_3_1() {
    let api = TestApi::start(serve_args()).await;
    let response = client().get(format!("{}/api/v1/openapi.json", api.url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let document: serde_json::Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    let mut described: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, operations)| {
            operations.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    described.sort();
    let mut expected: Vec<(String, String)> =
        ROUTES.iter().map(|(method, path)| ((*method).to_owned(), (*path).to_owned())).collect();
    expected.sort();
    assert_eq!(described, expected, "the document and the router list the same routes");
    for (method, path) in ROUTES {
        let operation = &paths[*path][*method];
        assert!(
            operation["responses"].as_object().is_some_and(|responses| !responses.is_empty()),
            "{method} {path} has no responses"
        );
    }
    assert!(document["components"]["schemas"]["ErrorBody"].is_object());
    assert!(paths["/api/v1/executions"]["post"]["responses"]["429"].is_object(), "shared answers are described");
    assert!(paths["/api/v1/executions"]["post"]["responses"]["500"].is_object());
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    // The constraints the handlers enforce are in it, from the same constants.
    let list = &paths["/api/v1/executions"]["get"]["parameters"];
    let cursor = list.as_array().unwrap().iter().find(|parameter| parameter["name"] == "cursor").unwrap();
    assert_eq!(cursor["schema"]["pattern"], masstock_api::routes::executions::CURSOR_PATTERN);
    let result = &paths["/api/v1/executions/{id}/results/{index}"]["get"];
    let index = result["parameters"].as_array().unwrap().iter().find(|parameter| parameter["name"] == "index").unwrap();
    assert_eq!(index["schema"]["maximum"], masstock_schema::MAX_PROMPTS - 1);
    assert!(result["responses"]["400"].is_object() && result["responses"]["401"].is_object());
    let login = &paths["/api/v1/auth/login"]["post"]["responses"];
    assert!(login["413"].is_object() && login["415"].is_object(), "{login}");
    let body = &document["components"]["schemas"]["LoginBody"];
    assert_eq!(body["additionalProperties"], false);
    assert_eq!(body["properties"]["password"]["maxLength"], 1024);
    assert_eq!(body["properties"]["email"]["pattern"], masstock_api::validation::NOT_BLANK_PATTERN.as_str());
    assert_eq!(
        paths["/api/v1/executions"]["post"]["responses"]["202"]["links"]["show"],
        serde_json::json!({ "operationId": "show", "parameters": { "id": "$response.body#/id" } })
    );

    // And a real validator agrees it is OpenAPI 3.1.
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(python.exists(), "no Python venv at {}: run `script/bootstrap`", python.display());
    let mut child = std::process::Command::new(python)
        .args(["-c", VALIDATE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), document.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "openapi-spec-validator: {}", String::from_utf8_lossy(&output.stderr));
}
