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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use bullmq::options::RedisConnectionOptions;
use bullmq::{Queue, QueueOptions, RetryOptions};
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde::Serialize;

/// The key segment after the queue name that holds our worker's heartbeats:
/// `<prefix>:<queue>:heartbeat:<worker id>` (written by `masstock-worker`, see its `heartbeat.rs`).
const HEARTBEAT_SEGMENT: &str = "heartbeat";

/// The keys of a queue that are not jobs, though they sit where jobs do (`<prefix>:<queue>:<name>`).
const QUEUE_KEYS: &[&str] = &[
    "active",
    "completed",
    "de",
    "delayed",
    "events",
    "failed",
    "id",
    "limiter",
    "marker",
    "meta",
    "metrics",
    "paused",
    "pc",
    "prioritized",
    "repeat",
    "stalled",
    "stalled-check",
    "wait",
    "waiting-children",
];

/// The lists and sorted sets whose jobs are waiting.
const WAITING_KEYS: [&str; 3] = ["wait", "paused", "prioritized"];
/// Keys looked at per `SCAN` call.
const SCAN_COUNT: u32 = 10_000;
/// Jobs `SORT` returns per waiting list: jobs without a hash (or a `timestamp`) sort first, so
/// a few are asked for, and the first with a `timestamp` is the oldest.
const OLDEST_CANDIDATES: u32 = 8;
/// Failed job ids read per `ZRANGEBYSCORE` by `retry --failed`.
const RETRY_PAGE: usize = 1_000;
/// Jobs `retry --failed` retries at once (each is two requests on one multiplexed connection).
const RETRY_CONCURRENCY: usize = 64;
/// Jobs removed per call of BullMQ's `cleanJobsInSet` (the most BullMQ removes per call).
const CLEAN_BATCH: u32 = 10_000;

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

/// Jobs by state, as BullMQ counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub wait: u64,
    pub prioritized: u64,
    pub active: u64,
    pub delayed: u64,
    pub completed: u64,
    pub failed: u64,
    pub paused: u64,
    pub waiting_children: u64,
}

/// A connection whose name says it belongs to a worker of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerConnection {
    /// The connection's name: `<prefix>:<base64(queue)>` (Node, Rust) or `<prefix>:<queue>`
    /// (Python), then `:w:<worker name>` when the worker has a name.
    pub name: String,
    pub addr: String,
    /// How long the connection has been open.
    pub age_s: u64,
    /// How long since its last command (a worker blocked waiting for jobs counts as idle).
    pub idle_s: u64,
}

/// A heartbeat found under the queue. Fields are `None` when the worker did not write them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeartbeatSeen {
    /// From the key, so that an unreadable heartbeat is still named.
    pub worker_id: String,
    pub host: Option<String>,
    pub pid: Option<u64>,
    pub concurrency: Option<u64>,
    pub active: Option<u64>,
    pub started_at_ms: Option<u64>,
    pub at_ms: Option<u64>,
    /// Seconds since `at_ms`.
    pub age_s: Option<u64>,
    /// Why the value could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// One queue, as `queue ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueSummary {
    pub prefix: String,
    pub name: String,
    pub counts: Counts,
    /// Seconds since the oldest waiting job (in `wait`, `prioritized` or `paused`) was created;
    /// `None` when nothing waits.
    pub oldest_waiting_age_s: Option<u64>,
    pub paused: bool,
    pub workers: Vec<WorkerConnection>,
    pub heartbeats: Vec<HeartbeatSeen>,
}

/// One job, as `queue show` shows it. Timestamps are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetails {
    pub id: String,
    pub name: String,
    /// BullMQ's `getState`: `completed`, `failed`, `delayed`, `prioritized`, `active`,
    /// `waiting`, `waiting-children` or `unknown`.
    pub state: String,
    pub data: serde_json::Value,
    pub options: serde_json::Value,
    pub attempts_made: u64,
    pub attempts_started: u64,
    pub priority: u64,
    pub delay_ms: u64,
    pub progress: serde_json::Value,
    pub created_at_ms: Option<u64>,
    pub processed_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub processed_by: Option<String>,
    pub failed_reason: Option<String>,
    pub stacktrace: Vec<String>,
    pub returnvalue: Option<serde_json::Value>,
}

/// `url` with whatever may be a secret in it replaced by `***`, for messages.
///
/// In `scheme://user:password@host…` the password is everything from the first `:` of the part
/// after `://` to the LAST `@` of the whole string, so a password holding `/`, `?`, `#` or `@`
/// is hidden whole; a part without `:` before the `@` is hidden too (it may be a password written
/// where the user goes). The value of a `pass`/`password` query parameter (how `unix://` URLs
/// carry it) is hidden to the end of the string. A string that does not start with `scheme://`
/// is not understood: it is shown from its last `@` on, or not at all.
#[must_use]
pub fn redacted_url(url: &str) -> String {
    let mut shown = String::with_capacity(url.len());
    let mut from = 0;
    for (start, end) in secret_ranges(url) {
        shown.push_str(&url[from..start]);
        shown.push_str("***");
        from = end;
    }
    shown.push_str(&url[from..]);
    shown
}

