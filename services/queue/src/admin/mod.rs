//! Inspecting and repairing queues for `masstockctl queue`: read-only views read straight from
//! Redis, and repairs (retry, clean, pause, resume) through BullMQ's own scripts.
//!
//! Reads never construct a `bullmq::Queue`, because constructing one writes the queue's `meta`
//! hash (it records `library`): looking at a queue must not change it. Reads are pipelined, and
//! none reads every job: counts are `LLEN`/`ZCARD`, and the oldest waiting job is one `SORT_RO`
//! by creation time per waiting list (see [`Inspector::queues`]).
//!
//! Repairs go through [`Admin`], which wraps `bullmq::Queue`, so they run the same Lua scripts
//! as the Node and Python clients. [`Admin::open`] refuses a queue that has no key at all, so a
//! mistyped `--queue` does not create one.
//!
//! Workers are seen two ways: BullMQ's convention (a worker's connection is named after its
//! queue and shows in `CLIENT LIST`: `<prefix>:<base64(queue)>` for Node and Rust,
//! `<prefix>:<queue>` for Python 3.4.4, either followed by `:w:<worker name>` when the worker has
//! one), and our worker's heartbeat, a string key `<prefix>:<queue>:heartbeat:<worker id>`
//! holding `{"worker_id", "host", "pid", "concurrency", "active", "started_at_ms", "at_ms"}` with a
//! TTL of 30 s. Heartbeats are read leniently: a field the worker did not write is `None`, and a
//! key of another type there (a job whose id starts with `heartbeat:`) is no heartbeat.
//!
//! Queue names and prefixes hold neither `:` (a queue's keys would be ambiguous) nor `*` (the
//! `SORT` patterns that find the oldest job would break); queues so named are not listed.
//!
//! The module is split along its seams: [`redact`] keeps secrets out of URLs shown in messages,
//! [`inspect`] is the read side ([`Inspector`]) and [`decode`] turns Redis's answers into its
//! types, [`repair`] holds the repairs ([`Admin`]). Here: the error type they share, the names
//! they accept, and how redis and bullmq errors become [`AdminError`]s.

use std::future::Future;
use std::time::Duration;

use redis::Value;
use serde::Serialize;

mod decode;
mod inspect;
mod redact;
mod repair;

pub use inspect::{Counts, Failure, HeartbeatSeen, Inspector, JobDetails, QueueSummary, WorkerConnection};
pub use redact::{redacted_url, url_password};
pub use repair::{Admin, Retried, RetriedFailed};

use redact::scrub;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("redis did not answer within {}s", .0.as_secs())]
    Timeout(Duration),
    /// Redis could not be reached, refused the credentials, or dropped the connection.
    #[error("{0}")]
    Connection(String),
    /// Redis refused a command for another reason.
    #[error("{0}")]
    Redis(String),
    #[error("unexpected answer from redis for `{key}`: {answer}")]
    Unexpected { key: String, answer: String },
    #[error("`{0}` cannot be a queue name or prefix: it is empty or holds `:` or `*`")]
    InvalidName(String),
    #[error("no queue `{queue}` under prefix `{prefix}`")]
    NoSuchQueue { prefix: String, queue: String },
    #[error("no job `{id}` in `{prefix}:{queue}`")]
    NoSuchJob { prefix: String, queue: String, id: String },
    #[error("job `{id}` is {state}: only failed and completed jobs can be retried")]
    NotRetryable { id: String, state: String },
    #[error("job `{id}` is no longer {}: another client moved it first", .from.as_str())]
    Moved { id: String, from: FinishedState },
    #[error("the queue refused: {0}")]
    Queue(String),
}

/// The finished states `clean` and `retry` work on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishedState {
    Completed,
    Failed,
}

impl FinishedState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// Whether `name` can be a queue name or prefix here (see the module's documentation).
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains([':', '*'])
}

pub(super) fn check_name(name: &str) -> Result<(), AdminError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(AdminError::InvalidName(name.to_owned()))
    }
}

/// Whether an answer is redis refusing the credentials (or asking for them).
pub(super) fn refuses_credentials(answer: &Value) -> bool {
    matches!(answer, Value::ServerError(error) if matches!(error.code(), "NOAUTH" | "WRONGPASS"))
}

/// A redis client error, classified: [`AdminError::Connection`] when redis could not be reached
/// or refused the credentials, [`AdminError::Redis`] otherwise.
pub(super) fn redis_error(error: &redis::RedisError, url: &str) -> AdminError {
    let text = scrub(&error.to_string(), url);
    let connection = error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
        || matches!(error.kind(), redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig)
        || error.code().is_some_and(|code| matches!(code, "NOAUTH" | "WRONGPASS"));
    if connection {
        AdminError::Connection(text)
    } else {
        AdminError::Redis(text)
    }
}

/// A bullmq error: its redis errors classified as [`redis_error`] does, the rest
/// [`AdminError::Queue`].
pub(super) fn bullmq_error(error: bullmq::error::Error, url: &str) -> AdminError {
    match error {
        bullmq::error::Error::Redis(error) => redis_error(&error, url),
        bullmq::error::Error::ConnectionClosed => AdminError::Connection("the connection to redis closed".to_owned()),
        error => AdminError::Queue(scrub(&error.to_string(), url)),
    }
}

pub(super) async fn within<T>(
    timeout: Duration,
    url: &str,
    operation: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, AdminError> {
    tokio::time::timeout(timeout, operation)
        .await
        .map_err(|_| AdminError::Timeout(timeout))?
        .map_err(|error| redis_error(&error, url))
}

pub(super) async fn within_bullmq<T>(
    timeout: Duration,
    url: &str,
    operation: impl Future<Output = Result<T, bullmq::error::Error>>,
) -> Result<T, AdminError> {
    tokio::time::timeout(timeout, operation)
        .await
        .map_err(|_| AdminError::Timeout(timeout))?
        .map_err(|error| bullmq_error(error, url))
}

/// Redis answering `error` about `key`, as `CODE details`.
pub(super) fn refused(key: &str, error: &redis::ServerError) -> AdminError {
    let answer = match error.details() {
        Some(details) => format!("{} {details}", error.code()),
        None => error.code().to_owned(),
    };
    AdminError::Unexpected { key: key.to_owned(), answer }
}

pub(super) fn unexpected(key: &str, error: &dyn std::fmt::Display) -> AdminError {
    AdminError::Unexpected { key: key.to_owned(), answer: error.to_string() }
}
