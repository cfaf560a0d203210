//! The read side: [`Inspector`], a read-only connection that lists queues, counts their jobs,
//! finds their workers and heartbeats, and reads single jobs, without writing anything (see the
//! parent module for why no `bullmq::Queue` is built here). What Redis answers is turned into
//! these types by the decoders in [`super::decode`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::Value;
use serde::Serialize;

use super::decode::{
    first_timestamp, heartbeat_of, integer, job_details, optional_string, queues_of_clients, string, workers_of,
};
use super::redact::{redacted_url, scrub};
use super::{check_name, refused, refuses_credentials, unexpected, valid_name, within, AdminError};
use crate::heartbeat;

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
    pub(super) url: String,
    pub(super) timeout: Duration,
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

    pub(super) async fn query(&mut self, pipeline: &redis::Pipeline) -> Result<Vec<Value>, AdminError> {
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
        // Per queue: each heartbeat key and the worker id it names.
        let mut heartbeat_keys: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
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
                    if let Some(worker_id) = heartbeat::worker_id(worker).filter(|_| valid_name(queue)) {
                        heartbeat_keys.entry(queue.to_owned()).or_default().insert(key.clone(), worker_id.to_owned());
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
            for key in heartbeat_keys.get(queue).into_iter().flat_map(BTreeMap::keys) {
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
            for worker_id in heartbeat_keys.get(queue).into_iter().flat_map(BTreeMap::values) {
                let (answer, _) = next();
                heartbeats.extend(heartbeat_of(worker_id.clone(), answer, now_ms));
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
    pub(super) async fn failed_ids(
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

    pub(super) async fn list_length(&mut self, key: &str) -> Result<u64, AdminError> {
        let mut pipeline = redis::pipe();
        pipeline.cmd("LLEN").arg(key);
        let answer = self.query(&pipeline).await?.into_iter().next().unwrap_or(Value::Nil);
        integer(answer, key)
    }

    /// Whether the queue is paused, as BullMQ decides it: its `meta` hash has a `paused` field.
    pub(super) async fn is_paused(&mut self, prefix: &str, queue: &str) -> Result<bool, AdminError> {
        let key = format!("{prefix}:{queue}:meta");
        let mut pipeline = redis::pipe();
        pipeline.cmd("HEXISTS").arg(&key).arg("paused");
        let answer = self.query(&pipeline).await?.into_iter().next().unwrap_or(Value::Nil);
        Ok(integer(answer, &key)? == 1)
    }

    /// The `library` field of a queue's `meta` hash.
    pub(super) async fn library(&mut self, prefix: &str, queue: &str) -> Result<Option<String>, AdminError> {
        let key = format!("{prefix}:{queue}:meta");
        let mut pipeline = redis::pipe();
        pipeline.cmd("HGET").arg(&key).arg("library");
        let answer = self.query(&pipeline).await?.into_iter().next().unwrap_or(Value::Nil);
        optional_string(answer, &key)
    }

    /// Puts back the `library` field of a queue's `meta` hash as it was (`None`: absent).
    pub(super) async fn restore_library(
        &mut self,
        prefix: &str,
        queue: &str,
        library: Option<&str>,
    ) -> Result<(), AdminError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the bootstrap's Redis: pages that start inside a run of equal scores.
    #[tokio::test]
    pub(super) async fn failed_ids_page_through_equal_scores() {
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
