//! The real binary in production mode: JSON access logs with what operators need, and never a
//! password, a token or a cookie.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use masstock_schema::MIGRATOR;
use serde_json::{json, Value};

use crate::support::{client, delete_keys, set_cookie, url_of, user, PASSWORD, REDIS_URL};

#[sqlx::test(migrator = "MIGRATOR")]
async fn production_logs_are_json_with_ids_and_without_secrets(pool: sqlx::PgPool) {
    let user_id = user(&pool, "ana@example.com", false).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let prefix = format!("bull-test-{}", uuid::Uuid::new_v4().simple());
    let jwt_secret = "log-test-secret-log-test-secret-0123";
    let mut child = Command::new(env!("CARGO_BIN_EXE_masstock-api"))
        .env_clear()
        .env("DATABASE_URL", url_of(&pool))
        .env("REDIS_URL", REDIS_URL)
        .env("JWT_SECRET", jwt_secret)
        .env("CORS_ORIGIN", "https://app.masstock.fr")
        .env("PORT", port.to_string())
        .env("APP_ENV", "production")
        .env("QUEUE_PREFIX", &prefix)
        .env("RATE_LIMIT_PREFIX", format!("{prefix}:ratelimit"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start masstock-api");
    let url = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if client().get(format!("{url}/health")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let login = client()
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({ "email": "ana@example.com", "password": PASSWORD }))
        .send()
        .await;
    let (access, refresh) = match &login {
        Ok(response) => (
            set_cookie(response, "access_token").map(|c| c.0).unwrap_or_default(),
            set_cookie(response, "refresh_token").map(|c| c.0).unwrap_or_default(),
        ),
        Err(_) => (String::new(), String::new()),
    };
    let me =
        client().get(format!("{url}/api/v1/auth/me")).header("cookie", format!("access_token={access}")).send().await;
    let refreshed = client()
        .post(format!("{url}/api/v1/auth/refresh"))
        .header("cookie", format!("refresh_token={refresh}"))
        .send()
        .await;
    let new_refresh = refreshed
        .as_ref()
        .ok()
        .and_then(|response| set_cookie(response, "refresh_token"))
        .map(|c| c.0)
        .unwrap_or_default();
    // SIGTERM: a graceful stop, and the logs are complete.
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    delete_keys(&prefix);

    assert!(up, "the API did not start: {stderr}");
    assert_eq!(me.unwrap().status(), 200);
    assert!(status.success(), "a SIGTERM is a clean exit: {status:?}\n{stderr}");
    assert!(!access.is_empty() && !refresh.is_empty() && !new_refresh.is_empty());
    let lines: Vec<Value> =
        stderr.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))).collect();
    for secret in [PASSWORD, access.as_str(), refresh.as_str(), new_refresh.as_str(), jwt_secret, "masstock:masstock"] {
        assert!(!stderr.contains(secret), "a secret reached the logs: {secret}");
    }
    let me_line = lines
        .iter()
        .find(|line| line["message"] == "response" && line["span"]["path"] == "/api/v1/auth/me")
        .unwrap_or_else(|| panic!("no access line for /me in {stderr}"));
    assert_eq!(me_line["span"]["method"], "GET");
    assert_eq!(me_line["status"], 200);
    assert!(me_line["latency_ms"].as_f64().is_some());
    assert_eq!(me_line["span"]["request_id"].as_str().map(str::len), Some(36));
    assert_eq!(me_line["span"]["user_id"], json!(user_id.to_string()));
    assert!(lines.iter().any(|line| line["message"] == "shutting down: finishing in-flight requests"), "{stderr}");
}
