//! Decoders of Redis's answers for the read side: integers and strings with their errors,
//! `SORT` timestamps, heartbeats (read leniently), `CLIENT LIST` lines and BullMQ's worker
//! connection names, and job hashes.

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use redis::Value;

use super::inspect::{HeartbeatSeen, JobDetails, WorkerConnection};
use super::{refused, unexpected, valid_name, AdminError};

pub(super) fn integer(answer: Value, key: &str) -> Result<u64, AdminError> {
    match answer {
        Value::Int(number) => u64::try_from(number).map_err(|_| unexpected(key, &number)),
        Value::Nil => Ok(0),
        Value::ServerError(error) => Err(refused(key, &error)),
        other => Err(unexpected(key, &format!("{other:?}"))),
    }
}

pub(super) fn string(answer: Value) -> Result<String, String> {
    match answer {
        Value::BulkString(bytes) => String::from_utf8(bytes).map_err(|error| error.to_string()),
        Value::SimpleString(text) | Value::VerbatimString { text, .. } => Ok(text),
        other => Err(format!("{other:?}")),
    }
}

pub(super) fn optional_string(answer: Value, key: &str) -> Result<Option<String>, AdminError> {
    match answer {
        Value::Nil => Ok(None),
        Value::ServerError(error) => Err(refused(key, &error)),
        other => string(other).map(Some).map_err(|error| unexpected(key, &error)),
    }
}

/// The first `timestamp` a `SORT … GET` answer holds (jobs without one come first).
pub(super) fn first_timestamp(answer: Value, key: &str) -> Result<Option<u64>, AdminError> {
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
pub(super) fn heartbeat_of(worker_id: String, answer: Value, now_ms: u64) -> Option<HeartbeatSeen> {
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

pub(super) fn unreadable_heartbeat(worker_id: String, reason: String) -> HeartbeatSeen {
    let mut seen = read_heartbeat(worker_id, "{}", 0);
    seen.unreadable = Some(reason);
    seen
}

pub(super) fn read_heartbeat(worker_id: String, value: &str, now_ms: u64) -> HeartbeatSeen {
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
pub(super) fn clients(list: &str) -> impl Iterator<Item = HashMap<&str, &str>> {
    list.lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split(' ').filter_map(|field| field.split_once('=')).collect())
}

/// The queue a worker connection's name designates under `prefix`, and how it was named:
/// `<prefix>:<base64(queue)>` (Node, Rust) or `<prefix>:<queue>` (Python 3.4.4), followed by
/// `:w:<worker name>` or another suffix. `known` are the queues found by their keys: a name that
/// is one of them is taken as it is, so the two conventions are told apart whenever the queue
/// has a key. Otherwise a segment that is canonical base64 of a valid name is decoded.
pub(super) fn queue_of_client_name(name: &str, prefix: &str, known: &BTreeSet<String>) -> Option<String> {
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
pub(super) fn queues_of_clients(list: &str, prefix: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    clients(list).filter_map(|client| queue_of_client_name(client.get("name")?, prefix, known)).collect()
}

/// The connections of `queue`'s workers, as BullMQ's `Queue.getWorkers` matches them in Node
/// and Rust (`<prefix>:<base64(queue)>`) and in Python (`<prefix>:<queue>`), each alone or
/// followed by `:w:<worker name>`.
pub(super) fn workers_of(list: &str, prefix: &str, queue: &str) -> Vec<WorkerConnection> {
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

pub(super) fn job_details(id: &str, state: &str, fields: &HashMap<String, String>) -> JobDetails {
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

pub(super) fn base64_name(queue: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(queue)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
