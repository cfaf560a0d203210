//! Taking jobs off the queue: the worker's side of the contract.
//!
//! A handler receives a [`ReceivedJob`] and answers with a value or a [`JobFailure`], which says
//! what BullMQ must do with the job: retry it with backoff, fail it for good, or hand it back to
//! the queue untouched (shutdown). The `bullmq-official` worker, its locks, lock renewal and
//! stalled-job checks stay behind this module.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bullmq::options::RedisConnectionOptions;
use bullmq::types::JobProgress;
use bullmq::worker::WorkerEvent;
use bullmq::{Job, Worker, WorkerOptions};

use crate::{millis, redact, QueueError, WorkflowJob, LOCK_DURATION, QUEUE, STALLED_INTERVAL};

/// How many times a job may stall (its worker died or lost its lock) before BullMQ fails it
/// instead of returning it to the queue: BullMQ's default, stated so that it is a decision.
pub const MAX_STALLED_COUNT: u32 = 1;
/// How long the worker waits before fetching again after Redis failed it (BullMQ's default is
/// 15 s, long enough to leave a queue idle well after Redis is back).
const FETCH_RETRY_DELAY: Duration = Duration::from_secs(2);

/// How a worker takes jobs.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// BullMQ's key prefix: `PREFIX` in production.
    pub prefix: String,
    /// Jobs processed at once by this process.
    pub concurrency: usize,
    /// How long this process holds a job without renewing its lock.
    pub lock_duration: Duration,
    /// How often the stalled-job check runs.
    pub stalled_interval: Duration,
    /// The name under which BullMQ lists this worker (`CLIENT SETNAME`).
    pub name: String,
}

impl ConsumerOptions {
    /// The contract's defaults (DESIGN.md §4): lock 30 s, stalled check 30 s.
    #[must_use]
    pub fn new(prefix: &str, concurrency: usize, name: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            concurrency,
            lock_duration: LOCK_DURATION,
            stalled_interval: STALLED_INTERVAL,
            name: name.to_owned(),
        }
    }
}

/// Why a job did not complete, and what the queue must do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobFailure {
    /// Try again after BullMQ's backoff, unless this was the last attempt: then the job is failed
    /// with this reason.
    Retry(String),
    /// Fail the job now with this reason; no attempt is left that could succeed.
    Fail(String),
    /// Put the job back where it was waiting, as if it had not been taken: the worker is
    /// stopping. It keeps its attempts and its priority.
    HandBack,
}

/// A job taken off the queue.
#[derive(Debug)]
pub struct ReceivedJob {
    job: Job,
    /// The payload.
    pub workflow: WorkflowJob,
}

impl ReceivedJob {
    #[must_use]
    pub fn id(&self) -> &str {
        self.job.id()
    }

    /// Attempts that already failed; 0 on the first run.
    #[must_use]
    pub fn attempts_made(&self) -> u32 {
        self.job.attempts_made()
    }

    /// Whether a failure now would be final: no retry is left.
    #[must_use]
    pub fn is_last_attempt(&self) -> bool {
        let attempts = self.job.opts().attempts.unwrap_or(1).max(1);
        self.job.attempts_made() + 1 >= attempts
    }

    /// Records `{"done": done, "total": total}` as the job's progress, where BullMQ's clients
    /// (and `masstockctl queue show`) read it.
    pub async fn report_progress(&mut self, done: usize, total: usize) -> Result<(), QueueError> {
        let progress = JobProgress::Object(serde_json::json!({ "done": done, "total": total }));
        self.job.update_progress(progress).await.map_err(|error| QueueError::Worker(error.to_string()))
    }
}

/// A running consumer of the workflow queue.
pub struct WorkflowConsumer {
    worker: Arc<Worker>,
    events: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for WorkflowConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowConsumer").field("id", &self.worker.id()).finish_non_exhaustive()
    }
}

impl WorkflowConsumer {
    /// Connects to the queue and starts taking jobs, calling `handler` for each, up to
    /// `options.concurrency` at once.
    pub async fn start<H, Fut>(
        redis_url: &str,
        options: &ConsumerOptions,
        timeout: Duration,
        handler: H,
    ) -> Result<Self, QueueError>
    where
        H: Fn(ReceivedJob) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<serde_json::Value, JobFailure>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let processor = move |job: Job, _cancel: bullmq::worker::CancellationToken| {
            let handler = Arc::clone(&handler);
            async move {
                let workflow = match serde_json::from_value::<WorkflowJob>(job.data().clone()) {
                    Ok(workflow) => workflow,
                    // A payload no attempt can read: fail it for good, with what is wrong.
                    Err(error) => return Err(bullmq::Error::Unrecoverable(format!("unreadable job data: {error}"))),
                };
                match handler(ReceivedJob { job, workflow }).await {
                    Ok(value) => Ok(value),
                    Err(JobFailure::Retry(reason)) => Err(bullmq::Error::ProcessingError(reason)),
                    Err(JobFailure::Fail(reason)) => Err(bullmq::Error::Unrecoverable(reason)),
                    // The crate moves a job that reports a rate limit back from active to where it
                    // waited (BullMQ's `moveJobFromActiveToWait`), attempts untouched.
                    Err(JobFailure::HandBack) => Err(bullmq::Error::RateLimited { delay_ms: 0 }),
                }
            }
        };
        let worker_options = WorkerOptions::new()
            .connection(RedisConnectionOptions::new().url(redis_url))
            .prefix(&options.prefix)
            .concurrency(options.concurrency)
            .lock_duration(options.lock_duration)
            .stalled_interval(options.stalled_interval)
            .max_stalled_count(MAX_STALLED_COUNT)
            .run_retry_delay(FETCH_RETRY_DELAY)
            .name(&options.name);
        // The worker starts taking jobs as soon as it is connected (BullMQ's `autorun`).
        let worker =
            tokio::time::timeout(timeout, Worker::with_options(QUEUE, processor, worker_options.autorun(true)))
                .await
                .map_err(|_| QueueError::Timeout(timeout))?
                .map_err(|error| QueueError::Worker(redact(&error.to_string(), redis_url)))?;
        let worker = Arc::new(worker);
        let events = tokio::spawn(drain_events(Arc::clone(&worker), redis_url.to_owned()));
        Ok(Self { worker, events })
    }

    /// Jobs being processed right now.
    pub async fn active_jobs(&self) -> usize {
        self.worker.active_count().await
    }

    /// Stops taking jobs and waits up to `timeout` for the handlers to return.
    pub async fn close(&self, timeout: Duration) -> Result<(), QueueError> {
        let closed = self.worker.close(millis(timeout)).await.map_err(|error| QueueError::Worker(error.to_string()));
        self.events.abort();
        closed
    }
}

/// Reads the crate's events as they come: it queues every one of them (progress, completions,
/// idle ticks) in a channel without bound, so a worker that never read them would grow until
/// it ran out of memory. The ones an operator needs are logged.
async fn drain_events(worker: Arc<Worker>, redis_url: String) {
    while let Some(event) = worker.next_event().await {
        match event {
            WorkerEvent::Error(error) => tracing::warn!(error = %redact(&error, &redis_url), "queue error"),
            WorkerEvent::Stalled { job_id } => {
                tracing::warn!(%job_id, "a job's worker stopped renewing its lock; the job is back on the queue");
            }
            _ => {}
        }
    }
}
