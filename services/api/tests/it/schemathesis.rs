//! Schemathesis against the API, signed in: every operation of the OpenAPI document with
//! `--checks all`, its four phases (examples, coverage, fuzzing, stateful) and 200 examples per
//! operation. It fails with Schemathesis's own report when the API and its document disagree in
//! either direction (a request the document allows is refused, one it forbids is accepted), when
//! an answer's status, type or body is not documented, or when anything is a 500.
//!
//! One expectation is widened, for one operation, and no check is excluded: `POST
//! /api/v1/executions` may answer 422 to schema-valid data, because a `workflowId` Schemathesis
//! draws is a well-formed UUID that names no workflow; the document says so, and a workflow's
//! existence is not something a schema can state.

use std::process::{Command, Stdio};
use std::time::Instant;

use masstock_api::config::AppEnv;
use masstock_schema::MIGRATOR;
use serde_json::json;

use crate::support::{client, serve_args_on, set_cookie, user, TestApi, PASSWORD};

/// The run's settings. The token comes from the environment, so that it is in no file and no
/// process list; Schemathesis filters it out of its report too.
const CONFIG: &str = r#"
headers = { Authorization = "Bearer ${MASSTOCK_API_TOKEN}" }
request-timeout = 30
workers = 2

[[operations]]
include-name = "POST /api/v1/executions"
# A drawn workflowId is a UUID naming no workflow: 422, as documented (see this file's docs).
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"#;

#[sqlx::test(migrator = "MIGRATOR")]
async fn schemathesis_finds_nothing(pool: sqlx::PgPool) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    assert!(python.exists(), "no Python venv at {}: run `script/bootstrap`", python.display());

    let ana = user(&pool, "ana@example.com", false).await;
    // One finished execution with an image, so that the result route answers 200 too.
    let uploads = tempfile::tempdir().unwrap();
    let execution: uuid::Uuid = sqlx::query_scalar(
        "insert into executions (user_id, workflow_id, prompts, progress_total, progress_done, status)
         values ($1, $2::uuid, '[\"a red fox\"]', 1, 1, 'completed') returning id",
    )
    .bind(ana)
    .bind(masstock_schema::DEFAULT_WORKFLOW_ID)
    .fetch_one(&pool)
    .await
    .unwrap();
    let png = b"\x89PNG\r\n\x1a\nnot really an image";
    fs_err::create_dir(uploads.path().join(execution.to_string())).unwrap();
    fs_err::write(uploads.path().join(format!("{execution}/0.png")), png).unwrap();
    sqlx::query("insert into execution_results (execution_id, prompt_index, content_type, storage_location, size_bytes) values ($1, 0, 'image/png', $2, $3)")
        .bind(execution)
        .bind(format!("{execution}/0.png"))
        .bind(i64::try_from(png.len()).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    // Thousands of requests from one address: the limits are not what is tested here.
    let mut args = serve_args_on(&pool);
    args.rate_limit_general = "1000000/60s".into();
    args.rate_limit_auth = "1000000/60s".into();
    args.app_env = AppEnv::Test;
    args.uploads_dir = uploads.path().to_owned();
    let api = TestApi::start(args).await;
    let login = client()
        .post(format!("{}/api/v1/auth/login", api.url))
        .json(&json!({ "email": "ana@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let (token, _) = set_cookie(&login, "access_token").expect("signed in");

    // Schemathesis keeps its example database and reports in its working directory.
    let work = tempfile::tempdir().unwrap();
    fs_err::write(work.path().join("schemathesis.toml"), CONFIG).unwrap();
    let schema = format!("{}/api/v1/openapi.json", api.url);
    let started = Instant::now();
    let run = tokio::task::spawn_blocking({
        let work = work.path().to_owned();
        move || {
            Command::new(python)
                .args(["-m", "schemathesis.cli", "--config-file", "schemathesis.toml", "run", &schema])
                .args(["--checks", "all", "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "200"])
                .current_dir(work)
                .env("MASSTOCK_API_TOKEN", token)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .output()
                .expect("run schemathesis")
        }
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    eprintln!("schemathesis ran for {:.0?}", started.elapsed());
    assert!(run.status.success(), "Schemathesis found problems:\n{report}\n{}", String::from_utf8_lossy(&run.stderr));
    // A run that tested nothing would also succeed: it must have reached every phase.
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(report.contains(&format!("✅ {phase}")), "{phase} did not pass:\n{report}");
    }
}
