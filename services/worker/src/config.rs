//! The worker's settings, from the environment of DESIGN.md §4, checked once at start-up.
//!
//! `RunArgs`/`QueueArgs` read the environment of DESIGN.md §4 plus `QUEUE_PREFIX`, `WORKER_ID`
//! (default: the host name, i.e. the container id), `SHUTDOWN_GRACE_SECONDS` (20),
//! `GEMINI_CONNECT_TIMEOUT_SECONDS` (10), `GEMINI_REQUEST_TIMEOUT_SECONDS` (120),
//! `GEMINI_MAX_ATTEMPTS` (5), `GEMINI_BACKOFF_MS` (1000), `RECONCILE_INTERVAL_SECONDS` (60),
//! `QUEUE_LOCK_SECONDS` and `QUEUE_STALLED_INTERVAL_SECONDS` (30, the contract; tests shorten
//! them).

use std::path::PathBuf;
use std::time::Duration;

use masstock_kit::config::{check_url, problem, ConfigError};
use masstock_kit::{AppEnv, Secret};

/// Google's endpoint; tests and the local environment point `GEMINI_BASE_URL` at the fake.
pub const GOOGLE_GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// Where Redis is, and under which name this process's heartbeat is kept: what `run` and
/// `healthcheck` share.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    /// Redis connection URL, password included (`redis://:password@host:6379`)
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    pub redis_url: Secret,
    /// BullMQ's key prefix (tests give each run its own)
    #[arg(long, env = "QUEUE_PREFIX", default_value = masstock_queue::PREFIX, value_name = "PREFIX")]
    pub queue_prefix: String,
    /// This worker's name in heartbeats and in BullMQ's worker list [default: the host name,
    /// which in a container is the container's id]
    #[arg(long, env = "WORKER_ID", value_name = "NAME")]
    pub worker_id: Option<String>,
}

impl QueueArgs {
    pub fn redis_url(&self) -> Result<Secret, ConfigError> {
        check_url("REDIS_URL", &self.redis_url, &["redis", "rediss"])
    }

    pub fn worker_id(&self) -> Result<String, ConfigError> {
        let id = match &self.worker_id {
            Some(id) => id.trim().to_owned(),
            None => host_name(),
        };
        let valid =
            !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if valid {
            Ok(id)
        } else {
            Err(problem("WORKER_ID", "must be 1 to 128 letters, digits, `-`, `_` or `.`"))
        }
    }
}

/// Everything `run` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub queue: QueueArgs,
    /// PostgreSQL connection URL
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Secret,
    /// The key sent to Gemini
    #[arg(long, env = "GEMINI_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub gemini_api_key: Secret,
    /// Gemini's REST endpoint
    #[arg(long, env = "GEMINI_BASE_URL", default_value = GOOGLE_GEMINI_BASE_URL, value_name = "URL")]
    pub gemini_base_url: String,
    /// The model that generates images
    #[arg(long, env = "GEMINI_MODEL", default_value = "gemini-2.5-flash-image", value_name = "MODEL")]
    pub gemini_model: String,
    /// Requests per minute to Gemini, shared by every worker on this Redis
    #[arg(long, env = "GEMINI_RPM", default_value_t = 10)]
    pub gemini_rpm: u32,
    /// Seconds to wait for a connection to Gemini
    #[arg(long, env = "GEMINI_CONNECT_TIMEOUT_SECONDS", default_value_t = 10)]
    pub gemini_connect_timeout_seconds: u64,
    /// Seconds a whole generation request may take
    #[arg(long, env = "GEMINI_REQUEST_TIMEOUT_SECONDS", default_value_t = 120)]
    pub gemini_request_timeout_seconds: u64,
    /// Requests per prompt before a transient failure (timeout, 5xx, 429) is given up
    #[arg(long, env = "GEMINI_MAX_ATTEMPTS", default_value_t = 5)]
    pub gemini_max_attempts: u32,
    /// The first retry's delay in milliseconds; it doubles, with jitter, up to 30 s
    #[arg(long, env = "GEMINI_BACKOFF_MS", default_value_t = 1000)]
    pub gemini_backoff_ms: u64,
    /// Jobs processed at once by this process
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 3)]
    pub concurrency: usize,
    /// Where result images are written
    #[arg(long, env = "UPLOADS_DIR", default_value = "uploads", value_name = "DIR")]
    pub uploads_dir: PathBuf,
    /// The deployment environment
    #[arg(long, env = "APP_ENV", value_enum, default_value = "production")]
    pub app_env: AppEnv,
    /// After SIGTERM, how long in-flight prompts may take before their jobs go back to the queue
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
    /// How long a job's lock lasts without renewal (BullMQ's `lockDuration`), in seconds
    #[arg(long, env = "QUEUE_LOCK_SECONDS", default_value_t = masstock_queue::LOCK_DURATION.as_secs())]
    pub lock_seconds: u64,
    /// How often stalled jobs are looked for (BullMQ's `stalledInterval`), in seconds
    #[arg(long, env = "QUEUE_STALLED_INTERVAL_SECONDS", default_value_t = masstock_queue::STALLED_INTERVAL.as_secs())]
    pub stalled_interval_seconds: u64,
    /// How often executions left unfinished by a job that failed or vanished are settled, in seconds
    #[arg(long, env = "RECONCILE_INTERVAL_SECONDS", default_value_t = 60)]
    pub reconcile_interval_seconds: u64,
}