/// The byte ranges of `url` that may hold a secret, sorted and disjoint (see [`redacted_url`]).
fn secret_ranges(url: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let Some(authority) = authority_start(url) else {
        // Not understood: only what follows the last `@` is shown.
        let end = url.rfind('@').unwrap_or(url.len());
        if end > 0 {
            ranges.push((0, end));
        }
        return ranges;
    };
    if let Some(at) = url.rfind('@').filter(|&at| at >= authority) {
        // `user:password`: the password; a part without `:`: all of it. Empty ranges are dropped.
        let start = url[authority..at].find(':').map_or(authority, |colon| authority + colon + 1);
        ranges.push((start, at));
    }
    if let Some(value) = password_parameter(url) {
        ranges.push((value, url.len()));
    }
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in ranges.into_iter().filter(|(start, end)| start < end) {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Where the part after `scheme://` starts, when `url` starts with a scheme and `://`.
fn authority_start(url: &str) -> Option<usize> {
    let separator = url.find("://")?;
    let scheme = &url[..separator];
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(separator + 3)
}

/// Where the value of the first query parameter whose name holds `pass` (`pass`, `password`,
/// `passwd`…) starts.
fn password_parameter(url: &str) -> Option<usize> {
    let lower = url.to_ascii_lowercase();
    let mut position = 0;
    while let Some(found) = lower[position..].find(['?', '&', ';']) {
        let name_start = position + found + 1;
        let name_end = lower[name_start..].find(['=', '&', ';', '#']).map_or(lower.len(), |end| name_start + end);
        if lower[name_start..name_end].contains("pass") && lower[name_end..].starts_with('=') {
            return Some(name_end + 1);
        }
        position = name_start;
    }
    None
}

/// The password of `scheme://[user][:password]@host…` (it runs to the last `@`), percent-decoded;
/// `None` when the URL carries none.
#[must_use]
pub fn url_password(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let (userinfo, _) = rest.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    Some(percent_decoded(password).unwrap_or_else(|| password.to_owned()))
}

/// `text` with `%XX` escapes decoded, when they decode to UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes.get(index + 1..index + 3).and_then(|pair| std::str::from_utf8(pair).ok());
        match (bytes[index], hex.and_then(|pair| u8::from_str_radix(pair, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

/// Removes the URL and its secrets from an error's text: redis and bullmq errors may quote them,
/// as written or percent-decoded.
fn scrub(text: &str, url: &str) -> String {
    let mut text = text.replace(url, &redacted_url(url));
    for (start, end) in secret_ranges(url) {
        let secret = &url[start..end];
        text = text.replace(secret, "***");
        if let Some(decoded) = percent_decoded(secret).filter(|decoded| !decoded.is_empty()) {
            text = text.replace(&decoded, "***");
        }
    }
    text
}

/// Whether `name` can be a queue name or prefix here (see the module's documentation).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains([':', '*'])
}

fn check_name(name: &str) -> Result<(), AdminError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(AdminError::InvalidName(name.to_owned()))
    }
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

fn base64_name(queue: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(queue)
}

/// A failed job: its id, why it failed (BullMQ's `failedReason`), and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub id: String,
    pub reason: String,
    pub failed_at_ms: Option<u64>,
}

/// A read-only connection to Redis.
#[derive(Clone)]
pub struct Inspector {
    connection: MultiplexedConnection,
    url: String,
    timeout: Duration,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector").field("url", &redacted_url(&self.url)).finish_non_exhaustive()
    }
}

impl Inspector {
    /// Connects to `url`; `timeout` bounds the connection and every answer.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, AdminError> {
        // Whatever fails before the first command is about reaching redis: address, TLS, password.
        let client =
            redis::Client::open(url).map_err(|error| AdminError::Connection(scrub(&error.to_string(), url)))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let connection = tokio::time::timeout(timeout, client.get_multiplexed_async_connection_with_config(&config))
            .await
            .map_err(|_| AdminError::Timeout(timeout))?
            .map_err(|error| AdminError::Connection(scrub(&error.to_string(), url)))?;
        Ok(Self { connection, url: url.to_owned(), timeout })
    }

    async fn query(&mut self, pipeline: &redis::Pipeline) -> Result<Vec<Value>, AdminError> {
        let url = self.url.clone();
        let answers = within(self.timeout, &url, pipeline.query_async::<Vec<Value>>(&mut self.connection)).await?;
        // Pipelines that ignore errors return a refused password as an answer like any other.
        if let Some(Value::ServerError(error)) = answers.iter().find(|answer| refuses_credentials(answer)) {
            return Err(AdminError::Connection(scrub(&error.to_string(), &url)));
        }
        Ok(answers)
    }

    /// Whether the queue has any key at all.
    pub async fn queue_exists(&mut self, prefix: &str, queue: &str) -> Result<bool, AdminError> {
        let base = format!("{prefix}:{queue}");
        let mut pipeline = redis::pipe();
        pipeline.cmd("EXISTS");
        for suffix in [
            "meta",
            "id",
            "wait",
            "prioritized",
            "active",
            "delayed",
            "completed",
            "failed",
            "paused",
            "waiting-children",
            "events",
            "marker",
        ] {
            pipeline.arg(format!("{base}:{suffix}"));
        }
        let answer = self.query(&pipeline).await?.into_iter().next().unwrap_or(Value::Nil);
        Ok(integer(answer, &base)? > 0)
    }

    /// Every queue under `prefix`, sorted by name. `now_ms` is the clock ages are measured against.
    ///
    /// Queues are found by one `SCAN` for their `meta` and `id` keys and our workers' heartbeats,
    /// and by the names of connected workers. Then two pipelines go out together: a `MULTI` that
    /// reads every count, the paused flag and the heartbeats at one moment, and one
    /// `SORT_RO <list> BY <prefix>:<queue>:*->timestamp LIMIT 0 8 GET <prefix>:<queue>:*->timestamp`
    /// per waiting list (`wait`, `paused`, `prioritized`), which answers the creation time of its
    /// oldest job whatever order the list is in (retried jobs keep their creation time but go to
    /// the end of their band; LIFO jobs go to the front). `SORT` substitutes the member, whatever
    /// it holds, for the `*`, so any job id works. No job is sent back but the oldest.
    pub async fn queues(&mut self, prefix: &str, now_ms: u64) -> Result<Vec<QueueSummary>, AdminError> {
        check_name(prefix)?;
        // Queues named by a `meta` or `id` key, and the heartbeat keys under each queue (a set:
        // `SCAN` may return a key twice).
        let mut keyed = BTreeSet::new();
        let mut heartbeat_keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // One pass over the keyspace: `[hmi][ed]` after a `:` catches `:meta`, `:id` and
        // `:heartbeat:`. The few other keys it lets through are dropped below.
        let pattern = format!("{}:*:[hmi][ed]*", glob_escape(prefix));
        let head = format!("{prefix}:");
        let mut cursor = 0_u64;
        loop {
            let mut scan = redis::pipe();
            scan.cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(SCAN_COUNT);
            let answer = self.query(&scan).await?.into_iter().next().unwrap_or(Value::Nil);
            let (next, keys): (u64, Vec<String>) =
                redis::from_redis_value(answer).map_err(|error| unexpected("SCAN", &error))?;
            for key in keys {
                let Some(rest) = key.strip_prefix(&head) else { continue };
                if let Some(queue) = rest.strip_suffix(":meta").or_else(|| rest.strip_suffix(":id")) {
                    if valid_name(queue) {
                        keyed.insert(queue.to_owned());
                    }
                } else if let Some((queue, worker)) = rest.split_once(':') {
                    if let Some(worker_id) = worker.strip_prefix(HEARTBEAT_SEGMENT).and_then(|w| w.strip_prefix(':')) {
                        if valid_name(queue) && !worker_id.is_empty() {
                            heartbeat_keys.entry(queue.to_owned()).or_default().insert(key.clone());
                        }
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let clients = self.client_list().await;
        let connected = queues_of_clients(&clients, prefix, &keyed);
        let mut names = keyed.clone();
        names.extend(heartbeat_keys.keys().cloned());
        names.extend(connected.iter().cloned());
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = names.into_iter().collect();

        // Counts, the paused flag and the heartbeats, in one transaction.
        let mut pipeline = redis::pipe();
        pipeline.atomic().ignore_errors();
        let mut expected = Vec::new();
        for queue in &names {
            let base = format!("{prefix}:{queue}");
            for (command, suffix) in [
                ("LLEN", "wait"),
                ("ZCARD", "prioritized"),
                ("LLEN", "active"),
                ("ZCARD", "delayed"),
                ("ZCARD", "completed"),
                ("ZCARD", "failed"),
                ("LLEN", "paused"),
                ("ZCARD", "waiting-children"),
            ] {
                pipeline.cmd(command).arg(format!("{base}:{suffix}"));
                expected.push(format!("{base}:{suffix}"));
            }
            // BullMQ's `isQueuePausedOrMaxed`: paused when the field exists, whatever its value.
            pipeline.cmd("HEXISTS").arg(format!("{base}:meta")).arg("paused");
            expected.push(format!("{base}:meta"));
            for key in heartbeat_keys.get(queue).into_iter().flatten() {
                pipeline.cmd("GET").arg(key);
                expected.push(key.clone());
            }
        }
        let lists: Vec<(String, String)> = names
            .iter()
            .flat_map(|queue| {
                let base = format!("{prefix}:{queue}");
                WAITING_KEYS.iter().map(move |suffix| (base.clone(), format!("{base}:{suffix}")))
            })
            .collect();
        // The sorts go out on a second handle of the same connection, alongside the transaction,
        // so that they share its round trip without being part of it.
        let mut sorter = self.clone();
        let (answers, oldest) = tokio::join!(self.query(&pipeline), sorter.oldest_created(&lists));
        let (answers, oldest) = (answers?, oldest?);
        if answers.len() != expected.len() {
            return Err(AdminError::Unexpected {
                key: prefix.to_owned(),
                answer: format!("{} answers to {} commands", answers.len(), expected.len()),
            });
        }
        let mut answers = answers.into_iter().zip(expected);
        let mut next = move || answers.next().expect("one answer per command");
        let mut oldest = oldest.into_iter();

        let mut summaries = Vec::new();
        for queue in &names {
            let mut count = || {
                let (answer, key) = next();
                integer(answer, &key)
            };
            let counts = Counts {
                wait: count()?,
                prioritized: count()?,
                active: count()?,
                delayed: count()?,
                completed: count()?,
                failed: count()?,
                paused: count()?,
                waiting_children: count()?,
            };
            let (answer, key) = next();
            let paused = integer(answer, &key)? == 1;
            let mut heartbeats = Vec::new();
            for _ in heartbeat_keys.get(queue).into_iter().flatten() {
                let (answer, key) = next();
                let worker_id = key.rsplit_once(&format!(":{HEARTBEAT_SEGMENT}:")).map_or("", |(_, id)| id).to_owned();
                heartbeats.extend(heartbeat_of(worker_id, answer, now_ms));
            }
            heartbeats.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
            let oldest_waiting_age_s = oldest
                .by_ref()
                .take(WAITING_KEYS.len())
                .flatten()
                .min()
                .map(|created| now_ms.saturating_sub(created) / 1000);
            // A queue seen only through keys that turned out not to be heartbeats is no queue.
            if !keyed.contains(queue) && !connected.contains(queue) && heartbeats.is_empty() {
                continue;
            }
            summaries.push(QueueSummary {
                prefix: prefix.to_owned(),
                name: queue.clone(),
                counts,
                oldest_waiting_age_s,
                paused,
                workers: workers_of(&clients, prefix, queue),
                heartbeats,
            });
        }
        Ok(summaries)
    }

    /// The creation time (`timestamp`) of the oldest job in each list or sorted set of `lists`,
    /// given as `(<prefix>:<queue>, key)`; `None` where it holds no job with a `timestamp`.
    ///
    /// `SORT_RO` compares numbers; where a `timestamp` is not a number it compares text (the same
    /// order for timestamps of equal length), and where the server predates `SORT_RO` (Redis 7) it
    /// falls back to `SORT`, which writes nothing without `STORE`.
    async fn oldest_created(&mut self, lists: &[(String, String)]) -> Result<Vec<Option<u64>>, AdminError> {
        let mut read_only = vec![true; lists.len()];
        let mut alpha = vec![false; lists.len()];
        let mut created = vec![None; lists.len()];
        let mut pending: Vec<usize> = (0..lists.len()).collect();
        while !pending.is_empty() {
            let mut pipeline = redis::pipe();
            pipeline.ignore_errors();
            for &index in &pending {
                let (base, key) = &lists[index];
                let by = format!("{base}:*->timestamp");
                pipeline
                    .cmd(if read_only[index] { "SORT_RO" } else { "SORT" })
                    .arg(key)
                    .arg("BY")
                    .arg(&by)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(OLDEST_CANDIDATES)
                    .arg("GET")
                    .arg(&by);
                if alpha[index] {
                    pipeline.arg("ALPHA");
                }
            }
            let answers = self.query(&pipeline).await?;
            let mut again = Vec::new();
            for (&index, answer) in pending.iter().zip(answers) {
                let key = &lists[index].1;
                match answer {
                    Value::ServerError(error) => {
                        let text = error.to_string();
                        if read_only[index] && text.contains("unknown command") {
                            read_only[index] = false;
                        } else if !alpha[index] && text.contains("converted into double") {
                            alpha[index] = true;
                        } else {
                            return Err(refused(key, &error));
                        }
                        again.push(index);
                    }
                    answer => created[index] = first_timestamp(answer, key)?,
                }
            }
            pending = again;
        }
        Ok(created)
    }

    /// `CLIENT LIST`, or nothing where the server refuses it (some managed Redis do).
    async fn client_list(&mut self) -> String {
        let mut pipeline = redis::pipe();
        pipeline.cmd("CLIENT").arg("LIST");
        match self.query(&pipeline).await {
            Ok(answers) => answers.into_iter().next().and_then(|answer| string(answer).ok()).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The jobs of `prefix:queue` that failed at `since_ms` or later, newest first, at most
    /// `limit` of them, each with its failure reason. BullMQ scores its failed set with the
    /// time each job failed (`finishedOn`), so one `ZREVRANGEBYSCORE` finds them; then one
    /// `HGET failedReason` per job, pipelined. A job removed in between is left out.
    pub async fn recent_failures(
        &mut self,
        prefix: &str,
        queue: &str,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<Failure>, AdminError> {
        check_name(prefix)?;
        check_name(queue)?;
        let base = format!("{prefix}:{queue}");
        let failed_key = format!("{base}:failed");
        let mut pipeline = redis::pipe();
        pipeline.cmd("ZREVRANGEBYSCORE").arg(&failed_key).arg("+inf").arg(since_ms).arg("WITHSCORES");
        pipeline.arg("LIMIT").arg(0).arg(limit);
        let answer = self.query(&pipeline).await?.into_iter().next().unwrap_or(Value::Nil);
        let members: Vec<(String, f64)> =
            redis::from_redis_value(answer).map_err(|error| unexpected(&failed_key, &error))?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for (id, _) in &members {
            pipeline.cmd("HGET").arg(format!("{base}:{id}")).arg("failedReason");
        }
        let reasons = self.query(&pipeline).await?;
        Ok(members
            .into_iter()
            .zip(reasons)
            .filter(|(_, reason)| !matches!(reason, Value::Nil))
            .map(|((id, score), reason)| Failure {
                id,
                reason: string(reason).unwrap_or_default(),
                // Milliseconds since the epoch, well inside f64's exact integers.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                failed_at_ms: (score.is_finite() && score >= 0.0).then_some(score as u64),
            })
            .collect())
    }

    /// The state of a job, by BullMQ's `getState` rules; `None` when the job does not exist.
    pub async fn job_state(&mut self, prefix: &str, queue: &str, id: &str) -> Result<Option<String>, AdminError> {
        Ok(self.job(prefix, queue, id).await?.map(|job| job.state))
    }

    /// A job and its state, read in one transaction; `None` when the job does not exist.
    pub async fn job(&mut self, prefix: &str, queue: &str, id: &str) -> Result<Option<JobDetails>, AdminError> {
        check_name(prefix)?;
        check_name(queue)?;
        let base = format!("{prefix}:{queue}");
        let job_key = format!("{base}:{id}");
        let mut pipeline = redis::pipe();
        pipeline.atomic().ignore_errors();
        pipeline.cmd("HGETALL").arg(&job_key);
        // The order of BullMQ's getStateV2 script.
        let checks = [
            ("ZSCORE", "completed", "completed"),
            ("ZSCORE", "failed", "failed"),
            ("ZSCORE", "delayed", "delayed"),
            ("ZSCORE", "prioritized", "prioritized"),
            ("LPOS", "active", "active"),
            ("LPOS", "wait", "waiting"),
            ("LPOS", "paused", "waiting"),
            ("ZSCORE", "waiting-children", "waiting-children"),
        ];
        for (command, suffix, _) in checks {
            pipeline.cmd(command).arg(format!("{base}:{suffix}")).arg(id);
        }
        let mut answers = self.query(&pipeline).await?.into_iter();
        let hash = answers.next().unwrap_or(Value::Nil);
        // A key of the queue itself (`meta`, a heartbeat…) named as a job: not a job.
        if matches!(&hash, Value::ServerError(error) if error.code() == "WRONGTYPE") || QUEUE_KEYS.contains(&id) {
            return Ok(None);
        }
        let fields: HashMap<String, String> =
            redis::from_redis_value(hash).map_err(|error| unexpected(&job_key, &error))?;
        if fields.is_empty() {
            return Ok(None);
        }
        let mut state = "unknown";
        for ((_, suffix, name), answer) in checks.iter().zip(answers) {
            if let Value::ServerError(error) = &answer {
                return Err(refused(&format!("{base}:{suffix}"), error));
            }
            if answer != Value::Nil {
                state = name;
                break;
            }
        }
        Ok(Some(job_details(id, state, &fields)))
    }

    /// The ids of the failed jobs that finished at or before `until_ms`, oldest first, read
    /// `page` at a time.
    ///
    /// Pages follow the score (`finishedOn`): each starts at the last score read, skipping the
    /// jobs of that score already read, so a page is never shifted by jobs leaving the set.
    async fn failed_ids(
        &mut self,
        prefix: &str,
        queue: &str,
        until_ms: u64,
        page: usize,
    ) -> Result<Vec<String>, AdminError> {
        let key = format!("{prefix}:{queue}:failed");
        let mut ids = Vec::new();
        let mut seen = HashSet::new();
        let (mut from, mut read_at_from) = ("-inf".to_owned(), 0_usize);
        loop {
            let mut pipeline = redis::pipe();
            pipeline
                .cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg(&from)
                .arg(until_ms)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(read_at_from)
                .arg(page);
            let answer = self.query(&pipeline).await?.into_iter().next().unwrap_or(Value::Nil);
            if let Value::ServerError(error) = &answer {
                return Err(refused(&key, error));
            }
            let members: Vec<(String, String)> =
                redis::from_redis_value(answer).map_err(|error| unexpected(&key, &error))?;
            let full = members.len() == page;
            for (id, score) in members {
                if score == from {
                    read_at_from += 1;
                } else {
                    from = score;
                    read_at_from = 1;
                }
                if seen.insert(id.clone()) {
                    ids.push(id);
                }
            }
            if !full {
                return Ok(ids);
            }
        }
    }

    async fn list_length(&mut self, key: &str) -> Result<u64, AdminError> {
        let mut pipeline = redis::pipe();
        pipeline.cmd("LLEN").arg(key);
        let answer = self.query(&pipeline).await?.into_iter().next().unwrap_or(Value::Nil);
        integer(answer, key)
    }

    /// Whether the queue is paused, as BullMQ decides it: its `meta` hash has a `paused` field.
    async fn is_paused(&mut self, prefix: &str, queue: &str) -> Result<bool, AdminError> {
        let key = format!("{prefix}:{queue}:meta");
        let mut pipeline = redis::pipe();
        pipeline.cmd("HEXISTS").arg(&key).arg("paused");
        let answer = self.query(&pipeline).await?.into_iter().next().unwrap_or(Value::Nil);
        Ok(integer(answer, &key)? == 1)
    }

    /// The `library` field of a queue's `meta` hash.
    async fn library(&mut self, prefix: &str, queue: &str) -> Result<Option<String>, AdminError> {
        let key = format!("{prefix}:{queue}:meta");
        let mut pipeline = redis::pipe();
        pipeline.cmd("HGET").arg(&key).arg("library");
        let answer = self.query(&pipeline).await?.into_iter().next().unwrap_or(Value::Nil);
        optional_string(answer, &key)
    }

    /// Puts back the `library` field of a queue's `meta` hash as it was (`None`: absent).
    async fn restore_library(&mut self, prefix: &str, queue: &str, library: Option<&str>) -> Result<(), AdminError> {
        let key = format!("{prefix}:{queue}:meta");
        let mut pipeline = redis::pipe();
        match library {
            Some(library) => pipeline.cmd("HSET").arg(&key).arg("library").arg(library),
            None => pipeline.cmd("HDEL").arg(&key).arg("library"),
        };
        if let Some(Value::ServerError(error)) = self.query(&pipeline).await?.into_iter().next() {
            return Err(refused(&key, &error));
        }
        Ok(())
    }
}

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

/// Whether an answer is redis refusing the credentials (or asking for them).
fn refuses_credentials(answer: &Value) -> bool {
    matches!(answer, Value::ServerError(error) if matches!(error.code(), "NOAUTH" | "WRONGPASS"))
}

/// A redis client error, classified: [`AdminError::Connection`] when redis could not be reached
/// or refused the credentials, [`AdminError::Redis`] otherwise.
fn redis_error(error: &redis::RedisError, url: &str) -> AdminError {
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
fn bullmq_error(error: bullmq::error::Error, url: &str) -> AdminError {
    match error {
        bullmq::error::Error::Redis(error) => redis_error(&error, url),
        bullmq::error::Error::ConnectionClosed => AdminError::Connection("the connection to redis closed".to_owned()),
        error => AdminError::Queue(scrub(&error.to_string(), url)),
    }
}

async fn within<T>(
    timeout: Duration,
    url: &str,
    operation: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, AdminError> {
    tokio::time::timeout(timeout, operation)
        .await
        .map_err(|_| AdminError::Timeout(timeout))?
        .map_err(|error| redis_error(&error, url))
}

async fn within_bullmq<T>(
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
fn refused(key: &str, error: &redis::ServerError) -> AdminError {
    let answer = match error.details() {
        Some(details) => format!("{} {details}", error.code()),
        None => error.code().to_owned(),
    };
    AdminError::Unexpected { key: key.to_owned(), answer }
}

fn unexpected(key: &str, error: &dyn std::fmt::Display) -> AdminError {
    AdminError::Unexpected { key: key.to_owned(), answer: error.to_string() }
}

fn integer(answer: Value, key: &str) -> Result<u64, AdminError> {
    match answer {
        Value::Int(number) => u64::try_from(number).map_err(|_| unexpected(key, &number)),
        Value::Nil => Ok(0),
        Value::ServerError(error) => Err(refused(key, &error)),
        other => Err(unexpected(key, &format!("{other:?}"))),
    }
}

fn string(answer: Value) -> Result<String, String> {
    match answer {
        Value::BulkString(bytes) => String::from_utf8(bytes).map_err(|error| error.to_string()),
        Value::SimpleString(text) | Value::VerbatimString { text, .. } => Ok(text),
        other => Err(format!("{other:?}")),
    }
}

fn optional_string(answer: Value, key: &str) -> Result<Option<String>, AdminError> {
    match answer {
        Value::Nil => Ok(None),
        Value::ServerError(error) => Err(refused(key, &error)),
        other => string(other).map(Some).map_err(|error| unexpected(key, &error)),
    }
}

/// The first `timestamp` a `SORT … GET` answer holds (jobs without one come first).
fn first_timestamp(answer: Value, key: &str) -> Result<Option<u64>, AdminError> {
    let values: Vec<Option<String>> = redis::from_redis_value(answer).map_err(|error| unexpected(key, &error))?;
    Ok(values.into_iter().flatten().find_map(|value| {
        value.parse::<u64>().ok().or_else(|| {
            // Clients write whole milliseconds; a float is read all the same.
            let float: f64 = value.parse().ok().filter(|float: &f64| float.is_finite() && *float >= 0.0)?;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "finite and not negative")]
            let whole = float as u64;
            Some(whole)
        })
    }))
}

/// The heartbeat a `GET` answered, if it is one: a key of another type there is a job whose id
/// starts with `heartbeat:` (BullMQ allows `:` in job ids), and a key gone since `SCAN` is none.
fn heartbeat_of(worker_id: String, answer: Value, now_ms: u64) -> Option<HeartbeatSeen> {
    match answer {
        Value::Nil => None,
        Value::ServerError(error) if error.code() == "WRONGTYPE" => None,
        Value::ServerError(error) => Some(unreadable_heartbeat(worker_id, error.to_string())),
        other => match string(other) {
            Ok(value) => Some(read_heartbeat(worker_id, &value, now_ms)),
            Err(error) => Some(unreadable_heartbeat(worker_id, error)),
        },
    }
}

fn unreadable_heartbeat(worker_id: String, reason: String) -> HeartbeatSeen {
    let mut seen = read_heartbeat(worker_id, "{}", 0);
    seen.unreadable = Some(reason);
    seen
}

fn read_heartbeat(worker_id: String, value: &str, now_ms: u64) -> HeartbeatSeen {
    let mut seen = HeartbeatSeen {
        worker_id,
        host: None,
        pid: None,
        concurrency: None,
        active: None,
        started_at_ms: None,
        at_ms: None,
        age_s: None,
        unreadable: None,
    };
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(fields)) => {
            let number = |name: &str| fields.get(name).and_then(serde_json::Value::as_u64);
            seen.host = fields.get("host").and_then(serde_json::Value::as_str).map(str::to_owned);
            seen.pid = number("pid");
            seen.concurrency = number("concurrency");
            seen.active = number("active");
            seen.started_at_ms = number("started_at_ms");
            seen.at_ms = number("at_ms");
            seen.age_s = seen.at_ms.map(|at| now_ms.saturating_sub(at) / 1000);
        }
        Ok(_) => seen.unreadable = Some("not a JSON object".to_owned()),
        Err(error) => seen.unreadable = Some(error.to_string()),
    }
    seen
}

/// `CLIENT LIST` lines as maps of their `key=value` fields.
fn clients(list: &str) -> impl Iterator<Item = HashMap<&str, &str>> {
    list.lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split(' ').filter_map(|field| field.split_once('=')).collect())
}

/// The queue a worker connection's name designates under `prefix`, and how it was named:
/// `<prefix>:<base64(queue)>` (Node, Rust) or `<prefix>:<queue>` (Python 3.4.4), followed by
/// `:w:<worker name>` or another suffix. `known` are the queues found by their keys: a name that
/// is one of them is taken as it is, so the two conventions are told apart whenever the queue
/// has a key. Otherwise a segment that is canonical base64 of a valid name is decoded.
fn queue_of_client_name(name: &str, prefix: &str, known: &BTreeSet<String>) -> Option<String> {
    let segment = name.strip_prefix(prefix)?.strip_prefix(':')?.split(':').next()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(segment)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|queue| valid_name(queue) && !queue.chars().any(char::is_control) && base64_name(queue) == segment);
    if known.contains(segment) {
        Some(segment.to_owned())
    } else if let Some(queue) = decoded {
        Some(queue)
    } else {
        valid_name(segment).then(|| segment.to_owned())
    }
}

/// Queues under `prefix` that connected workers name (see [`queue_of_client_name`]).
fn queues_of_clients(list: &str, prefix: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    clients(list).filter_map(|client| queue_of_client_name(client.get("name")?, prefix, known)).collect()
}

/// The connections of `queue`'s workers, as BullMQ's `Queue.getWorkers` matches them in Node
/// and Rust (`<prefix>:<base64(queue)>`) and in Python (`<prefix>:<queue>`), each alone or
/// followed by `:w:<worker name>`.
fn workers_of(list: &str, prefix: &str, queue: &str) -> Vec<WorkerConnection> {
    let unnamed = [format!("{prefix}:{}", base64_name(queue)), format!("{prefix}:{queue}")];
    let named = unnamed.clone().map(|unnamed| format!("{unnamed}:w:"));
    let is_worker =
        |name: &str| unnamed.iter().any(|unnamed| name == unnamed) || named.iter().any(|named| name.starts_with(named));
    let mut workers: Vec<WorkerConnection> = clients(list)
        .filter(|client| client.get("name").is_some_and(|name| is_worker(name)))
        .map(|client| {
            let number = |field: &str| client.get(field).and_then(|value| value.parse().ok()).unwrap_or_default();
            WorkerConnection {
                name: client.get("name").copied().unwrap_or_default().to_owned(),
                addr: client.get("addr").copied().unwrap_or_default().to_owned(),
                age_s: number("age"),
                idle_s: number("idle"),
            }
        })
        .collect();
    workers.sort_by(|a, b| (&a.name, &a.addr).cmp(&(&b.name, &b.addr)));
    workers
}

fn job_details(id: &str, state: &str, fields: &HashMap<String, String>) -> JobDetails {
    let text = |name: &str| fields.get(name).cloned();
    let number = |name: &str| fields.get(name).and_then(|value| value.parse::<u64>().ok());
    // JSON fields that are not JSON are shown as the string they are.
    let json = |name: &str| {
        fields
            .get(name)
            .map(|value| serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.clone())))
    };
    let stacktrace = match fields.get("stacktrace").map(|value| serde_json::from_str::<serde_json::Value>(value)) {
        Some(Ok(serde_json::Value::Array(lines))) => {
            lines.into_iter().map(|line| line.as_str().map_or_else(|| line.to_string(), str::to_owned)).collect()
        }
        Some(Ok(serde_json::Value::Null)) | None => Vec::new(),
        Some(_) => vec![fields["stacktrace"].clone()],
    };
    JobDetails {
        id: id.to_owned(),
        name: text("name").unwrap_or_default(),
        state: state.to_owned(),
        data: json("data").unwrap_or(serde_json::Value::Null),
        options: json("opts").unwrap_or(serde_json::Value::Null),
        // BullMQ v5 writes `atm`/`ats`; older versions wrote `attemptsMade`.
        attempts_made: number("atm").or_else(|| number("attemptsMade")).unwrap_or_default(),
        attempts_started: number("ats").unwrap_or_default(),
        priority: number("priority").unwrap_or_default(),
        delay_ms: number("delay").unwrap_or_default(),
        progress: json("progress").unwrap_or_else(|| serde_json::json!(0)),
        created_at_ms: number("timestamp"),
        processed_at_ms: number("processedOn"),
        finished_at_ms: number("finishedOn"),
        processed_by: text("pb"),
        failed_reason: text("failedReason").filter(|reason| !reason.is_empty()),
        stacktrace,
        returnvalue: json("returnvalue"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redacted_url("redis://:s3cret@redis:6379"), "redis://:***@redis:6379");
        assert_eq!(redacted_url("redis://user:s3cret@h:1/0?x=1"), "redis://user:***@h:1/0?x=1");
        assert_eq!(redacted_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redacted_url("redis://127.0.0.1:6379/0?db=1"), "redis://127.0.0.1:6379/0?db=1");
        // A lone user part may be a password written in the wrong place.
        assert_eq!(redacted_url("redis://s3cret@h:1"), "redis://***@h:1");
        // Passwords that hold the characters that end an authority, or `@`.
        assert_eq!(redacted_url("redis://:se/cret@127.0.0.1:6379"), "redis://:***@127.0.0.1:6379");
        assert_eq!(redacted_url("redis://:se#cret@127.0.0.1:6379"), "redis://:***@127.0.0.1:6379");
        assert_eq!(redacted_url("redis://:se?cret@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
        assert_eq!(redacted_url("rediss://u:se@cret@h:1"), "rediss://u:***@h:1");
        // Not `scheme://`: nothing before the last `@` is shown, or nothing at all.
        assert_eq!(redacted_url("redis//:s3cret@127.0.0.1:6379"), "***@127.0.0.1:6379");
        assert_eq!(redacted_url("redis:/:s3cret@127.0.0.1:6379"), "***@127.0.0.1:6379");
        assert_eq!(redacted_url("s3cret"), "***");
        // Passwords in the query, as `unix://` URLs carry them.
        assert_eq!(redacted_url("redis+unix:///tmp/x.sock?pass=s3cret"), "redis+unix:///tmp/x.sock?pass=***");
        assert_eq!(redacted_url("unix:///tmp/x.sock?db=1&PASSWORD=s3&cret"), "unix:///tmp/x.sock?db=1&PASSWORD=***");
        // An `@` in the query: everything up to it may be a user part, so all of it goes.
        assert_eq!(redacted_url("redis+unix:///tmp/x.sock?pass=a@b"), "redis+unix://***");
        // Both at once, overlapping.
        assert_eq!(redacted_url("redis://:x&pass=y@h:1"), "redis://:***");
    }

    #[test]
    fn errors_are_scrubbed() {
        assert_eq!(
            scrub("cannot reach redis://:s3cret@h:1 (s3cret)", "redis://:s3cret@h:1"),
            "cannot reach redis://:***@h:1 (***)"
        );
        assert_eq!(scrub("auth failed for se/cret", "redis://:se%2Fcret@h:1"), "auth failed for ***");
    }

    #[test]
    fn workers_follow_bullmq_naming() {
        // "workflow-queue" is d29ya2Zsb3ctcXVldWU= in base64.
        let list = "id=1 addr=127.0.0.1:1 name=bull:d29ya2Zsb3ctcXVldWU= age=5 idle=1\n\
                    id=2 addr=127.0.0.1:2 name=bull:d29ya2Zsb3ctcXVldWU=:w:alpha age=3 idle=0\n\
                    id=3 addr=127.0.0.1:3 name=bull:b3RoZXI= age=1 idle=1\n\
                    id=4 addr=127.0.0.1:4 name=other:d29ya2Zsb3ctcXVldWU= age=1 idle=1\n\
                    id=5 addr=127.0.0.1:5 name= age=1 idle=1\n\
                    id=6 addr=127.0.0.1:6 name=bull:dGhpcmQ=:qe age=1 idle=1\n\
                    id=7 addr=127.0.0.1:7 name=bull:workflow-queue age=2 idle=2\n\
                    id=8 addr=127.0.0.1:8 name=bull:workflow-queue:w:py age=2 idle=2\n\
                    id=9 addr=127.0.0.1:9 name=bull:python-only:w:py age=2 idle=2\n";
        let workers = workers_of(list, "bull", "workflow-queue");
        let names: Vec<&str> = workers.iter().map(|worker| worker.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bull:d29ya2Zsb3ctcXVldWU=",
                "bull:d29ya2Zsb3ctcXVldWU=:w:alpha",
                "bull:workflow-queue",
                "bull:workflow-queue:w:py"
            ]
        );
        assert_eq!((workers[0].age_s, workers[0].idle_s), (5, 1));
        assert!(workers_of(list, "bull", "third").is_empty(), "only workers count");
        let queues = ["other", "python-only", "third", "workflow-queue"].map(str::to_owned);
        assert_eq!(queues_of_clients(list, "bull", &BTreeSet::new()), BTreeSet::from(queues));
    }

    #[test]
    fn client_names_are_told_apart_by_the_queues_that_exist() {
        // "YWJj" is both a plain name and the base64 of "abc".
        let none = BTreeSet::new();
        assert_eq!(queue_of_client_name("bull:YWJj:w:x", "bull", &none).as_deref(), Some("abc"));
        let known = BTreeSet::from(["YWJj".to_owned()]);
        assert_eq!(queue_of_client_name("bull:YWJj:w:x", "bull", &known).as_deref(), Some("YWJj"));
        // Not canonical base64 (no padding), so plain.
        assert_eq!(queue_of_client_name("bull:emails", "bull", &none).as_deref(), Some("emails"));
        assert_eq!(queue_of_client_name("bullx:emails", "bull", &none), None);
        assert_eq!(queue_of_client_name("bull:", "bull", &none), None);
    }

    #[test]
    fn timestamps_are_read_from_sort_answers() {
        let answer = |values: &[Option<&str>]| {
            Value::Array(values.iter().map(|value| value.map_or(Value::Nil, |v| Value::BulkString(v.into()))).collect())
        };
        assert_eq!(first_timestamp(answer(&[None, Some("1700000000000")]), "k").unwrap(), Some(1_700_000_000_000));
        assert_eq!(first_timestamp(answer(&[Some("1.7e12")]), "k").unwrap(), Some(1_700_000_000_000));
        assert_eq!(first_timestamp(answer(&[Some("soon"), None]), "k").unwrap(), None);
        assert_eq!(first_timestamp(Value::Array(Vec::new()), "k").unwrap(), None);
    }

    #[test]
    fn heartbeats_are_read_leniently() {
        let seen = read_heartbeat("w1".into(), r#"{"worker_id":"w1","host":"h","pid":7,"at_ms":1000}"#, 5_500);
        assert_eq!((seen.host.as_deref(), seen.pid, seen.age_s, seen.concurrency), (Some("h"), Some(7), Some(4), None));
        assert!(read_heartbeat("w2".into(), "nope", 0).unreadable.is_some());
        let hash = redis::parse_redis_value(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n")
            .unwrap();
        assert!(heartbeat_of("evil".into(), hash, 0).is_none(), "a job whose id starts with `heartbeat:`");
        assert!(heartbeat_of("gone".into(), Value::Nil, 0).is_none());
    }

    /// Against the bootstrap's Redis: pages that start inside a run of equal scores.
    #[tokio::test]
    async fn failed_ids_page_through_equal_scores() {
        let url = "redis://127.0.0.1:6379";
        let mut inspector = Inspector::connect(url, Duration::from_secs(5))
            .await
            .unwrap_or_else(|error| panic!("redis is not reachable at {url} ({error}): run `script/bootstrap`"));
        let prefix = format!("admin-test-{}", uuid::Uuid::new_v4().simple());
        let key = format!("{prefix}:q:failed");
        let mut add = redis::pipe();
        add.cmd("ZADD").arg(&key);
        for (score, id) in [(100, "a"), (100, "b"), (100, "c"), (100, "d"), (200, "e"), (900, "after")] {
            add.arg(score).arg(id);
        }
        inspector.query(&add).await.unwrap();
        let ids = inspector.failed_ids(&prefix, "q", 500, 2).await;
        let mut delete = redis::pipe();
        delete.cmd("DEL").arg(&key);
        inspector.query(&delete).await.unwrap();
        assert_eq!(ids.unwrap(), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn globs_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
