//! Inspecting and repairing queues for `masstockctl queue`: read-only views read straight from
//! Redis, and repairs (retry, clean, pause, resume) through BullMQ's own scripts.
//!
//! Reads never construct a `bullmq::Queue`, because constructing one writes the queue's `meta`
//! hash (it records `library`): looking at a queue must not change it. Reads are pipelined, so
//! their cost does not grow with the number of jobs: counts are `LLEN`/`ZCARD`, and the oldest
//! waiting job is found among a few candidates (see [`Inspector::queues`]).
//!
//! Repairs go through [`Admin`], which wraps `bullmq::Queue`, so they run the same Lua scripts
//! as the Node and Python clients. [`Admin::open`] refuses a queue that has no key at all, so a
//! mistyped `--queue` does not create one.
//!
//! Workers are seen two ways: BullMQ's convention (a worker's connection is named
//! `<prefix>:<base64(queue)>`, optionally followed by `:w:<worker name>`, and shows in
//! `CLIENT LIST`), and our worker's heartbeat, a string key `<prefix>:<queue>:heartbeat:<worker id>`
//! holding `{"worker_id", "host", "pid", "concurrency", "active", "started_at_ms", "at_ms"}` with a
//! TTL of 30 s. Heartbeats are read leniently: a field the worker did not write is `None`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use bullmq::options::RedisConnectionOptions;
use bullmq::{Queue, QueueOptions};
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