/// The settings `run` works with, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub redis_url: Secret,
    pub queue_prefix: String,
    pub worker_id: String,
    pub database_url: Secret,
    pub gemini: GeminiSettings,
    pub concurrency: usize,
    pub uploads_dir: PathBuf,
    pub app_env: AppEnv,
    pub shutdown_grace: Duration,
    pub lock_duration: Duration,
    pub stalled_interval: Duration,
    pub reconcile_interval: Duration,
}

/// How to reach Gemini and how hard to try.
#[derive(Debug, Clone)]
pub struct GeminiSettings {
    pub base_url: String,
    pub model: String,
    pub api_key: Secret,
    pub requests_per_minute: u32,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub backoff: Duration,
}

impl RunArgs {
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let redis_url = self.queue.redis_url()?;
        let database_url = check_url("DATABASE_URL", &self.database_url, &["postgres", "postgresql"])?;
        if self.gemini_api_key.expose().trim().is_empty() {
            return Err(problem("GEMINI_API_KEY", "is empty"));
        }
        if reqwest::header::HeaderValue::from_str(self.gemini_api_key.expose()).is_err() {
            return Err(problem(
                "GEMINI_API_KEY",
                "holds characters an HTTP header cannot carry (a trailing newline?)",
            ));
        }
        let base_url = self.gemini_base_url.trim_end_matches('/').to_owned();
        let valid_base = base_url
            .split_once("://")
            .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty());
        if !valid_base {
            return Err(problem("GEMINI_BASE_URL", format!("`{base_url}` is not an http(s) URL")));
        }
        if self.gemini_model.is_empty()
            || !self.gemini_model.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(problem("GEMINI_MODEL", format!("`{}` is not a model name", self.gemini_model)));
        }
        if self.gemini_rpm == 0 {
            return Err(problem("GEMINI_RPM", "must be at least 1"));
        }
        if self.gemini_max_attempts == 0 {
            return Err(problem("GEMINI_MAX_ATTEMPTS", "must be at least 1"));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(problem("WORKER_CONCURRENCY", "must be between 1 and 256"));
        }
        for (variable, seconds) in [
            ("GEMINI_CONNECT_TIMEOUT_SECONDS", self.gemini_connect_timeout_seconds),
            ("GEMINI_REQUEST_TIMEOUT_SECONDS", self.gemini_request_timeout_seconds),
            ("QUEUE_LOCK_SECONDS", self.lock_seconds),
            ("QUEUE_STALLED_INTERVAL_SECONDS", self.stalled_interval_seconds),
            ("RECONCILE_INTERVAL_SECONDS", self.reconcile_interval_seconds),
        ] {
            if seconds == 0 {
                return Err(problem(variable, "must be at least 1"));
            }
        }
        Ok(Settings {
            redis_url,
            queue_prefix: self.queue.queue_prefix.clone(),
            worker_id: self.queue.worker_id()?,
            database_url,
            gemini: GeminiSettings {
                base_url,
                model: self.gemini_model.clone(),
                api_key: self.gemini_api_key.clone(),
                requests_per_minute: self.gemini_rpm,
                connect_timeout: Duration::from_secs(self.gemini_connect_timeout_seconds),
                request_timeout: Duration::from_secs(self.gemini_request_timeout_seconds),
                max_attempts: self.gemini_max_attempts,
                backoff: Duration::from_millis(self.gemini_backoff_ms),
            },
            concurrency: self.concurrency,
            uploads_dir: self.uploads_dir.clone(),
            app_env: self.app_env,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            lock_duration: Duration::from_secs(self.lock_seconds),
            stalled_interval: Duration::from_secs(self.stalled_interval_seconds),
            reconcile_interval: Duration::from_secs(self.reconcile_interval_seconds),
        })
    }
}

/// The host's name: in a container, the container's id, which is what makes a heartbeat
/// "this container's".
pub(crate) fn host_name() -> String {
    fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".to_owned())
}
