//! `masstock-worker healthcheck`: healthy only with Redis answering and a fresh heartbeat.

use std::process::Command;
use std::time::Duration;

use masstock_fake_gemini::{FakeGemini, Settings};
use masstock_schema::MIGRATOR;

use crate::support::{Namespace, OwnRedis, Worker, WorkerSetup, GEMINI_KEY};

/// Runs the health check as Docker would; its exit code and its words.
fn healthcheck(redis_url: &str, prefix: &str, worker_id: &str) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_masstock-worker"))
        .arg("healthcheck")
        .env_clear()
        .env("REDIS_URL", redis_url)
        .env("QUEUE_PREFIX", prefix)
        .env("WORKER_ID", worker_id)
        .output()
        .unwrap();
    let words = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), words)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn healthy_only_while_the_worker_beats(pool: sqlx::PgPool) {
    let redis = OwnRedis::start();
    let namespace = Namespace::new(&redis.url());
    let (code, words) = healthcheck(&redis.url(), &namespace.prefix, "w1");
    assert_eq!(code, Some(1));
    assert!(words.starts_with("unhealthy: no heartbeat from worker `w1`"), "{words}");

    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let mut worker = Worker::start(&WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path()), "w1");
    let (code, words) = healthcheck(&redis.url(), &namespace.prefix, "w1");
    assert_eq!(code, Some(0), "{words}");
    assert!(words.starts_with("healthy: heartbeat "), "{words}");
    // Another container's worker is not this one.
    assert_eq!(healthcheck(&redis.url(), &namespace.prefix, "w2").0, Some(1));

    worker.signal("TERM");
    assert_eq!(worker.wait_exit(Duration::from_secs(20)), Some(0));
    assert_eq!(healthcheck(&redis.url(), &namespace.prefix, "w1").0, Some(1), "a stopped worker is not healthy");
}

#[test]
fn a_wrong_password_or_no_redis_is_unhealthy_and_the_password_is_never_shown() {
    let redis = OwnRedis::start();
    let wrong = redis.url().replace(OwnRedis::PASSWORD, "not-the-password");
    let (code, words) = healthcheck(&wrong, "bull", "w1");
    assert_eq!(code, Some(1));
    assert!(words.starts_with("unhealthy: redis: "), "{words}");
    assert!(!words.contains("not-the-password"), "{words}");

    let nobody = format!("redis://:secret-password@127.0.0.1:{}", masstock_tests::free_port());
    let (code, words) = healthcheck(&nobody, "bull", "w1");
    assert_eq!(code, Some(1));
    assert!(!words.contains("secret-password"), "{words}");
}

#[test]
fn a_key_that_cannot_travel_in_a_header_is_refused_at_start_up_without_being_shown() {
    let output = Command::new(env!("CARGO_BIN_EXE_masstock-worker"))
        .arg("run")
        .env_clear()
        .env("DATABASE_URL", "postgres://masstock:masstock@127.0.0.1:5432/masstock_test")
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("GEMINI_API_KEY", "AIza-secret-with-a-newline\n")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: GEMINI_API_KEY: holds characters an HTTP header cannot carry (a trailing newline?)"
    );
}

#[test]
fn a_tls_redis_url_is_understood() {
    // Nothing listens there: the point is an error in words, not rustls's panic about its provider.
    let redis_url = format!("rediss://:secret-password@127.0.0.1:{}", masstock_tests::free_port());
    let output = Command::new(env!("CARGO_BIN_EXE_masstock-worker"))
        .arg("run")
        .env_clear()
        .env("DATABASE_URL", "postgres://masstock:masstock@127.0.0.1:5432/masstock_test")
        .env("REDIS_URL", &redis_url)
        .env("GEMINI_API_KEY", "key")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(!stderr.contains("secret-password"), "{stderr}");
    let (code, words) = healthcheck(&redis_url, "bull", "w1");
    assert_eq!(code, Some(1));
    assert!(words.starts_with("unhealthy: redis: "), "{words}");
}
