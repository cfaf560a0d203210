//! The repairs: [`Admin`] wraps `bullmq::Queue`, so retry, clean, pause and resume run the same
//! Lua scripts as the Node and Python clients. [`Admin::open`] refuses a queue that has no key
//! at all, and puts back the `meta` field that building a `bullmq::Queue` writes.

use std::future::Future;
use std::time::Duration;

use bullmq::options::RedisConnectionOptions;
use bullmq::{Queue, QueueOptions, RetryOptions};
use serde::Serialize;

use super::inspect::Inspector;
use super::{bullmq_error, check_name, within_bullmq, AdminError, FinishedState};

/// Failed job ids read per `ZRANGEBYSCORE` by `retry --failed`.
const RETRY_PAGE: usize = 1_000;
/// Jobs `retry --failed` retries at once (each is two requests on one multiplexed connection).
const RETRY_CONCURRENCY: usize = 64;
/// Jobs removed per call of BullMQ's `cleanJobsInSet` (the most BullMQ removes per call).
const CLEAN_BATCH: u32 = 10_000;

/// Repairs on one queue, through `bullmq::Queue` and so through BullMQ's own scripts.
pub struct Admin {
    queue: Queue,
    inspector: Inspector,
    prefix: String,
    name: String,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").field("prefix", &self.prefix).field("queue", &self.name).finish_non_exhaustive()
    }
}

/// A retried job, and the state it left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retried {
    pub id: String,
    pub from: FinishedState,
}

/// What `retry --failed` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetriedFailed {
    /// Jobs sent back to waiting.
    pub retried: u64,
    /// Jobs that left the failed set (retried or removed by another client) before their turn.
    pub gone: u64,
}

/// The options of every retry: the job gets all its attempts again (BullMQ's
/// `resetAttemptsMade`). Without it, a job that failed its last attempt would be tried once
/// more with no backoff, as `atm` already equals `attempts`.
fn retry_options() -> RetryOptions {
    RetryOptions { reset_attempts_made: true, reset_attempts_started: false }
}

/// How one job's retry ended.
enum RetryOutcome {
    Retried,
    /// The job does not exist, or is no longer in the state it was retried from.
    Gone,
}

/// Retries one job with BullMQ's `Job.retry` (its `reprocessJob` script), which puts it back in
/// its priority band (or `wait` when it has none) and emits `waiting`.
async fn retry_one(queue: &Queue, id: &str, from: FinishedState) -> Result<RetryOutcome, bullmq::error::Error> {
    let Some(mut job) = queue.get_job(id).await? else { return Ok(RetryOutcome::Gone) };
    match job.retry(from.as_str(), Some(retry_options())).await {
        Ok(()) => Ok(RetryOutcome::Retried),
        // `reprocessJob` answers -1 when the job is gone and -3 when it is not in the set it
        // was retried from; the crate reports both as text.
        Err(bullmq::error::Error::InvalidConfig(message))
            if message.ends_with("with code -1") || message.ends_with("with code -3") =>
        {
            Ok(RetryOutcome::Gone)
        }
        Err(error) => Err(error),
    }
}

impl Admin {
    /// Opens `prefix:queue` at `url`. Fails with [`AdminError::NoSuchQueue`] when the queue has
    /// no key, before anything is written.
    ///
    /// Constructing a `bullmq::Queue` records `library` in the queue's `meta` hash; the value it
    /// found there (or its absence) is put back at once, so that a repair changes only what its
    /// BullMQ operation changes.
    pub async fn open(url: &str, prefix: &str, queue: &str, timeout: Duration) -> Result<Self, AdminError> {
        check_name(prefix)?;
        check_name(queue)?;
        let mut inspector = Inspector::connect(url, timeout).await?;
        if !inspector.queue_exists(prefix, queue).await? {
            return Err(AdminError::NoSuchQueue { prefix: prefix.to_owned(), queue: queue.to_owned() });
        }
        let library = inspector.library(prefix, queue).await?;
        let options = QueueOptions::new().connection(RedisConnectionOptions::new().url(url)).prefix(prefix);
        let queue_handle = tokio::time::timeout(timeout, Queue::with_options(queue, options))
            .await
            .map_err(|_| AdminError::Timeout(timeout))?
            .map_err(|error| bullmq_error(error, url))?;
        inspector.restore_library(prefix, queue, library.as_deref()).await?;
        Ok(Self { queue: queue_handle, inspector, prefix: prefix.to_owned(), name: queue.to_owned() })
    }

