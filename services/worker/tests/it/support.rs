//! Worker processes on the test database, a namespace of Redis keys per test, executions to
//! process, and waiting for them; everything is stopped and removed when dropped.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use masstock_queue::{WorkflowJob, WorkflowQueue};
use masstock_tests::{free_port, require_tool, wait_for_port, ChildGuard};
use serde_json::Value;
use uuid::Uuid;

/// The bootstrap's Redis.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The key the fake Gemini accepts.
pub const GEMINI_KEY: &str = "AIzaSy-test-key-that-must-never-be-logged";

/// A test's own queue prefix on a Redis; its keys are deleted when dropped.
#[derive(Debug)]
pub struct Namespace {
    pub prefix: String,
    pub redis_url: String,
}

impl Namespace {
    pub fn new(redis_url: &str) -> Self {
        let namespace = Self { prefix: format!("test-{}", Uuid::new_v4().simple()), redis_url: redis_url.to_owned() };
        redis::Client::open(redis_url)
            .and_then(|client| client.get_connection())
            .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection))
            .unwrap_or_else(|error| panic!("no Redis at {redis_url} ({error}): run `script/bootstrap`"));
        namespace
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.redis_url.as_str()).and_then(|client| client.get_connection()).expect("redis")
    }

    /// A key of this test's queue (`<prefix>:workflow-queue:<suffix>`).
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{}:{suffix}", self.prefix, masstock_queue::QUEUE)
    }

    pub async fn queue(&self) -> WorkflowQueue {
        WorkflowQueue::connect(&self.redis_url, &self.prefix, Duration::from_secs(5)).await.expect("connect the queue")
    }

    /// A field of a job's hash.
    pub fn job_field(&self, id: Uuid, field: &str) -> Option<String> {
        redis::cmd("HGET").arg(self.key(&id.to_string())).arg(field).query(&mut self.connection()).expect("HGET")
    }

    /// Waits until `id` is in `state`.
    pub async fn wait_job_in(&self, state: &str, id: Uuid, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.job_in(state, id) {
            assert!(Instant::now() < deadline, "job {id} is not in `{state}` after {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether `id` is in the list or sorted set `state` (`prioritized`, `active`, `failed`, …).
    pub fn job_in(&self, state: &str, id: Uuid) -> bool {
        let mut connection = self.connection();
        let key = self.key(state);
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut connection).expect("TYPE");
        match kind.as_str() {
            "list" => {
                let ids: Vec<String> = redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query(&mut connection).unwrap();
                ids.contains(&id.to_string())
            }
            "zset" => {
                let score: Option<f64> =
                    redis::cmd("ZSCORE").arg(&key).arg(id.to_string()).query(&mut connection).unwrap();
                score.is_some()
            }
            _ => false,
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Ok(mut connection) =
            redis::Client::open(self.redis_url.as_str()).and_then(|client| client.get_connection())
        {
            for pattern in [format!("{}:*", self.prefix), masstock_worker::gemini_quota::key(&self.prefix)] {
                let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut connection).unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut connection);
                }
            }
        }
    }
}

/// A user and an execution of `prompts`, pending, as the API stores it.
pub async fn execution(pool: &sqlx::PgPool, prompts: &[&str]) -> Uuid {
    let user: Uuid = sqlx::query_scalar(
        "insert into users (email, password_hash) values ($1, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA') returning id",
    )
    .bind(format!("{}@example.com", Uuid::new_v4().simple()))
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query_scalar(
        "insert into executions (user_id, workflow_id, prompts, config, progress_total) values ($1, $2, $3, $4, $5) returning id",
    )
    .bind(user)
    .bind(Uuid::parse_str(masstock_schema::DEFAULT_WORKFLOW_ID).unwrap())
    .bind(serde_json::json!(prompts))
    .bind(serde_json::json!({ "aspectRatio": "1:1" }))
    .bind(i32::try_from(prompts.len()).unwrap())
    .fetch_one(pool)
    .await
    .unwrap()
}

/// An execution of `prompts` with its job on the queue, added as the API adds it.
pub async fn enqueued(pool: &sqlx::PgPool, namespace: &Namespace, prompts: &[&str]) -> Uuid {
    let id = execution(pool, prompts).await;
    let job = WorkflowJob {
        execution_id: id,
        prompts: prompts.iter().map(|prompt| (*prompt).to_owned()).collect(),
        config: serde_json::json!({ "aspectRatio": "1:1" }),
    };
    namespace.queue().await.add(&job, false, Duration::from_secs(5)).await.expect("add the job");
    id
}

/// An execution's row, as the worker leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub status: String,
    pub progress_done: i32,
    pub error: Option<String>,
    pub results: i64,
}