/// A priority band's width in the `prioritized` sorted set: scores are
/// `priority * 2^32 + counter`.
const BAND: u64 = 1 << 32;
/// Keys looked at per `SCAN` call.
const SCAN_COUNT: u32 = 10_000;
/// Priority bands walked at most when looking for the oldest waiting job.
const MAX_BANDS: usize = 1_000;
/// Jobs moved back per call of BullMQ's `moveJobsToWait` script.
const RETRY_BATCH: u32 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("redis did not answer within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("{0}")]
    Redis(String),
    #[error("unexpected answer from redis for `{key}`: {answer}")]
    Unexpected { key: String, answer: String },
    #[error("`{0}` cannot be a queue name or prefix: it is empty or holds `:`")]
    InvalidName(String),
    #[error("no queue `{queue}` under prefix `{prefix}`")]
    NoSuchQueue { prefix: String, queue: String },
    #[error("no job `{id}` in `{prefix}:{queue}`")]
    NoSuchJob { prefix: String, queue: String, id: String },
    #[error("job `{id}` is {state}: only failed and completed jobs can be retried")]
    NotRetryable { id: String, state: String },
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
    /// The connection's name: `<prefix>:<base64(queue)>[:w:<worker name>]`.
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

/// `url` with its password replaced by `***`, for messages.
#[must_use]
pub fn redacted_url(url: &str) -> String {
    match password_of(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// Where the password of `scheme://[user][:password]@host…` sits in `url`.
fn password_of(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let authority_end = url[authority_start..].find(['/', '?', '#']).map_or(url.len(), |end| authority_start + end);
    let at = url[authority_start..authority_end].rfind('@')? + authority_start;
    let colon = url[authority_start..at].find(':')? + authority_start;
    (colon + 1 < at).then_some((colon + 1, at))
}

/// Removes the URL and its password from an error's text: redis and bullmq errors may quote them.
fn scrub(text: &str, url: &str) -> String {
    let mut text = text.replace(url, &redacted_url(url));
    if let Some((start, end)) = password_of(url) {
        text = text.replace(&url[start..end], "***");
    }
    text
}

fn check_name(name: &str) -> Result<(), AdminError> {
    if name.is_empty() || name.contains(':') {
        Err(AdminError::InvalidName(name.to_owned()))
    } else {
        Ok(())
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

/// A read-only connection to Redis.
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
        let client = redis::Client::open(url).map_err(|error| AdminError::Redis(scrub(&error.to_string(), url)))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let connection = within(timeout, url, client.get_multiplexed_async_connection_with_config(&config)).await?;
        Ok(Self { connection, url: url.to_owned(), timeout })
    }

    async fn query(&mut self, pipeline: &redis::Pipeline) -> Result<Vec<Value>, AdminError> {
        let url = self.url.clone();
        within(self.timeout, &url, pipeline.query_async::<Vec<Value>>(&mut self.connection)).await
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
    /// and by the names of connected workers. Then one pipeline reads every count, the `meta`
    /// hash, and the candidates for the oldest waiting job: the right end of `wait` and `paused`
    /// (BullMQ pushes on the left), and the head of each priority band of `prioritized`, found by
    /// walking the bands with one pipelined `ZRANGEBYSCORE … LIMIT 0 1` round per band. A last
    /// pipeline reads the candidates' `timestamp`. No step reads every job.
    pub async fn queues(&mut self, prefix: &str, now_ms: u64) -> Result<Vec<QueueSummary>, AdminError> {
        check_name(prefix)?;
        let mut names = BTreeSet::new();
        let mut heartbeat_keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
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
                    if !queue.is_empty() && !queue.contains(':') {
                        names.insert(queue.to_owned());
                    }
                } else if let Some((queue, worker)) = rest.split_once(':') {
                    if let Some(worker_id) = worker.strip_prefix(HEARTBEAT_SEGMENT).and_then(|w| w.strip_prefix(':')) {
                        if !queue.is_empty() && !worker_id.is_empty() {
                            heartbeat_keys.entry(queue.to_owned()).or_default().push(key.clone());
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
        names.extend(heartbeat_keys.keys().cloned());
        names.extend(queues_of_clients(&clients, prefix));

        if names.is_empty() {
            return Ok(Vec::new());
        }
        // Counts, meta, heartbeats and the first candidates, in one round trip.
        let names: Vec<String> = names.into_iter().collect();
        let mut pipeline = redis::pipe();
        pipeline.ignore_errors();
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
            pipeline.cmd("HGET").arg(format!("{base}:meta")).arg("paused");
            pipeline.cmd("LINDEX").arg(format!("{base}:wait")).arg(-1);
            pipeline.cmd("LINDEX").arg(format!("{base}:paused")).arg(-1);
            pipeline.cmd("ZRANGE").arg(format!("{base}:prioritized")).arg(0).arg(0).arg("WITHSCORES");
            expected.extend([
                format!("{base}:meta"),
                format!("{base}:wait"),
                format!("{base}:paused"),
                format!("{base}:prioritized"),
            ]);
            for key in heartbeat_keys.get(queue).into_iter().flatten() {
                pipeline.cmd("GET").arg(key);
                expected.push(key.clone());
            }
        }
        let answers = self.query(&pipeline).await?;
        if answers.len() != expected.len() {
            return Err(AdminError::Unexpected {
                key: prefix.to_owned(),
                answer: format!("{} answers to {} commands", answers.len(), expected.len()),
            });
        }
        let mut answers = answers.into_iter().zip(expected);
        let mut next = move || answers.next().expect("one answer per command");

        let mut summaries = Vec::new();
        // Per queue: the job ids that may be the oldest waiting one, and the band still to walk.
        let mut candidates: Vec<Vec<String>> = Vec::new();
        let mut bands: Vec<Option<u64>> = Vec::new();
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
            let (paused, key) = next();
            let paused = optional_string(paused, &key)?.as_deref() == Some("1");
            let mut waiting = Vec::new();
            for _ in 0..2 {
                let (answer, key) = next();
                waiting.extend(optional_string(answer, &key)?);
            }
            let (answer, key) = next();
            let band = match band_head(answer, &key)? {
                Some((id, band)) => {
                    waiting.push(id);
                    Some(band)
                }
                None => None,
            };
            let mut heartbeats = Vec::new();
            for _ in heartbeat_keys.get(queue).into_iter().flatten() {
                let (answer, key) = next();
                let worker_id = key.rsplit_once(&format!(":{HEARTBEAT_SEGMENT}:")).map_or("", |(_, id)| id).to_owned();
                if let Some(value) = optional_string(answer, &key)? {
                    heartbeats.push(read_heartbeat(worker_id, &value, now_ms));
                }
            }
            heartbeats.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
            let workers = workers_of(&clients, prefix, queue);
            summaries.push(QueueSummary {
                prefix: prefix.to_owned(),
                name: queue.clone(),
                counts,
                oldest_waiting_age_s: None,
                paused,
                workers,
                heartbeats,
            });
            candidates.push(waiting);
            bands.push(band);
        }

        // Walk the priority bands, all queues at once: one round trip per band.
        for _ in 0..MAX_BANDS {
            let walking: Vec<usize> = (0..names.len()).filter(|&index| bands[index].is_some()).collect();
            if walking.is_empty() {
                break;
            }
            let mut pipeline = redis::pipe();
            pipeline.ignore_errors();
            for &index in &walking {
                let band = bands[index].unwrap_or_default();
                pipeline
                    .cmd("ZRANGEBYSCORE")
                    .arg(format!("{prefix}:{}:prioritized", names[index]))
                    .arg((band + 1) * BAND)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1);
            }
            let answers = self.query(&pipeline).await?;
            for (&index, answer) in walking.iter().zip(answers) {
                let key = format!("{prefix}:{}:prioritized", names[index]);
                bands[index] = match band_head(answer, &key)? {
                    Some((id, band)) => {
                        candidates[index].push(id);
                        Some(band)
                    }
                    None => None,
                };
            }
        }

        // The candidates' creation times, in one round trip.
        let mut pipeline = redis::pipe();
        pipeline.ignore_errors();
        let mut owners = Vec::new();
        for (index, ids) in candidates.iter().enumerate() {
            for id in ids {
                pipeline.cmd("HGET").arg(format!("{prefix}:{}:{id}", names[index])).arg("timestamp");
                owners.push((index, format!("{prefix}:{}:{id}", names[index])));
            }
        }
        if !owners.is_empty() {
            let answers = self.query(&pipeline).await?;
            for ((index, key), answer) in owners.into_iter().zip(answers) {
                let Some(created) = optional_string(answer, &key)?.and_then(|value| value.parse::<u64>().ok()) else {
                    continue;
                };
                let age = now_ms.saturating_sub(created) / 1000;
                let oldest = &mut summaries[index].oldest_waiting_age_s;
                *oldest = Some(oldest.map_or(age, |current| current.max(age)));
            }
        }
        Ok(summaries)
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
                return Err(unexpected(&format!("{base}:{suffix}"), error));
            }
            if answer != Value::Nil {
                state = name;
                break;
            }
        }
        Ok(Some(job_details(id, state, &fields)))
    }

    /// How many jobs of `state` finished at or before `until_ms`.
    async fn finished_count(
        &mut self,
        prefix: &str,
        queue: &str,
        state: FinishedState,
        until_ms: u64,
    ) -> Result<u64, AdminError> {
        let key = format!("{prefix}:{queue}:{}", state.as_str());
        let mut pipeline = redis::pipe();
        pipeline.cmd("ZCOUNT").arg(&key).arg("-inf").arg(until_ms);
        let answer = self.query(&pipeline).await?.into_iter().next().unwrap_or(Value::Nil);
        integer(answer, &key)
    }

    async fn list_length(&mut self, key: &str) -> Result<u64, AdminError> {
        let mut pipeline = redis::pipe();
        pipeline.cmd("LLEN").arg(key);
        let answer = self.query(&pipeline).await?.into_iter().next().unwrap_or(Value::Nil);
        integer(answer, key)
    }

    async fn is_paused(&mut self, prefix: &str, queue: &str) -> Result<bool, AdminError> {
        let key = format!("{prefix}:{queue}:meta");
        let mut pipeline = redis::pipe();
        pipeline.cmd("HGET").arg(&key).arg("paused");
        let answer = self.query(&pipeline).await?.into_iter().next().unwrap_or(Value::Nil);
        Ok(optional_string(answer, &key)?.as_deref() == Some("1"))
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

impl Admin {
    /// Opens `prefix:queue` at `url`. Fails with [`AdminError::NoSuchQueue`] when the queue has
    /// no key, before anything is written.
    pub async fn open(url: &str, prefix: &str, queue: &str, timeout: Duration) -> Result<Self, AdminError> {
        check_name(prefix)?;
        check_name(queue)?;
        let mut inspector = Inspector::connect(url, timeout).await?;
        if !inspector.queue_exists(prefix, queue).await? {
            return Err(AdminError::NoSuchQueue { prefix: prefix.to_owned(), queue: queue.to_owned() });
        }
        let options = QueueOptions::new().connection(RedisConnectionOptions::new().url(url)).prefix(prefix);
        let queue_handle = within_bullmq(timeout, url, Queue::with_options(queue, options)).await?;
        Ok(Self { queue: queue_handle, inspector, prefix: prefix.to_owned(), name: queue.to_owned() })
    }

    async fn run<T>(&self, operation: impl Future<Output = Result<T, bullmq::error::Error>>) -> Result<T, AdminError> {
        // Scripts on large sets run in batches; each batch gets the whole timeout again below, so
        // this bound is for a server that stopped answering.
        within_bullmq(self.inspector.timeout * 6, &self.inspector.url, operation).await
    }

    /// Retries one failed or completed job (BullMQ's `Job.retry`).
    pub async fn retry_job(&mut self, id: &str) -> Result<Retried, AdminError> {
        let no_such_job =
            || AdminError::NoSuchJob { prefix: self.prefix.clone(), queue: self.name.clone(), id: id.to_owned() };
        let state = self.inspector.job_state(&self.prefix, &self.name, id).await?.ok_or_else(no_such_job)?;
        let from = match state.as_str() {
            "failed" => FinishedState::Failed,
            "completed" => FinishedState::Completed,
            _ => return Err(AdminError::NotRetryable { id: id.to_owned(), state }),
        };
        let mut job = self.run(self.queue.get_job(id)).await?.ok_or_else(no_such_job)?;
        self.run(job.retry(from.as_str(), None)).await?;
        Ok(Retried { id: id.to_owned(), from })
    }

    /// Retries every job that failed until now (BullMQ's `Queue.retryJobs`); returns how many.
    pub async fn retry_failed(&mut self, now_ms: u64) -> Result<u64, AdminError> {
        let (prefix, name) = (self.prefix.clone(), self.name.clone());
        let before = self.inspector.finished_count(&prefix, &name, FinishedState::Failed, now_ms).await?;
        self.run(self.queue.retry_jobs("failed", RETRY_BATCH, Some(now_ms))).await?;
        let after = self.inspector.finished_count(&prefix, &name, FinishedState::Failed, now_ms).await?;
        Ok(before.saturating_sub(after))
    }

    /// Removes the jobs of `state` that finished more than `older_than` ago (BullMQ's
    /// `Queue.clean`); returns how many.
    pub async fn clean(&mut self, state: FinishedState, older_than: Duration) -> Result<u64, AdminError> {
        let grace = u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX);
        let removed = self.run(self.queue.clean(grace, 0, state.as_str())).await?;
        Ok(removed.len() as u64)
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

async fn within<T>(
    timeout: Duration,
    url: &str,
    operation: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, AdminError> {
    tokio::time::timeout(timeout, operation)
        .await
        .map_err(|_| AdminError::Timeout(timeout))?
        .map_err(|error| AdminError::Redis(scrub(&error.to_string(), url)))
}

async fn within_bullmq<T>(
    timeout: Duration,
    url: &str,
    operation: impl Future<Output = Result<T, bullmq::error::Error>>,
) -> Result<T, AdminError> {
    tokio::time::timeout(timeout, operation)
        .await
        .map_err(|_| AdminError::Timeout(timeout))?
        .map_err(|error| AdminError::Queue(scrub(&error.to_string(), url)))
}

fn unexpected(key: &str, error: &dyn std::fmt::Display) -> AdminError {
    AdminError::Unexpected { key: key.to_owned(), answer: error.to_string() }
}

fn integer(answer: Value, key: &str) -> Result<u64, AdminError> {
    match answer {
        Value::Int(number) => u64::try_from(number).map_err(|_| unexpected(key, &number)),
        Value::Nil => Ok(0),
        Value::ServerError(error) => Err(unexpected(key, &error)),
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
        Value::ServerError(error) => Err(unexpected(key, &error)),
        other => string(other).map(Some).map_err(|error| unexpected(key, &error)),
    }
}

/// The member and priority band of a `ZRANGE … WITHSCORES` answer of at most one member.
fn band_head(answer: Value, key: &str) -> Result<Option<(String, u64)>, AdminError> {
    if let Value::ServerError(error) = &answer {
        return Err(unexpected(key, error));
    }
    let pairs: Vec<(String, String)> = redis::from_redis_value(answer).map_err(|error| unexpected(key, &error))?;
    let Some((member, score)) = pairs.into_iter().next() else { return Ok(None) };
    // Scores are below 2^53, so Redis prints them as integers; a float is read all the same.
    let score = if let Ok(score) = score.parse::<u64>() {
        score
    } else {
        let float: f64 = score.parse().map_err(|_| unexpected(key, &score))?;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "scores are whole and below 2^53")]
        let whole = float.max(0.0) as u64;
        whole
    };
    Ok(Some((member, score / BAND)))
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

/// Queues under `prefix` whose workers' connections are named (`<prefix>:<base64(queue)>…`).
fn queues_of_clients(list: &str, prefix: &str) -> BTreeSet<String> {
    let head = format!("{prefix}:");
    clients(list)
        .filter_map(|client| {
            let encoded = client.get("name")?.strip_prefix(&head)?;
            // Workers add `:w:<name>`, other BullMQ connections other suffixes.
            let encoded = encoded.split(':').next().unwrap_or_default();
            let queue = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
            String::from_utf8(queue).ok().filter(|queue| !queue.is_empty() && !queue.contains(':'))
        })
        .collect()
}

/// The connections of `queue`'s workers, as BullMQ's `Queue.getWorkers` matches them.
fn workers_of(list: &str, prefix: &str, queue: &str) -> Vec<WorkerConnection> {
    let unnamed = format!("{prefix}:{}", base64_name(queue));
    let named = format!("{unnamed}:w:");
    let mut workers: Vec<WorkerConnection> = clients(list)
        .filter(|client| client.get("name").is_some_and(|name| *name == unnamed || name.starts_with(&named)))
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
        assert_eq!(redacted_url("redis://user@h:1"), "redis://user@h:1");
        assert_eq!(
            scrub("cannot reach redis://:s3cret@h:1 (s3cret)", "redis://:s3cret@h:1"),
            "cannot reach redis://:***@h:1 (***)"
        );
    }

    #[test]
    fn workers_follow_bullmq_naming() {
        // "workflow-queue" is d29ya2Zsb3ctcXVldWU= in base64.
        let list = "id=1 addr=127.0.0.1:1 name=bull:d29ya2Zsb3ctcXVldWU= age=5 idle=1\n\
                    id=2 addr=127.0.0.1:2 name=bull:d29ya2Zsb3ctcXVldWU=:w:alpha age=3 idle=0\n\
                    id=3 addr=127.0.0.1:3 name=bull:b3RoZXI= age=1 idle=1\n\
                    id=4 addr=127.0.0.1:4 name=other:d29ya2Zsb3ctcXVldWU= age=1 idle=1\n\
                    id=5 addr=127.0.0.1:5 name= age=1 idle=1\n\
                    id=6 addr=127.0.0.1:6 name=bull:dGhpcmQ=:qe age=1 idle=1\n";
        let workers = workers_of(list, "bull", "workflow-queue");
        assert_eq!(workers.len(), 2);
        assert_eq!(workers[1].name, "bull:d29ya2Zsb3ctcXVldWU=:w:alpha");
        assert_eq!((workers[0].age_s, workers[0].idle_s), (5, 1));
        assert!(workers_of(list, "bull", "third").is_empty(), "only workers count");
        let queues = BTreeSet::from(["other".to_owned(), "third".to_owned(), "workflow-queue".to_owned()]);
        assert_eq!(queues_of_clients(list, "bull"), queues);
    }

    #[test]
    fn bands_are_read_from_scores() {
        let answer =
            |score: &str| Value::Array(vec![Value::BulkString(b"job".to_vec()), Value::BulkString(score.into())]);
        assert_eq!(band_head(answer("8589934593"), "k").unwrap(), Some(("job".to_owned(), 2)));
        assert_eq!(band_head(answer("4.294967297e9"), "k").unwrap(), Some(("job".to_owned(), 1)));
        assert_eq!(band_head(Value::Array(Vec::new()), "k").unwrap(), None);
    }

    #[test]
    fn heartbeats_are_read_leniently() {
        let seen = read_heartbeat("w1".into(), r#"{"worker_id":"w1","host":"h","pid":7,"at_ms":1000}"#, 5_500);
        assert_eq!((seen.host.as_deref(), seen.pid, seen.age_s, seen.concurrency), (Some("h"), Some(7), Some(4), None));
        assert!(read_heartbeat("w2".into(), "nope", 0).unreadable.is_some());
    }

    #[test]
    fn globs_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
