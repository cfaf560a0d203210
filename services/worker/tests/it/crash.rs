//! The reference's crash scenarios, with real processes: a worker killed mid-job, a worker asked
//! to stop, a Redis restart; and the rate limit shared by two workers.

use std::time::{Duration, Instant};

use masstock_fake_gemini::{FakeGemini, Settings};
use masstock_schema::MIGRATOR;

use crate::support::{
    enqueued, finished, row, stored_images, wait_for, Namespace, OwnRedis, Worker, WorkerSetup, GEMINI_KEY, REDIS_URL,
};

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_job_whose_worker_is_killed_is_finished_by_another_with_one_result_per_prompt(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    // A short lock and stall check (30 s each in production) keep the test short.
    let setup = WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path())
        .with("QUEUE_LOCK_SECONDS", "3")
        .with("QUEUE_STALLED_INTERVAL_SECONDS", "2");
    let mut doomed = Worker::start(&setup, "doomed");

    let prompts = ["one [slow:700]", "two [slow:700]", "three [slow:700]", "four [slow:700]", "five [slow:700]"];
    let id = enqueued(&pool, &namespace, &prompts).await;
    wait_for(&pool, id, Duration::from_secs(20), &[&doomed], |row| row.progress_done >= 2).await;
    doomed.signal("KILL");
    assert_eq!(doomed.wait_exit(Duration::from_secs(5)), None, "killed by a signal");
    assert!(namespace.job_in("active", id), "the killed worker's job stays active, locked, until its lock expires");

    let rescuer = Worker::start(&setup, "rescuer");
    let row = finished(&pool, id, Duration::from_secs(40), &[&rescuer]).await;
    assert_eq!((row.status.as_str(), row.progress_done, row.results), ("completed", 5, 5));
    assert_eq!(stored_images(&pool, uploads.path(), id).await, [0, 1, 2, 3, 4]);
    assert!(rescuer.logs().contains("job done"), "{}", rescuer.logs());
    // The prompts the killed worker stored were not generated again (the one in flight may be).
    let generated = gemini.request_count();
    assert!((5..=6).contains(&generated), "{generated} requests for 5 prompts");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sigterm_lets_the_prompt_in_flight_finish_and_hands_the_job_back(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let setup = WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path()).with("SHUTDOWN_GRACE_SECONDS", "10");
    let mut stopping = Worker::start(&setup, "stopping");

    let prompts = ["one [slow:1500]", "two [slow:1500]", "three [slow:1500]", "four [slow:1500]"];
    let id = enqueued(&pool, &namespace, &prompts).await;
    wait_for(&pool, id, Duration::from_secs(20), &[&stopping], |row| row.progress_done >= 1).await;
    // The second prompt is at Gemini: that is the prompt in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gemini.stats().in_flight == 0 {
        assert!(Instant::now() < deadline, "no second request: {}", stopping.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stopping.signal("TERM");
    assert_eq!(stopping.wait_exit(Duration::from_secs(25)), Some(0), "{}", stopping.logs());

    let handed_back = row(&pool, id).await;
    assert_eq!(handed_back.status, "pending", "{}", stopping.logs());
    assert_eq!(handed_back.results, 2, "the prompt in flight finished: {}", stopping.logs());
    assert!(namespace.job_in("prioritized", id), "the job waits again, with its priority");
    assert!(!namespace.job_in("active", id) && !namespace.job_in("failed", id));
    assert_eq!(namespace.job_field(id, "atm").as_deref().unwrap_or("0"), "0", "no attempt was used");
    assert!(stopping.logs().contains("job handed back to the queue"), "{}", stopping.logs());

    let next = Worker::start(&setup, "next");
    let row = finished(&pool, id, Duration::from_secs(20), &[&next]).await;
    assert_eq!((row.status.as_str(), row.results), ("completed", 4));
    assert_eq!(gemini.request_count(), 4, "no prompt was generated twice");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn after_the_grace_period_the_prompt_in_flight_is_abandoned_and_its_job_handed_back(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let setup = WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path()).with("SHUTDOWN_GRACE_SECONDS", "1");
    let mut stopping = Worker::start(&setup, "stopping");

    let id = enqueued(&pool, &namespace, &["slow [slow:8000]"]).await;
    wait_for(&pool, id, Duration::from_secs(20), &[&stopping], |row| row.status == "processing").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stopping.signal("TERM");
    assert_eq!(stopping.wait_exit(Duration::from_secs(15)), Some(0), "{}", stopping.logs());
    assert!(namespace.job_in("prioritized", id), "{}", stopping.logs());
    assert_eq!(row(&pool, id).await.status, "pending");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_workers_never_exceed_the_shared_rate_limit(pool: sqlx::PgPool) {
    const LIMIT: usize = 4;
    let namespace = Namespace::new(REDIS_URL);
    // Each request takes a moment, so a worker's job lasts long enough for the other to take one.
    let gemini =
        FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY).with_latency(Duration::from_millis(300)))
            .unwrap();
    let uploads = tempfile::tempdir().unwrap();
    // One job at a time each: with the default 3, the first worker to start could take all three
    // jobs before the second fetched any, and the limit would not be shared at all.
    let setup = WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path())
        .with("GEMINI_RPM", &LIMIT.to_string())
        .with("WORKER_CONCURRENCY", "1");
    let first = Worker::start(&setup, "first");
    let second = Worker::start(&setup, "second");

    let mut ids = Vec::new();
    for batch in 0..3 {
        ids.push(enqueued(&pool, &namespace, &[&format!("batch {batch} a"), &format!("batch {batch} b")]).await);
    }
    for id in &ids {
        let row = finished(&pool, *id, Duration::from_secs(100), &[&first, &second]).await;
        assert_eq!(row.status, "completed");
    }
    let requests = gemini.requests();
    assert_eq!(requests.len(), 6);
    let window = Duration::from_secs(60);
    assert!(
        gemini.max_requests_in_window(window) <= LIMIT,
        "{} requests in one 60 s window, limit {LIMIT}",
        gemini.max_requests_in_window(window)
    );
    // Both workers took part, and the limit made the last requests wait for the window.
    for worker in [&first, &second] {
        assert!(worker.logs().contains("job done"), "{}", worker.logs());
    }
    let span = requests.last().unwrap().arrived_at.duration_since(requests[0].arrived_at);
    assert!(span >= window, "the 6 requests spread over {span:?}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_redis_restart_loses_no_job(pool: sqlx::PgPool) {
    let mut redis = OwnRedis::start();
    let namespace = Namespace::new(&redis.url());
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let setup = WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path())
        .with("WORKER_CONCURRENCY", "2")
        .with("QUEUE_LOCK_SECONDS", "5")
        .with("QUEUE_STALLED_INTERVAL_SECONDS", "3");
    let worker = Worker::start(&setup, "survivor");

    let mut ids = Vec::new();
    for index in 0..6 {
        ids.push(
            enqueued(&pool, &namespace, &[&format!("job {index} a [slow:400]"), &format!("job {index} b [slow:400]")])
                .await,
        );
    }
    // Some jobs run, others wait: restart now.
    wait_for(&pool, ids[0], Duration::from_secs(20), &[&worker], |row| row.progress_done >= 1).await;
    redis.restart();

    for id in &ids {
        let row = finished(&pool, *id, Duration::from_secs(90), &[&worker]).await;
        assert_eq!((row.status.as_str(), row.results), ("completed", 2), "{}", worker.logs());
    }
    drop(worker);
    drop(namespace);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_job_that_stalls_twice_fails_and_its_execution_is_settled_with_a_readable_error(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let setup = WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path())
        .with("QUEUE_LOCK_SECONDS", "2")
        .with("QUEUE_STALLED_INTERVAL_SECONDS", "1")
        .with("RECONCILE_INTERVAL_SECONDS", "1");
    let id =
        enqueued(&pool, &namespace, &["one [slow:1500]", "two [slow:1500]", "three [slow:1500]", "four [slow:1500]"])
            .await;

    // Two workers die in turn while holding the job: BullMQ allows one stall (maxStalledCount 1).
    for (name, progress) in [("first", 1), ("second", 2)] {
        let mut doomed = Worker::start(&setup, name);
        wait_for(&pool, id, Duration::from_secs(30), &[&doomed], |row| row.progress_done >= progress).await;
        doomed.signal("KILL");
        doomed.wait_exit(Duration::from_secs(5));
    }
    let survivor = Worker::start(&setup, "survivor");
    namespace.wait_job_in("failed", id, Duration::from_secs(30)).await;
    assert_eq!(namespace.job_field(id, "failedReason").as_deref(), Some("job stalled more than allowable limit"));
    let row = finished(&pool, id, Duration::from_secs(20), &[&survivor]).await;
    assert_eq!(row.status, "failed");
    assert_eq!(
        row.error.as_deref(),
        Some("the worker processing this execution stopped more than once; start it again")
    );
    assert!(survivor.logs().contains("the job failed without settling its execution"), "{}", survivor.logs());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn without_its_database_a_worker_hands_jobs_back_without_using_their_attempts(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let setup = WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path());
    let unreachable = format!("postgres://masstock:masstock@127.0.0.1:{}/nothing", masstock_tests::free_port());
    let mut cut_off = Worker::start(&setup.clone().with("DATABASE_URL", &unreachable), "cut-off");

    let id = enqueued(&pool, &namespace, &["patience"]).await;
    cut_off.wait_for_log("cannot work; the job goes back to the queue", Duration::from_secs(30));
    cut_off.wait_for_log("job handed back to the queue", Duration::from_secs(15));
    assert!(!namespace.job_in("failed", id));
    assert_eq!(namespace.job_field(id, "atm").as_deref().unwrap_or("0"), "0", "no attempt was used");
    // Stopped as a deploy stops it. It keeps taking the job and handing it back, so a SIGKILL
    // could catch it holding the job, which would then wait for the stalled check (30 s).
    cut_off.signal("TERM");
    assert_eq!(cut_off.wait_exit(Duration::from_secs(30)), Some(0), "{}", cut_off.logs());

    let connected = Worker::start(&setup, "connected");
    let row = finished(&pool, id, Duration::from_secs(30), &[&connected]).await;
    assert_eq!((row.status.as_str(), row.results), ("completed", 1));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_prompt_waiting_for_the_rate_limit_does_not_hold_up_a_shutdown(pool: sqlx::PgPool) {
    let namespace = Namespace::new(REDIS_URL);
    let gemini = FakeGemini::start(Settings::default().with_api_key(GEMINI_KEY)).unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let setup = WorkerSetup::new(&pool, &namespace, &gemini.url(), uploads.path())
        .with("GEMINI_RPM", "1")
        .with("SHUTDOWN_GRACE_SECONDS", "60");
    let mut stopping = Worker::start(&setup, "stopping");

    let id = enqueued(&pool, &namespace, &["first", "second waits a minute for its slot"]).await;
    stopping.wait_for_log("gemini rate limit reached; waiting for a slot", Duration::from_secs(20));
    stopping.signal("TERM");
    // Far less than the 60 s grace: nothing was in flight.
    assert_eq!(stopping.wait_exit(Duration::from_secs(30)), Some(0), "{}", stopping.logs());
    assert!(namespace.job_in("prioritized", id), "{}", stopping.logs());
    assert_eq!((row(&pool, id).await.status.as_str(), row(&pool, id).await.results), ("pending", 1));
    assert_eq!(gemini.request_count(), 1, "the second prompt was never sent");
}