pub async fn row(pool: &sqlx::PgPool, id: Uuid) -> Row {
    let (status, progress_done, error): (String, i32, Option<String>) =
        sqlx::query_as("select status, progress_done, error from executions where id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
    let results = sqlx::query_scalar("select count(*) from execution_results where execution_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
    Row { status, progress_done, error, results }
}

/// Waits until `condition` holds for the execution's row; fails with the row and the workers' logs.
pub async fn wait_for(
    pool: &sqlx::PgPool,
    id: Uuid,
    within: Duration,
    workers: &[&Worker],
    condition: impl Fn(&Row) -> bool,
) -> Row {
    let deadline = Instant::now() + within;
    loop {
        let current = row(pool, id).await;
        if condition(&current) {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "execution {id} is still {current:?} after {within:?}\n{}",
            workers.iter().map(|worker| worker.logs()).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the execution is `completed` or `failed`.
pub async fn finished(pool: &sqlx::PgPool, id: Uuid, within: Duration, workers: &[&Worker]) -> Row {
    wait_for(pool, id, within, workers, |row| matches!(row.status.as_str(), "completed" | "failed")).await
}

/// How a test worker is configured; [`Worker::start`] runs it.
#[derive(Debug, Clone)]
pub struct WorkerSetup {
    pub env: Vec<(String, String)>,
}

impl WorkerSetup {
    /// A worker on the test database, the namespace's queue and the fake Gemini at `gemini_url`,
    /// with short retries so that tests stay quick.
    pub fn new(pool: &sqlx::PgPool, namespace: &Namespace, gemini_url: &str, uploads: &Path) -> Self {
        let env = [
            ("DATABASE_URL", masstock_tests::database_url_of(pool)),
            ("REDIS_URL", namespace.redis_url.clone()),
            ("QUEUE_PREFIX", namespace.prefix.clone()),
            ("GEMINI_API_KEY", GEMINI_KEY.to_owned()),
            ("GEMINI_BASE_URL", gemini_url.to_owned()),
            ("GEMINI_RPM", "1000".to_owned()),
            ("GEMINI_BACKOFF_MS", "50".to_owned()),
            ("GEMINI_MAX_ATTEMPTS", "3".to_owned()),
            ("UPLOADS_DIR", uploads.display().to_string()),
            ("APP_ENV", "test".to_owned()),
            ("RUST_LOG", "debug,sqlx=warn,hyper=info,hyper_util=info,reqwest=info,h2=info".to_owned()),
            ("NO_COLOR", "1".to_owned()),
        ];
        Self { env: env.into_iter().map(|(name, value)| (name.to_owned(), value)).collect() }
    }

    #[must_use]
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(existing, _)| existing != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A `masstock-worker run` process, its stderr kept in a file; stopped when dropped, and its
/// logs printed if the test is failing.
#[derive(Debug)]
pub struct Worker {
    pub process: Option<ChildGuard>,
    pub name: String,
    log: tempfile::NamedTempFile,
}

impl Worker {
    pub fn start(setup: &WorkerSetup, name: &str) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_masstock-worker"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(setup.env.iter().map(|(name, value)| (name.as_str(), value.as_str())))
            .env("WORKER_ID", name)
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("start masstock-worker");
        let worker = Self { process: Some(ChildGuard(child)), name: name.to_owned(), log };
        worker.wait_for_log("taking jobs", Duration::from_secs(20));
        worker
    }

    pub fn logs(&self) -> String {
        format!("--- worker {} ---\n{}", self.name, fs_err::read_to_string(self.log.path()).unwrap_or_default())
    }

    pub fn wait_for_log(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.logs().contains(text) {
            if let Some(process) = &self.process {
                let pid = process.0.id();
                assert!(
                    Path::new(&format!("/proc/{pid}")).exists(),
                    "worker {} exited before logging `{text}`:\n{}",
                    self.name,
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "worker {} did not log `{text}` within {within:?}:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> String {
        self.process.as_ref().expect("a running worker").0.id().to_string()
    }

    /// Sends `signal` (`KILL`, `TERM`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code (`None` when killed by a signal).
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut guard = self.process.take().expect("a running worker");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = guard.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "worker {} still runs after {within:?}:\n{}", self.name, self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// The prompt indexes of the images stored for an execution (`<index>-<nonce>.png`), each file
/// checked to be a PNG and named by a result row.
pub async fn stored_images(pool: &sqlx::PgPool, uploads: &Path, id: Uuid) -> Vec<usize> {
    let names: Vec<String> = fs_err::read_dir(uploads.join(id.to_string()))
        .map(|entries| entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let locations: Vec<String> =
        sqlx::query_scalar("select storage_location from execution_results where execution_id = $1")
            .bind(id)
            .fetch_all(pool)
            .await
            .unwrap();
    let mut indexes = Vec::new();
    for name in &names {
        let bytes = fs_err::read(uploads.join(id.to_string()).join(name)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is a PNG");
        assert!(locations.contains(&format!("{id}/{name}")), "{name} is named by a result: {locations:?}");
        indexes.push(name.split_once('-').and_then(|(index, _)| index.parse().ok()).expect("`<index>-<nonce>.png`"));
    }
    indexes.sort_unstable();
    indexes
}

/// The job's progress as BullMQ stores it.
pub fn progress(namespace: &Namespace, id: Uuid) -> Option<Value> {
    namespace.job_field(id, "progress").and_then(|progress| serde_json::from_str(&progress).ok())
}

/// A Redis of the test's own, with AOF and a password, that can be restarted.
pub struct OwnRedis {
    port: u16,
    folder: tempfile::TempDir,
    process: Option<ChildGuard>,
}

impl OwnRedis {
    pub const PASSWORD: &'static str = "restart-test-password";

    pub fn start() -> Self {
        let mut redis = Self { port: free_port(), folder: tempfile::tempdir().unwrap(), process: None };
        redis.launch();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}", Self::PASSWORD, self.port)
    }

    fn launch(&mut self) {
        let child = Command::new(require_tool("redis-server"))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "everysec", "--requirepass", Self::PASSWORD])
            .arg("--dir")
            .arg(self.folder.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.process = Some(ChildGuard(child));
        wait_for_port(([127, 0, 0, 1], self.port).into(), Duration::from_secs(10));
    }

    /// Stops Redis as `docker restart` does (SIGTERM: it flushes its AOF) and starts it again on
    /// the same data.
    pub fn restart(&mut self) {
        drop(self.process.take());
        self.launch();
    }
}
