//! The workflow queue, in BullMQ's wire format (DESIGN.md §4), shared by the API (which adds
//! jobs) and the worker (which takes them).
//!
//! Everything about the queue that both sides must agree on is here: the prefix, the queue and
//! job names, the payload, the priorities and the job options. The `bullmq-official` crate stays
//! behind this module, so the rest of the code does not depend on its API.
//!
//! That is `PREFIX`, `QUEUE`, `JOB_NAME`, the `WorkflowJob` payload (camelCase, as BullMQ's other
//! clients expect), `priority(premium)`, `ATTEMPTS` (3) with `BACKOFF_BASE` (5 s, exponential), and
//! the lock and stalled intervals, over `bullmq-official` 1.4, the `BullMQ` maintainers' Rust port:
//!
//! - `WorkflowQueue` is the producer (the API): job id = execution id, so adding an execution twice
//!   leaves one job; `removeOnComplete`, failed jobs kept.
//! - `consumer` is the worker's side: `WorkflowConsumer::start(url, ConsumerOptions, timeout,
//!   handler)` calls the handler with a `ReceivedJob` (payload, attempts, `is_last_attempt`,
//!   `report_progress(done, total)`), which answers a value or a `JobFailure`: `Retry(reason)`
//!   (BullMQ's backoff, failed for good after the last attempt), `Fail(reason)` (BullMQ's
//!   unrecoverable error) or `HandBack` (back to where it waited, attempts untouched). An
//!   unreadable payload fails the job at once with the reason. The crate queues every worker event
//!   in an unbounded channel; the consumer drains it (logging errors and stalls), or a long-running
//!   worker would grow without end. After a Redis error it fetches again after 2 s, not the
//!   crate's 15 s.
//! - `heartbeat`: where a worker's heartbeat key lives, for the worker that writes it and the
//!   inspector that reads it.
//! - `admin` is `masstockctl queue`'s (and `doctor`'s) side, split into `inspect`, `decode`,
//!   `repair` and `redact` (the redaction of Redis URLs in messages): `Inspector` only reads, with pipelined commands, and
//!   never constructs a `bullmq::Queue` (`queues(prefix, now)`, `job(prefix, queue, id)`);
//!   `Admin` wraps `bullmq::Queue` for the repairs (`Job.retry`, `clean`, `pause`, `resume`), so
//!   they run BullMQ's own Lua scripts, and refuses a queue that has no key at all, so a mistyped
//!   `--queue` creates nothing.
//!
//! # Where the crate falls short, and what we do about it
//!
//! - **No "hand back" primitive.** BullMQ's Node worker lets a processor move its job back to wait
//!   (`job.moveToWait(token)` plus `WaitingError`). The Rust port's only route to the same Lua
//!   script (`moveJobFromActiveToWait`) is a processor returning `Error::RateLimited`; `HandBack`
//!   maps to `RateLimited { delay_ms: 0 }`. Effect on the wire: the job leaves `active`, goes back
//!   to `prioritized` (or `wait`) with its lock released and `atm` unchanged, exactly as Node's
//!   does.
//! - **Its README's quick start does not match 1.4.4's API**, and a `Queue` records
//!   `library = "bullmq-official:0.1.0"` in the queue's meta hash. Read-only tools therefore read
//!   Redis directly instead of constructing a `Queue`, and `Admin::open` reads the field first and
//!   puts it back (or deletes it) right after constructing one, so a repair leaves `library` as the
//!   queue's other clients wrote it.
//! - **Script answers come back as text.** `Job.retry` reports `reprocessJob`'s codes as
//!   `InvalidConfig("reprocessJob failed with code -3")`; `admin` matches that text to tell a job
//!   that another client moved first (-3) or removed (-1) from a real failure.
//! - `Worker::with_options` starts consuming at once (`autorun`); calling `run()` after it fails
//!   with "Worker is already running".
//!
//! Interop is tested both ways with Python `bullmq` 3.4.4 (`services/worker/tests/it/interop.rs`):
//! a job it adds is processed by our worker, and a job added by `WorkflowQueue::add` is processed by
//! a Python `Worker` that sees the same name, data, priority, attempts and backoff. The crate pins
//! `redis` 1.x, so the workspace uses the same major version and the tree holds one `redis`.

use std::future::IntoFuture as _;
use std::time::Duration;

use bullmq::options::RedisConnectionOptions;
use bullmq::types::{BackoffStrategy, RemoveOnFinish};
use bullmq::{Queue, QueueOptions};
use serde::{Deserialize, Serialize};

