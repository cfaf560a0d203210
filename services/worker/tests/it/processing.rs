//! An execution through a real worker process: images, results, progress, per-prompt errors,
//! retries, and a key that never reaches the logs.

use std::time::Duration;

use masstock_fake_gemini::{FakeGemini, Settings};
use masstock_schema::MIGRATOR;
use serde_json::json;

use crate::support::{
    enqueued, finished, progress, stored_images, Namespace, Worker, WorkerSetup, GEMINI_KEY, REDIS_URL,
};

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_execution_becomes_images_and_a_failing_prompt_fails_alone(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let worker = Worker::start(&WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path()), "w1");

    let id =
        enqueued(&pool, &namespace, &["a red fox", "a forbidden thing [fail:400]", "a blue whale", "[noimage]"]).await;
    let row = finished(&pool, id, Duration::from_secs(30), &[&worker]).await;

    assert_eq!((row.status.as_str(), row.progress_done, row.results, row.error), ("completed", 4, 2, None));
    assert_eq!(stored_images(&pool, uploads.path(), id).await, [0, 2]);
    let types: Vec<(i32, String)> =
        sqlx::query_as("select prompt_index, content_type from execution_results where execution_id = $1 order by 1")
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(types, [(0, "image/png".to_owned()), (2, "image/png".to_owned())]);
    let failures: Vec<(i32, String, bool)> = sqlx::query_as(
        "select prompt_index, error, permanent from execution_prompt_failures where execution_id = $1 order by 1",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert_eq!(failures[0].0, 1);
    assert!(failures[0].1.starts_with("gemini refused the request (400 INVALID_ARGUMENT)"), "{failures:?}");
    assert!(failures[0].2, "a 400 is not retried");
    assert_eq!(failures[1].0, 3);
    assert!(
        failures[1].1.starts_with("gemini answered without an image: no image part (finishReason STOP)"),
        "{failures:?}"
    );
    // The 400 was sent once: other 4xx are not retried.
    let sent_for_the_400 = gemini
        .requests()
        .iter()
        .filter(|request| request.prompt.as_deref().is_some_and(|prompt| prompt.contains("[fail:400]")))
        .count();
    assert_eq!(sent_for_the_400, 1);
    // Completed jobs are removed (removeOnComplete); the progress was the job's until then.
    assert!(!namespace.job_in("completed", id));
    assert_eq!(namespace.job_field(id, "data"), None);

    let logs = worker.logs();
    assert!(logs.contains("image stored"), "{logs}");
    assert!(!logs.contains(GEMINI_KEY), "the API key is in the logs:\n{logs}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn progress_is_recorded_in_the_row_and_in_the_job(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let worker = Worker::start(&WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path()), "w1");

    let id = enqueued(&pool, &namespace, &["one", "two [slow:1500]", "three [slow:1500]"]).await;
    let row =
        crate::support::wait_for(&pool, id, Duration::from_secs(20), &[&worker], |row| row.progress_done >= 1).await;
    assert_eq!(row.status, "processing");
    assert_eq!(progress(&namespace, id), Some(json!({ "done": 1, "total": 3 })));
    assert!(namespace.job_in("active", id));
    let row = finished(&pool, id, Duration::from_secs(20), &[&worker]).await;
    assert_eq!((row.status.as_str(), row.progress_done, row.results), ("completed", 3, 3));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn transient_failures_are_retried_three_times_then_the_job_and_the_execution_fail(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let setup = WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path()).with("GEMINI_MAX_ATTEMPTS", "2");
    let worker = Worker::start(&setup, "w1");

    let id = enqueued(&pool, &namespace, &["always down [fail:503]"]).await;
    // BullMQ's exponential backoff: 5 s, then 10 s.
    let row = finished(&pool, id, Duration::from_secs(60), &[&worker]).await;

    assert_eq!(row.status, "failed");
    let error = row.error.unwrap();
    assert_eq!(
        error,
        "every prompt failed; prompt 1: gemini still failing after 2 attempts: 503 UNAVAILABLE: The model is overloaded. Please try again later."
    );
    namespace.wait_job_in("failed", id, Duration::from_secs(5)).await;
    assert_eq!(namespace.job_field(id, "atm").as_deref(), Some("3"), "BullMQ's attemptsMade");
    assert_eq!(namespace.job_field(id, "failedReason").as_deref(), Some(error.as_str()));
    // Three runs of the job, two requests each.
    assert_eq!(gemini.request_count(), 6);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_prompt_that_recovers_on_a_retry_completes_the_execution_without_repeating_the_others(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let setup = WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path()).with("GEMINI_MAX_ATTEMPTS", "1");
    let worker = Worker::start(&setup, "w1");

    // The second prompt fails on the job's first run and succeeds on its second.
    let id = enqueued(&pool, &namespace, &["steady", "shaky [flaky:1]"]).await;
    let row = finished(&pool, id, Duration::from_secs(30), &[&worker]).await;

    assert_eq!((row.status.as_str(), row.results), ("completed", 2));
    let steady = gemini.requests().iter().filter(|request| request.prompt.as_deref() == Some("steady")).count();
    assert_eq!(steady, 1, "a stored prompt is not generated again");
    let failures: i64 = sqlx::query_scalar("select count(*) from execution_prompt_failures where execution_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(failures, 0, "the recovered prompt's failure is forgotten");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn when_every_prompt_is_refused_the_execution_fails_at_once_with_the_reasons(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key("another-key")).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let worker = Worker::start(&WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path()), "w1");

    let id = enqueued(&pool, &namespace, &["a", "b"]).await;
    let row = finished(&pool, id, Duration::from_secs(20), &[&worker]).await;

    assert_eq!(row.status, "failed");
    let expected = "gemini refused the request (400 INVALID_ARGUMENT): API key not valid. Please pass a valid API key.";
    assert_eq!(
        row.error.as_deref(),
        Some(format!("every prompt failed; prompt 1: {expected}; prompt 2: {expected}").as_str())
    );
    namespace.wait_job_in("failed", id, Duration::from_secs(5)).await;
    assert_eq!(namespace.job_field(id, "atm").as_deref(), Some("1"), "a refused key is not retried");
    assert!(!worker.logs().contains(GEMINI_KEY));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn prompts_go_through_the_workflow_template_with_the_merged_config(pool: sqlx::PgPool) {
    sqlx::query("update workflows set prompt_template = 'A watercolour of {prompt}, soft light', model_config = '{\"aspectRatio\": \"16:9\"}'")
        .execute(&pool)
        .await
        .unwrap();
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let worker = Worker::start(&WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path()), "w1");

    // The execution's own config (`aspectRatio` 1:1, see `support::enqueued`) wins over the workflow's.
    let id = enqueued(&pool, &namespace, &["a lighthouse"]).await;
    let row = finished(&pool, id, Duration::from_secs(20), &[&worker]).await;
    assert_eq!(row.status, "completed");
    let requests = gemini.requests();
    assert_eq!(requests[0].prompt.as_deref(), Some("A watercolour of a lighthouse, soft light"));
    let location: String = sqlx::query_scalar("select storage_location from execution_results where execution_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    let image = fs_err::read(uploads.path().join(location)).unwrap();
    // A 1:1 image from the fake is 64 × 64: IHDR's width and height.
    assert_eq!((&image[16..20], &image[20..24]), (&64_u32.to_be_bytes()[..], &64_u32.to_be_bytes()[..]));
}