    /// Runs one BullMQ call (one script call, or one batch of a long operation) within the
    /// timeout: long operations run batch by batch, each with a timeout of its own.
    async fn run<T>(&self, operation: impl Future<Output = Result<T, bullmq::error::Error>>) -> Result<T, AdminError> {
        within_bullmq(self.inspector.timeout, &self.inspector.url, operation).await
    }

    /// Retries one failed or completed job (BullMQ's `Job.retry`, with `resetAttemptsMade`).
    pub async fn retry_job(&mut self, id: &str) -> Result<Retried, AdminError> {
        let no_such_job =
            || AdminError::NoSuchJob { prefix: self.prefix.clone(), queue: self.name.clone(), id: id.to_owned() };
        let state = self.inspector.job_state(&self.prefix, &self.name, id).await?.ok_or_else(no_such_job)?;
        let from = match state.as_str() {
            "failed" => FinishedState::Failed,
            "completed" => FinishedState::Completed,
            _ => return Err(AdminError::NotRetryable { id: id.to_owned(), state }),
        };
        match self.run(retry_one(&self.queue, id, from)).await? {
            RetryOutcome::Retried => Ok(Retried { id: id.to_owned(), from }),
            RetryOutcome::Gone => Err(AdminError::Moved { id: id.to_owned(), from }),
        }
    }

    /// Retries every job that failed until `now_ms`, one by one with BullMQ's `Job.retry` (which
    /// keeps each job's priority, unlike `Queue.retryJobs`), `RETRY_CONCURRENCY` at a time.
    ///
    /// The ids are read first, so a job that fails again while the others are retried is not
    /// retried twice.
    pub async fn retry_failed(&mut self, now_ms: u64) -> Result<RetriedFailed, AdminError> {
        let (prefix, name) = (self.prefix.clone(), self.name.clone());
        let ids = self.inspector.failed_ids(&prefix, &name, now_ms, RETRY_PAGE).await?;
        let (timeout, url) = (self.inspector.timeout, self.inspector.url.clone());
        let mut outcome = RetriedFailed::default();
        let mut running = tokio::task::JoinSet::new();
        let mut ids = ids.into_iter();
        loop {
            while running.len() < RETRY_CONCURRENCY {
                let Some(id) = ids.next() else { break };
                let (queue, url) = (self.queue.clone(), url.clone());
                running.spawn(async move {
                    within_bullmq(timeout, &url, retry_one(&queue, &id, FinishedState::Failed)).await
                });
            }
            let Some(finished) = running.join_next().await else { break };
            match finished.map_err(|error| AdminError::Queue(error.to_string()))? {
                Ok(RetryOutcome::Retried) => outcome.retried += 1,
                Ok(RetryOutcome::Gone) => outcome.gone += 1,
                Err(error) => {
                    running.abort_all();
                    return Err(error);
                }
            }
        }
        Ok(outcome)
    }

    /// Removes the jobs of `state` that finished more than `older_than` ago (BullMQ's
    /// `Queue.clean`, `CLEAN_BATCH` jobs per call); returns how many.
    pub async fn clean(&mut self, state: FinishedState, older_than: Duration) -> Result<u64, AdminError> {
        let grace = u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX);
        let mut removed = 0;
        loop {
            let batch = self.run(self.queue.clean(grace, CLEAN_BATCH, state.as_str())).await?.len() as u64;
            removed += batch;
            if batch < u64::from(CLEAN_BATCH) {
                return Ok(removed);
            }
        }
    }

    /// Pauses the queue (BullMQ's `Queue.pause`); returns whether it was paused already.
    pub async fn pause(&mut self) -> Result<bool, AdminError> {
        let (prefix, name) = (self.prefix.clone(), self.name.clone());
        let was_paused = self.inspector.is_paused(&prefix, &name).await?;
        self.run(self.queue.pause()).await?;
        Ok(was_paused)
    }

    /// Resumes the queue (BullMQ's `Queue.resume`); returns whether it was paused.
    pub async fn resume(&mut self) -> Result<bool, AdminError> {
        let (prefix, name) = (self.prefix.clone(), self.name.clone());
        let was_paused = self.inspector.is_paused(&prefix, &name).await?;
        self.run(self.queue.resume()).await?;
        // The script moves a legacy `paused` list back 7,000 jobs per call.
        let paused_list = format!("{prefix}:{name}:paused");
        let mut left = self.inspector.list_length(&paused_list).await?;
        while left > 0 {
            self.run(self.queue.resume()).await?;
            let now_left = self.inspector.list_length(&paused_list).await?;
            if now_left >= left {
                break;
            }
            left = now_left;
        }
        Ok(was_paused)
    }

    /// Closes the queue's connections.
    pub async fn close(self) {
        self.queue.close().await;
    }
}