pub mod admin;
pub mod consumer;
pub mod heartbeat;

/// BullMQ's key prefix.
pub const PREFIX: &str = "bull";
/// The queue.
pub const QUEUE: &str = "workflow-queue";
/// The only job name on the queue.
pub const JOB_NAME: &str = "execute-workflow";
/// Priority of premium users' jobs: BullMQ runs lower numbers first.
pub const PREMIUM_PRIORITY: u32 = 1;
/// Priority of everyone else's. Both classes are prioritised, because BullMQ would run
/// un-prioritised jobs before any prioritised one.
pub const STANDARD_PRIORITY: u32 = 2;
/// How long a worker holds a job before another may take it, and how often stalls are checked.
pub const LOCK_DURATION: Duration = Duration::from_secs(30);
pub const STALLED_INTERVAL: Duration = Duration::from_secs(30);
/// How many times a job runs before it stays failed.
pub const ATTEMPTS: u32 = 3;
/// The first retry waits this long, the second twice as long (BullMQ's exponential backoff).
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);

/// The job's data: `{"executionId": "<uuid>", "prompts": [...], "config": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowJob {
    pub execution_id: uuid::Uuid,
    pub prompts: Vec<String>,
    pub config: serde_json::Value,
}

#[must_use]
pub fn priority(premium: bool) -> u32 {
    if premium {
        PREMIUM_PRIORITY
    } else {
        STANDARD_PRIORITY
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the queue refused the job: {0}")]
    Queue(String),
    #[error("the queue's worker failed: {0}")]
    Worker(String),
}

/// The queue, as the API uses it.
#[derive(Clone)]
pub struct WorkflowQueue {
    queue: Queue,
}

impl std::fmt::Debug for WorkflowQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowQueue").finish_non_exhaustive()
    }
}

impl WorkflowQueue {
    /// Connects to the queue at `redis_url` under `prefix` (`PREFIX` in production; tests use
    /// their own so that they cannot see each other's jobs).
    pub async fn connect(redis_url: &str, prefix: &str, timeout: Duration) -> Result<Self, QueueError> {
        let options = QueueOptions::new().connection(RedisConnectionOptions::new().url(redis_url)).prefix(prefix);
        let queue = tokio::time::timeout(timeout, Queue::with_options(QUEUE, options))
            .await
            .map_err(|_| QueueError::Timeout(timeout))?
            // The crate's errors can quote the connection URL; keep only their kind.
            .map_err(|error| QueueError::Queue(redact(&error.to_string(), redis_url)))?;
        Ok(Self { queue })
    }

    /// Adds the job for an execution. Its BullMQ job id is the execution id, so adding the same
    /// execution twice leaves one job. Completed jobs are removed; failed ones are kept for
    /// `masstockctl queue`.
    pub async fn add(&self, job: &WorkflowJob, premium: bool, timeout: Duration) -> Result<String, QueueError> {
        let add = self
            .queue
            .add(JOB_NAME, job)
            .job_id(job.execution_id.to_string())
            .priority(priority(premium))
            .attempts(ATTEMPTS)
            .backoff(BackoffStrategy::Exponential(millis(BACKOFF_BASE)))
            .remove_on_complete(RemoveOnFinish::Bool(true))
            .remove_on_fail(RemoveOnFinish::Bool(false));
        let added = tokio::time::timeout(timeout, add.into_future()).await.map_err(|_| QueueError::Timeout(timeout))?;
        added.map(|job| job.id().to_owned()).map_err(|error| QueueError::Queue(error.to_string()))
    }
}

/// A duration in BullMQ's unit.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `text` without `secret` (a URL that may hold a password).
pub(crate) fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "[redis url]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_camel_case() {
        let job = WorkflowJob {
            execution_id: uuid::Uuid::nil(),
            prompts: vec!["a cat".into()],
            config: serde_json::json!({ "aspectRatio": "1:1" }),
        };
        assert_eq!(
            serde_json::to_value(&job).unwrap(),
            serde_json::json!({ "executionId": "00000000-0000-0000-0000-000000000000", "prompts": ["a cat"], "config": { "aspectRatio": "1:1" } })
        );
        assert_eq!((priority(true), priority(false)), (1, 2));
        assert_eq!(redact("cannot reach redis://:pw@h:6379", "redis://:pw@h:6379"), "cannot reach [redis url]");
    }
}
