//! The `masstock-api` binary: configuration errors, `migrate`, `user add`.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::support::url_of;

fn api(args: &[&str], environment: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_masstock-api"))
        .args(args)
        .env_clear()
        .envs(environment.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run masstock-api");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn missing_variables_are_named() {
    let (status, _, stderr) = api(&[], &[], "");
    assert_eq!(status, 2);
    for variable in ["DATABASE_URL", "REDIS_URL", "JWT_SECRET", "CORS_ORIGIN"] {
        assert!(stderr.contains(variable), "{variable} not named: {stderr}");
    }
}

#[test]
fn a_short_jwt_secret_is_refused_without_being_printed() {
    let environment = [
        ("DATABASE_URL", "postgres://u:db-password@127.0.0.1:5432/x"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("JWT_SECRET", "too-short-secret"),
        ("CORS_ORIGIN", "https://app.masstock.fr"),
    ];
    let (status, _, stderr) = api(&["serve"], &environment, "");
    assert_eq!(status, 2);
    assert!(stderr.contains("JWT_SECRET: must be at least 32 bytes, it has 16"), "{stderr}");
    assert!(!stderr.contains("too-short-secret") && !stderr.contains("db-password"), "{stderr}");
}

#[test]
fn a_bad_url_names_the_variable_not_the_value() {
    let environment = [
        ("DATABASE_URL", "mysql://u:db-password@127.0.0.1/x"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("CORS_ORIGIN", "https://app.masstock.fr"),
    ];
    let (status, _, stderr) = api(&["serve"], &environment, "");
    assert_eq!(status, 2);
    assert!(stderr.contains("DATABASE_URL: scheme `mysql`"), "{stderr}");
    assert!(!stderr.contains("db-password"), "{stderr}");
}

#[sqlx::test(migrations = false)]
async fn migrate_then_add_users(pool: sqlx::PgPool) {
    let url = url_of(&pool);
    let environment = [("DATABASE_URL", url.as_str())];
    let (status, _, stderr) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || api(&["migrate"], &[("DATABASE_URL", url.as_str())], "")
    })
    .await
    .unwrap();
    assert_eq!(status, 0, "{stderr}");
    let workflows: i64 = sqlx::query_scalar("select count(*) from workflows").fetch_one(&pool).await.unwrap();
    assert_eq!(workflows, 1, "migrated and seeded");

    let add = |email: &'static str, password: &'static str, premium: bool| {
        let environment: Vec<(String, String)> =
            environment.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        tokio::task::spawn_blocking(move || {
            let environment: Vec<(&str, &str)> = environment.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut args = vec!["user", "add", "--email", email, "--password-stdin"];
            if premium {
                args.push("--premium");
            }
            api(&args, &environment, password)
        })
    };
    let (status, stdout, stderr) = add("Ana@Example.com", "correct horse battery\n", true).await.unwrap();
    assert_eq!(status, 0, "{stderr}");
    let id: uuid::Uuid = stdout.trim().parse().expect("prints the new user's id");
    let (hash, premium): (String, bool) = sqlx::query_as("select password_hash, premium from users where id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$") && premium);
    assert!(!stderr.contains("correct horse"), "the password is never echoed");

    let (status, _, stderr) = add("ana@example.COM", "another long password", false).await.unwrap();
    assert_eq!(status, 1);
    assert!(stderr.contains("already exists"), "{stderr}");
    let (status, _, stderr) = add("bob@example.com", "short", false).await.unwrap();
    assert_eq!(status, 2);
    assert!(stderr.contains("at least 10 characters"), "{stderr}");
}

#[tokio::test]
async fn healthcheck_is_healthy_only_on_a_2xx() {
    let api = crate::support::TestApi::start(crate::support::serve_args()).await;
    let run = |url: String| tokio::task::spawn_blocking(move || api_status(&["healthcheck", "--url", &url]));
    assert_eq!(run(format!("{}/health", api.url)).await.unwrap(), (0, String::new()));
    let (status, stderr) = run(format!("{}/nothing-here", api.url)).await.unwrap();
    assert_eq!((status, stderr.trim()), (1, "unhealthy: status 404"));
    let (status, stderr) = run("http://127.0.0.1:1/health".into()).await.unwrap();
    assert_eq!(status, 1);
    assert!(stderr.contains("cannot reach `127.0.0.1:1`"), "{stderr}");
    let (status, stderr) = run("https://example.com/".into()).await.unwrap();
    assert_eq!(status, 1);
    assert!(stderr.contains("not an http:// URL"), "{stderr}");
}

fn api_status(args: &[&str]) -> (i32, String) {
    let (status, _, stderr) = api(args, &[], "");
    (status, stderr)
}
