//! `masstock-worker run`: connect, take jobs, beat, and stop cleanly.
//!
//! Shutdown (SIGTERM, what `docker stop` sends): the worker takes no new job and no new prompt;
//! prompts in flight get the grace period to finish; then their jobs go back to the queue, where
//! they were waiting, with their attempts untouched. The process exits 0. A worker killed
//! without that chance (SIGKILL, OOM) leaves its jobs locked until the lock expires; another
//! worker's stalled-job check then takes them back.
//!
//! A stopping worker puts its execution back to `pending` before handing the job back, so the row
//! says "waiting" while the job waits; the job is still locked by this worker at that moment, so no
//! other worker can have taken it. deploy.toml gives the worker's container a `stop_grace_period`
//! of 30 s, and `config check` refuses a stop period shorter than `SHUTDOWN_GRACE_SECONDS` plus
//! 10 s to hand work back and close.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use masstock_queue::consumer::{ConsumerOptions, WorkflowConsumer};
use tokio::sync::watch;

use crate::config::Settings;
use crate::gemini::GeminiClient;
use crate::gemini_quota::{self, GeminiQuota};
use crate::heartbeat::{self, Beat};
use crate::process::{Processor, Stopping};

/// How long connecting to Redis may take at start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the queue may take to settle once the grace period is over.
const CLOSE_MARGIN: Duration = Duration::from_secs(10);

pub async fn run(settings: Settings) -> ExitCode {
    masstock_kit::init_logs(settings.app_env, "info,sqlx=warn,bullmq=warn");
    match serve(settings, masstock_kit::termination()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the worker cannot run");
            ExitCode::from(1)
        }
    }
}

/// Takes jobs until `shutdown` resolves, then stops as the module says.
pub async fn serve(settings: Settings, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
    let redis_url = settings.redis_url.expose();
    let redact = |error: &dyn std::fmt::Display| error.to_string().replace(redis_url, "[redis url]");
    fs_err::create_dir_all(&settings.uploads_dir).map_err(|error| error.to_string())?;
    let database = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(settings.concurrency).unwrap_or(u32::MAX).saturating_add(2))
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy(settings.database_url.expose())
        .map_err(|_| "DATABASE_URL is not a valid PostgreSQL URL".to_owned())?;
    let redis = redis::Client::open(redis_url).map_err(|error| redact(&error))?;
    let redis = tokio::time::timeout(CONNECT_TIMEOUT, redis.get_connection_manager())
        .await
        .map_err(|_| format!("redis did not answer within {CONNECT_TIMEOUT:?}"))?
        .map_err(|error| redact(&error))?;
    let gemini = GeminiClient::new(settings.gemini.clone()).map_err(|error| error.to_string())?;
    let (request_stop, stop_requested) = watch::channel(false);
    let quota = GeminiQuota::new(
        redis.clone(),
        gemini_quota::key(&settings.queue_prefix),
        settings.gemini.requests_per_minute,
        stop_requested.clone(),
    );
    let (pass_deadline, deadline) = watch::channel(false);
    let processor = Arc::new(Processor {
        database,
        gemini,
        quota,
        uploads_dir: settings.uploads_dir.clone(),
        stopping: Stopping { requested: stop_requested.clone(), deadline },
    });
    let options = ConsumerOptions {
        lock_duration: settings.lock_duration,
        stalled_interval: settings.stalled_interval,
        ..ConsumerOptions::new(&settings.queue_prefix, settings.concurrency, &settings.worker_id)
    };
    let handler = {
        let processor = Arc::clone(&processor);
        move |job| Arc::clone(&processor).handle(job)
    };
    let consumer = Arc::new(
        WorkflowConsumer::start(redis_url, &options, CONNECT_TIMEOUT, handler)
            .await
            .map_err(|error| error.to_string())?,
    );
    let heartbeat_key = heartbeat::key(&settings.queue_prefix, &settings.worker_id);
    let mut heart = Heart::new(redis.clone(), heartbeat_key.clone(), Arc::clone(&consumer), &settings);
    // The first beat is written before the worker says it is ready, so that its health check
    // passes as soon as it does.
    heart.beat().await;
    let beating = tokio::spawn(heart.run());
    let reconciling = tokio::spawn(crate::reconcile::run(
        processor.database.clone(),
        redis_url.to_owned(),
        settings.queue_prefix.clone(),
        settings.reconcile_interval,
        stop_requested,
    ));
    tracing::info!(
        worker_id = %settings.worker_id,
        concurrency = settings.concurrency,
        model = %settings.gemini.model,
        requests_per_minute = settings.gemini.requests_per_minute,
        "taking jobs"
    );

    shutdown.await;
    let active = consumer.active_jobs().await;
    tracing::info!(
        active,
        grace_s = settings.shutdown_grace.as_secs(),
        "stopping: no new job; prompts in flight may finish"
    );
    let _ = request_stop.send(true);
    let grace = settings.shutdown_grace;
    let deadline_timer = tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        let _ = pass_deadline.send(true);
    });
    if let Err(error) = consumer.close(grace + CLOSE_MARGIN).await {
        tracing::warn!(%error, "the queue did not close cleanly");
    }
    deadline_timer.abort();
    beating.abort();
    reconciling.abort();
    let mut redis = redis;
    if let Err(error) = heartbeat::remove(&mut redis, &heartbeat_key).await {
        tracing::warn!(error = %redact(&error), "cannot remove the heartbeat");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Writes this worker's heartbeat.
struct Heart {
    redis: redis::aio::ConnectionManager,
    key: String,
    consumer: Arc<WorkflowConsumer>,
    worker_id: String,
    host: String,
    concurrency: usize,
    started_at_ms: u64,
    redis_url: String,
}

impl Heart {
    fn new(
        redis: redis::aio::ConnectionManager,
        key: String,
        consumer: Arc<WorkflowConsumer>,
        settings: &Settings,
    ) -> Self {
        Self {
            redis,
            key,
            consumer,
            worker_id: settings.worker_id.clone(),
            host: crate::config::host_name(),
            concurrency: settings.concurrency,
            started_at_ms: heartbeat::now_ms(),
            redis_url: settings.redis_url.expose().to_owned(),
        }
    }

    async fn beat(&mut self) {
        let beat = Beat {
            worker_id: self.worker_id.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            concurrency: self.concurrency,
            active: self.consumer.active_jobs().await,
            started_at_ms: self.started_at_ms,
            at_ms: heartbeat::now_ms(),
        };
        if let Err(error) = heartbeat::write(&mut self.redis, &self.key, &beat).await {
            tracing::warn!(error = %error.to_string().replace(&self.redis_url, "[redis url]"), "cannot write the heartbeat");
        }
    }

    /// Beats every [`heartbeat::INTERVAL`] until aborted.
    async fn run(mut self) {
        let mut ticks = tokio::time::interval(heartbeat::INTERVAL);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.beat().await;
        }
    }
}
