//! `masstockctl queue`, against the bootstrap's Redis, on queues written by Python's `bullmq`
//! and by our `masstock-queue`. Each test works under a prefix of its own and deletes its keys
//! when it ends, failed or not.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Commands as _;
use serde_json::{json, Value};

use crate::support::{Run, Sandbox};

/// The bootstrap's Redis.
const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A connection to the bootstrap's Redis, or a failure that says how to start it.
fn redis_connection() -> redis::Connection {
    redis::Client::open(REDIS_URL)
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
        .unwrap_or_else(|error| panic!("redis is not reachable at {REDIS_URL} ({error}): run `script/bootstrap`"))
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// A prefix of the test's own; every key under it is deleted on drop.
struct Prefix {
    name: String,
}

impl Prefix {
    fn new() -> Self {
        let _ = redis_connection();
        // As long as `[PREFIX]`, so that filtered tables stay aligned in snapshots.
        Self { name: format!("q{}", &uuid::Uuid::new_v4().simple().to_string()[..7]) }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.name)
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        delete_keys(REDIS_URL, &self.name);
    }
}

/// Deletes every key under `prefix:` on the Redis at `url`.
fn delete_keys(url: &str, prefix: &str) {
    let Ok(mut connection) = redis::Client::open(url).and_then(|client| client.get_connection()) else { return };
    let keys: Vec<String> = match connection.scan_match::<_, String>(format!("{prefix}:*")) {
        Ok(keys) => keys.filter_map(Result::ok).collect(),
        Err(_) => return,
    };
    for chunk in keys.chunks(1000) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut connection);
    }
}

/// Runs a Python `bullmq` script with `url`, `prefix` and `args` in `sys.argv[1..]`; returns its
/// stdout.
fn python(script: &str, url: &str, prefix: &str, args: &[&str]) -> String {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(python.exists(), "no Python venv with bullmq at {}: run `script/bootstrap`", python.display());
    let script = format!("{PYTHON_PRELUDE}{script}");
    let output =
        Command::new(python).arg("-c").arg(script).arg(url).arg(prefix).args(args).output().expect("run python");
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Starts a Python `bullmq` script as [`python`] does, without waiting for it; it is killed on drop.
struct PythonProcess {
    child: Child,
}

impl PythonProcess {
    /// Starts `script`; returns once it prints its first line.
    fn start(script: &str, prefix: &str, args: &[&str]) -> Self {
        let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        assert!(python.exists(), "no Python venv with bullmq at {}: run `script/bootstrap`", python.display());
        let mut child = Command::new(python)
            .arg("-c")
            .arg(format!("{PYTHON_PRELUDE}{script}"))
            .arg(REDIS_URL)
            .arg(prefix)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run python");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read python's output");
        assert_eq!(line.trim(), "ready", "python did not start");
        Self { child }
    }
}

impl Drop for PythonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PYTHON_PRELUDE: &str = r#"
import asyncio, json, sys, time
from bullmq import Queue, Worker
url, prefix = sys.argv[1], sys.argv[2]
opts = {"connection": url, "prefix": prefix}
"#;

/// argv[3]: `[{"queue", "name", "data", "opts"}]`; adds each job.
const ADD_JOBS: &str = r#"
async def main():
    queues = {}
    for job in json.loads(sys.argv[3]):
        queue = queues.setdefault(job["queue"], Queue(job["queue"], opts))
        await queue.add(job.get("name", "execute-workflow"), job["data"], job.get("opts", {}))
    for queue in queues.values():
        await queue.close()
asyncio.run(main())
"#;

/// argv[3]: queue, argv[4]: how many failed jobs to wait for. A worker whose every job raises.
const FAIL_JOBS: &str = r#"
async def main():
    queue = Queue(sys.argv[3], opts)
    async def process(job, token):
        raise Exception("boom")
    worker = Worker(sys.argv[3], process, opts)
    deadline = time.monotonic() + 20
    while (await queue.getJobCounts("failed"))["failed"] < int(sys.argv[4]):
        assert time.monotonic() < deadline, "jobs did not fail in time"
        await asyncio.sleep(0.05)
    await worker.close()
    await queue.close()
asyncio.run(main())
"#;

/// argv[3]: queue, argv[4]: seconds, argv[5]: a job id, or "" to run for the whole time. A worker
/// that completes its jobs; prints the ids it processed.
const RUN_WORKER: &str = r#"
async def main():
    queue = Queue(sys.argv[3], opts)
    processed = []
    async def process(job, token):
        processed.append(job.id)
        return "done"
    worker = Worker(sys.argv[3], process, opts)
    deadline = time.monotonic() + float(sys.argv[4])
    while time.monotonic() < deadline and (not sys.argv[5] or sys.argv[5] not in processed):
        await asyncio.sleep(0.05)
    await worker.close()
    await queue.close()
    print(json.dumps(processed))
asyncio.run(main())
"#;

/// argv[3]: `[[queue, worker name or ""]]`. Python workers that wait for jobs (and take none that
/// come), until killed.
const IDLE_WORKERS: &str = r#"
async def main():
    async def process(job, token):
        await asyncio.sleep(3600)
    workers = [Worker(queue, process, {**opts, **({"name": name} if name else {})})
               for queue, name in json.loads(sys.argv[3])]
    print("ready", flush=True)
    await asyncio.sleep(120)
asyncio.run(main())
"#;

/// argv[3]: queue, argv[4..]: job ids. Prints `{"paused": bool, "states": {id: state}}` as
/// Python's `bullmq` sees them.
const STATES: &str = r#"
async def main():
    queue = Queue(sys.argv[3], opts)
    states = {id: await queue.getJobState(id) for id in sys.argv[4:]}
    print(json.dumps({"paused": await queue.isPaused(), "states": states}))
    await queue.close()
asyncio.run(main())
"#;

fn add_jobs(prefix: &Prefix, jobs: &Value) {
    python(ADD_JOBS, REDIS_URL, &prefix.name, &[&jobs.to_string()]);
}

fn fail_jobs(prefix: &Prefix, queue: &str, count: usize) {
    python(FAIL_JOBS, REDIS_URL, &prefix.name, &[queue, &count.to_string()]);
}

fn states(prefix: &Prefix, ids: &[&str]) -> Value {
    let mut args = vec!["workflow-queue"];
    args.extend_from_slice(ids);
    serde_json::from_str(&python(STATES, REDIS_URL, &prefix.name, &args)).unwrap()
}

/// Runs masstockctl with `REDIS_URL` pointing at the bootstrap's Redis.
fn queue(sandbox: &Sandbox, args: &[&str]) -> Run {
    let mut full = vec!["queue"];
    full.extend_from_slice(args);
    sandbox.run_with_env(&full, &[("NO_COLOR", "1"), ("REDIS_URL", REDIS_URL)])
}

fn json_of(run: &Run) -> Value {
    assert_eq!(run.status, 0, "{}", run.transcript());
    serde_json::from_str(&run.stdout).unwrap_or_else(|error| panic!("{error}: {}", run.transcript()))
}

/// Snapshot filters: the test's prefix, ages that move with the clock, client addresses.
fn filters(prefix: &Prefix) -> Vec<(String, String)> {
    vec![
        (regex_escape(&prefix.name), "[PREFIX]".to_owned()),
        (r"(open |idle |beat |\()\d+[dhms](\d\d[hms])?".to_owned(), "$1[AGE]".to_owned()),
        (r"127\.0\.0\.1:\d+".to_owned(), "[ADDR]".to_owned()),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z".to_owned(), "[TIME]".to_owned()),
    ]
}

fn regex_escape(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_string() } else { format!("\\{c}") }).collect()
}

macro_rules! assert_filtered_snapshot {
    ($prefix:expr, $name:expr, $value:expr) => {
        let filters = filters($prefix);
        let filters: Vec<(&str, &str)> = filters.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        insta::with_settings!({ filters => filters }, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

/// Adds our own kind of job, as the API does.
fn add_workflow_job(prefix: &Prefix, premium: bool) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let queue =
            masstock_queue::WorkflowQueue::connect(REDIS_URL, &prefix.name, Duration::from_secs(5)).await.unwrap();
        let job = masstock_queue::WorkflowJob {
            execution_id: uuid::Uuid::new_v4(),
            prompts: vec!["a red fox".into()],
            config: json!({ "aspectRatio": "1:1" }),
        };
        queue.add(&job, premium, Duration::from_secs(5)).await.unwrap()
    })
}

#[test]
fn ls_counts_jobs_finds_the_oldest_waiting_one_and_sees_workers() {
    let prefix = Prefix::new();
    let mut redis = redis_connection();
    // A failed job on a second queue, written by Python's worker.
    add_jobs(&prefix, &json!([{ "queue": "other-queue", "data": { "n": 1 }, "opts": { "jobId": "doomed" } }]));
    fail_jobs(&prefix, "other-queue", 1);
    // On ours: a premium and a standard job from masstock-queue, a plain and a delayed one from Python.
    let premium = add_workflow_job(&prefix, true);
    let standard = add_workflow_job(&prefix, false);
    add_jobs(
        &prefix,
        &json!([
            { "queue": "workflow-queue", "data": { "n": 2 }, "opts": { "jobId": "plain" } },
            { "queue": "workflow-queue", "data": { "n": 3 }, "opts": { "jobId": "later", "delay": 3_600_000 } },
        ]),
    );
    // The oldest waiting job sits in the second priority band: found only by walking the bands.
    let now = now_ms();
    for (id, age_ms) in [(premium.as_str(), 60_000), (standard.as_str(), 7_200_000), ("plain", 10_000)] {
        let _: () = redis.hset(prefix.key(&format!("workflow-queue:{id}")), "timestamp", now - age_ms).unwrap();
    }
    // Our worker's heartbeat, and a connection named as BullMQ's workers name theirs.
    let beat = json!({ "worker_id": "worker-1", "host": "web-1", "pid": 42, "concurrency": 3, "active": 1,
                       "started_at_ms": now - 60_000, "at_ms": now });
    let _: () = redis.pset_ex(prefix.key("workflow-queue:heartbeat:worker-1"), beat.to_string(), 30_000).unwrap();
    let mut worker = redis_connection();
    let worker_name = prefix.key("d29ya2Zsb3ctcXVldWU=:w:test-worker");
    let _: () = redis::cmd("CLIENT").arg("SETNAME").arg(&worker_name).query(&mut worker).unwrap();

    let sandbox = Sandbox::new();
    let run = queue(&sandbox, &["ls", "--prefix", &prefix.name]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    assert_filtered_snapshot!(&prefix, "ls_text", run.transcript());

    let document = json_of(&queue(&sandbox, &["ls", "--prefix", &prefix.name, "--json"]));
    let queues = document["queues"].as_array().unwrap();
    let names: Vec<&str> = queues.iter().map(|queue| queue["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["other-queue", "workflow-queue"], "the heartbeat is no queue: {document:#}");
    let other = &queues[0];
    assert_eq!(other["prefix"], json!(prefix.name));
    assert_eq!(other["counts"]["failed"], 1);
    assert_eq!(other["oldest_waiting_age_s"], Value::Null);
    assert_eq!(other["workers"], json!([]));
    let ours = &queues[1];
    assert_eq!(
        ours["counts"],
        json!({ "wait": 1, "prioritized": 2, "active": 0, "delayed": 1, "completed": 0, "failed": 0, "paused": 0,
                "waiting_children": 0 })
    );
    let oldest = ours["oldest_waiting_age_s"].as_u64().unwrap();
    assert!((7_200..7_260).contains(&oldest), "{oldest}");
    assert_eq!(ours["paused"], false);
    let workers = ours["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{document:#}");
    assert_eq!(workers[0]["name"], json!(worker_name));
    assert!(workers[0]["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(workers[0]["age_s"].is_u64() && workers[0]["idle_s"].is_u64());
    let heartbeats = ours["heartbeats"].as_array().unwrap();
    assert_eq!(heartbeats.len(), 1);
    assert_eq!(heartbeats[0]["worker_id"], "worker-1");
    assert_eq!(heartbeats[0]["host"], "web-1");
    assert_eq!((heartbeats[0]["pid"].as_u64(), heartbeats[0]["concurrency"].as_u64()), (Some(42), Some(3)));
    assert!(heartbeats[0]["age_s"].as_u64().unwrap() < 60);

    // Reading changed nothing: constructing a `bullmq::Queue` would have recorded `library` in the
    // meta hash of the queue that only Python wrote.
    let library: Option<String> = redis.hget(prefix.key("other-queue:meta"), "library").unwrap();
    assert_eq!(library, None);
    drop(worker);
}

#[test]
fn ls_without_queues_says_so() {
    let prefix = Prefix::new();
    let sandbox = Sandbox::new();
    let run = queue(&sandbox, &["ls", "--prefix", &prefix.name]);
    assert_filtered_snapshot!(&prefix, "ls_empty", run.transcript());
    assert_eq!(json_of(&queue(&sandbox, &["ls", "--prefix", &prefix.name, "--json"])), json!({ "queues": [] }));
}

/// The names `CLIENT LIST` shows for connections, polled until `expected` are all there.
fn wait_for_client_names(expected: &[String]) {
    let mut redis = redis_connection();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut redis).unwrap();
        let names: Vec<&str> =
            list.lines().filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("name="))).collect();
        if expected.iter().all(|name| names.contains(&name.as_str())) {
            return;
        }
        assert!(Instant::now() < deadline, "no connection named {expected:?} in {names:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ls_sees_python_workers() {
    let prefix = Prefix::new();
    add_jobs(&prefix, &json!([{ "queue": "workflow-queue", "data": {}, "opts": { "jobId": "waiting" } }]));
    // Python 3.4.4 names its connections `<prefix>:<queue>[:w:<name>]`, without base64. The queue
    // `idle-queue` has no key at all: only its worker's connection names it.
    let workers = json!([["workflow-queue", "py-1"], ["idle-queue", ""]]).to_string();
    let _python = PythonProcess::start(IDLE_WORKERS, &prefix.name, &[&workers]);
    let named = prefix.key("workflow-queue:w:py-1");
    let unnamed = prefix.key("idle-queue");
    wait_for_client_names(&[named.clone(), unnamed.clone()]);

    let sandbox = Sandbox::new();
    let document = json_of(&queue(&sandbox, &["ls", "--prefix", &prefix.name, "--json"]));
    let queues = document["queues"].as_array().unwrap();
    let names: Vec<&str> = queues.iter().map(|queue| queue["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["idle-queue", "workflow-queue"], "{document:#}");
    for (queue, name) in [(&queues[0], &unnamed), (&queues[1], &named)] {
        let workers = queue["workers"].as_array().unwrap();
        assert!(!workers.is_empty(), "{document:#}");
        assert!(workers.iter().all(|worker| worker["name"] == json!(name)), "{document:#}");
    }
    let counts = &queues[1]["counts"];
    assert_eq!(counts["wait"].as_u64().unwrap() + counts["active"].as_u64().unwrap(), 1, "{document:#}");
}

/// Sets the creation time of jobs to `age_ms` before now.
fn set_created(prefix: &Prefix, queue: &str, ages: &[(&str, u64)]) {
    let mut redis = redis_connection();
    let now = now_ms();
    for (id, age_ms) in ages {
        let _: () = redis.hset(prefix.key(&format!("{queue}:{id}")), "timestamp", now - age_ms).unwrap();
    }
}

#[test]
fn ls_finds_the_oldest_waiting_job_whatever_the_order() {
    let prefix = Prefix::new();
    let sandbox = Sandbox::new();
    // A retried job keeps its creation time but goes to the end of its band, behind `fresh`.
    add_jobs(&prefix, &json!([{ "queue": "banded", "data": {}, "opts": { "jobId": "old", "priority": 2 } }]));
    fail_jobs(&prefix, "banded", 1);
    add_jobs(
        &prefix,
        &json!([
            { "queue": "banded", "data": {}, "opts": { "jobId": "fresh", "priority": 2 } },
            { "queue": "banded", "data": {}, "opts": { "jobId": "premium", "priority": 1 } },
        ]),
    );
    set_created(&prefix, "banded", &[("old", 7_200_000), ("premium", 60_000)]);
    let run = queue(&sandbox, &["retry", "old", "--prefix", &prefix.name, "--queue", "banded"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    // A LIFO job goes to the end of `wait` that workers take from, ahead of an older one.
    add_jobs(
        &prefix,
        &json!([
            { "queue": "lifo", "data": {}, "opts": { "jobId": "first" } },
            { "queue": "lifo", "data": {}, "opts": { "jobId": "second", "lifo": true } },
        ]),
    );
    set_created(&prefix, "lifo", &[("first", 10_800_000)]);
    // Job ids are any text: `SORT`'s pattern must find the hash of each.
    let odd_ids = ["a->b*c", "x:y", "{tag} with spaces", "ünïcødé", "#"];
    let jobs: Vec<Value> = odd_ids
        .iter()
        .map(|id| json!({ "queue": "odd", "data": {}, "opts": { "jobId": id, "priority": 1 } }))
        .collect();
    add_jobs(&prefix, &Value::Array(jobs));
    set_created(&prefix, "odd", &[("a->b*c", 14_400_000), ("x:y", 60_000), ("#", 120_000)]);

    let document = json_of(&queue(&sandbox, &["ls", "--prefix", &prefix.name, "--json"]));
    let oldest: BTreeMap<&str, u64> = document["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|queue| (queue["name"].as_str().unwrap(), queue["oldest_waiting_age_s"].as_u64().unwrap()))
        .collect();
    let within = |name: &str, seconds: u64| (seconds..seconds + 60).contains(&oldest[name]);
    assert!(within("banded", 7_200) && within("lifo", 10_800) && within("odd", 14_400), "{oldest:?}");
}

#[test]
fn ls_tolerates_job_ids_that_look_like_heartbeats() {
    let prefix = Prefix::new();
    // Python accepts the id; the job's hash sits where a heartbeat would.
    add_jobs(&prefix, &json!([{ "queue": "qq", "data": {}, "opts": { "jobId": "heartbeat:evil" } }]));
    let sandbox = Sandbox::new();
    let document = json_of(&queue(&sandbox, &["ls", "--prefix", &prefix.name, "--json"]));
    let queues = document["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 1, "{document:#}");
    assert_eq!((queues[0]["name"].as_str(), queues[0]["counts"]["wait"].as_u64()), (Some("qq"), Some(1)));
    assert_eq!(queues[0]["heartbeats"], json!([]));
}

#[test]
fn a_key_that_is_not_what_bullmq_writes_is_named_without_blaming_the_password() {
    let prefix = Prefix::new();
    let mut redis = redis_connection();
    let _: () = redis.hset(prefix.key("broken:meta"), "opts.maxLenEvents", 10_000).unwrap();
    let _: () = redis.set(prefix.key("broken:wait"), "not a list").unwrap();
    let sandbox = Sandbox::new();
    let run = queue(&sandbox, &["ls", "--prefix", &prefix.name]);
    assert_eq!(run.status, 1, "{}", run.transcript());
    assert!(!run.stderr.contains("password"), "{}", run.stderr);
    assert_filtered_snapshot!(&prefix, "ls_wrong_type", run.transcript());
}

#[test]
fn show_prints_what_bullmq_keeps_about_a_job() {
    let prefix = Prefix::new();
    let execution_id = "00000000-0000-4000-8000-000000000001";
    add_jobs(
        &prefix,
        &json!([{ "queue": "workflow-queue",
                  "data": { "executionId": execution_id, "prompts": ["a red fox"], "config": {} },
                  "opts": { "jobId": "doomed" } }]),
    );
    fail_jobs(&prefix, "workflow-queue", 1);
    let sandbox = Sandbox::new();

    let job = json_of(&queue(&sandbox, &["show", "doomed", "--prefix", &prefix.name, "--json"]));
    assert_eq!(job["id"], "doomed");
    assert_eq!(job["queue"], "workflow-queue");
    assert_eq!(job["name"], "execute-workflow");
    assert_eq!(job["state"], "failed");
    assert_eq!(job["data"], json!({ "executionId": execution_id, "prompts": ["a red fox"], "config": {} }));
    assert_eq!(job["options"]["jobId"], "doomed");
    assert_eq!(job["attempts_made"], 1);
    assert_eq!(job["failed_reason"], "boom");
    let trace = job["stacktrace"][0].as_str().unwrap();
    assert!(trace.contains("Exception: boom"), "{trace}");
    for time in ["created_at", "processed_at", "finished_at"] {
        assert!(job[time].as_str().unwrap().ends_with('Z'), "{time}: {job:#}");
    }
    assert!(job["finished_age_s"].as_u64().unwrap() < 60);
    assert_eq!(job["returnvalue"], Value::Null);

    // A job from masstock-queue, waiting in its priority band.
    let id = add_workflow_job(&prefix, true);
    let job = json_of(&queue(&sandbox, &["show", &id, "--prefix", &prefix.name, "--json"]));
    assert_eq!((job["state"].as_str(), job["priority"].as_u64()), (Some("prioritized"), Some(1)));
    assert_eq!(job["data"]["executionId"], json!(id));
    assert_eq!(job["processed_at"], Value::Null);

    // The text, on a job whose every field is pinned.
    add_jobs(
        &prefix,
        &json!([{ "queue": "workflow-queue", "data": { "executionId": execution_id, "prompts": ["a cat"] },
                  "opts": { "jobId": "pinned", "priority": 2, "attempts": 3 } }]),
    );
    let run = queue(&sandbox, &["show", "pinned", "--prefix", &prefix.name]);
    assert_filtered_snapshot!(&prefix, "show_text", run.transcript());

    let run = queue(&sandbox, &["show", "no-such-job", "--prefix", &prefix.name]);
    assert_eq!(run.status, 1);
    assert_filtered_snapshot!(&prefix, "show_unknown_job", run.transcript());
    // The queue's own keys are not jobs.
    for not_a_job in ["meta", "failed"] {
        let run = queue(&sandbox, &["show", not_a_job, "--prefix", &prefix.name]);
        assert!(run.status == 1 && run.stderr.contains("no job"), "{}", run.transcript());
    }
}

#[test]
fn retry_sends_failed_jobs_back_one_or_all() {
    let prefix = Prefix::new();
    let jobs: Vec<Value> = ["f1", "f2", "f3"]
        .iter()
        .map(|id| json!({ "queue": "workflow-queue", "data": { "id": id }, "opts": { "jobId": id } }))
        .collect();
    add_jobs(&prefix, &Value::Array(jobs));
    fail_jobs(&prefix, "workflow-queue", 3);
    let sandbox = Sandbox::new();

    let run = queue(&sandbox, &["retry", "f1", "--prefix", &prefix.name]);
    assert_filtered_snapshot!(&prefix, "retry_one", run.transcript());
    assert_eq!(states(&prefix, &["f1", "f2"])["states"], json!({ "f1": "waiting", "f2": "failed" }));
    // The operator's retry gives the job all its attempts again.
    let job = json_of(&queue(&sandbox, &["show", "f1", "--prefix", &prefix.name, "--json"]));
    assert_eq!(job["attempts_made"], 0, "{job:#}");

    let run = queue(&sandbox, &["retry", "f1", "--prefix", &prefix.name]);
    assert_filtered_snapshot!(&prefix, "retry_a_waiting_job", run.transcript());
    let run = queue(&sandbox, &["retry", "nope", "--prefix", &prefix.name]);
    assert_eq!(run.status, 1, "{}", run.transcript());
    assert!(run.stderr.contains("no job `nope`"), "{}", run.stderr);
    let run = queue(&sandbox, &["retry", "--prefix", &prefix.name]);
    assert_eq!(run.status, 2, "neither an id nor --failed: {}", run.transcript());

    let retried = json_of(&queue(&sandbox, &["retry", "--failed", "--prefix", &prefix.name, "--json"]));
    assert_eq!(retried, json!({ "prefix": prefix.name, "queue": "workflow-queue", "retried": 2, "gone": 0 }));
    let seen = states(&prefix, &["f1", "f2", "f3"]);
    assert_eq!(seen["states"], json!({ "f1": "waiting", "f2": "waiting", "f3": "waiting" }));
    let run = queue(&sandbox, &["retry", "--failed", "--prefix", &prefix.name]);
    assert_filtered_snapshot!(&prefix, "retry_none_failed", run.transcript());
}

#[test]
fn retry_failed_keeps_priorities_and_gives_jobs_their_attempts_again() {
    let prefix = Prefix::new();
    // A standard job that failed both its attempts, then a premium job that waits.
    add_jobs(
        &prefix,
        &json!([{ "queue": "workflow-queue", "data": {},
                  "opts": { "jobId": "standard-failed", "priority": 2, "attempts": 2 } }]),
    );
    fail_jobs(&prefix, "workflow-queue", 1);
    add_jobs(
        &prefix,
        &json!([{ "queue": "workflow-queue", "data": {}, "opts": { "jobId": "premium", "priority": 1 } }]),
    );
    let sandbox = Sandbox::new();
    let before = json_of(&queue(&sandbox, &["show", "standard-failed", "--prefix", &prefix.name, "--json"]));
    assert_eq!(before["attempts_made"], 2);

    let retried = json_of(&queue(&sandbox, &["retry", "--failed", "--prefix", &prefix.name, "--json"]));
    assert_eq!(retried["retried"], 1);
    let job = json_of(&queue(&sandbox, &["show", "standard-failed", "--prefix", &prefix.name, "--json"]));
    assert_eq!((job["state"].as_str(), job["priority"].as_u64()), (Some("prioritized"), Some(2)), "{job:#}");
    assert_eq!(job["attempts_made"], 0, "{job:#}");
    // One Python worker at a time: the premium job first, as if nothing had failed.
    let processed = python(RUN_WORKER, REDIS_URL, &prefix.name, &["workflow-queue", "20", "standard-failed"]);
    assert_eq!(processed.trim(), r#"["premium", "standard-failed"]"#);
}

/// `doctor` groups the last day's failures by cause from `Inspector::recent_failures`: the jobs
/// Python's `bullmq` failed come back newest first, with their reason, and an older window start
/// than a job's failure leaves it out.
#[test]
fn recent_failures_are_read_newest_first_with_their_reason() {
    let prefix = Prefix::new();
    let jobs: Vec<Value> = ["r1", "r2", "r3"]
        .iter()
        .map(|id| json!({ "queue": "workflow-queue", "data": { "id": id }, "opts": { "jobId": id } }))
        .collect();
    add_jobs(&prefix, &Value::Array(jobs));
    let before = now_ms();
    fail_jobs(&prefix, "workflow-queue", 3);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let read = |since: u64, limit: usize| {
        runtime.block_on(async {
            let mut inspector =
                masstock_queue::admin::Inspector::connect(REDIS_URL, Duration::from_secs(5)).await.expect("connect");
            inspector.recent_failures(&prefix.name, "workflow-queue", since, limit).await.expect("recent failures")
        })
    };
    let failures = read(before.saturating_sub(1_000), 100);
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(failures.iter().all(|failure| failure.reason == "boom"), "{failures:?}");
    let times: Vec<u64> = failures.iter().map(|failure| failure.failed_at_ms.expect("a time")).collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "newest first: {times:?}");
    assert!(times.iter().all(|time| *time >= before.saturating_sub(1_000)), "{times:?} after {before}");
    assert_eq!(read(before.saturating_sub(1_000), 2).len(), 2, "the limit holds");
    assert_eq!(read(now_ms() + 60_000, 100), Vec::new(), "nothing failed after the window starts");
}

#[test]
fn clean_removes_finished_jobs_older_than_a_duration() {
    let prefix = Prefix::new();
    add_jobs(
        &prefix,
        &json!([
            { "queue": "workflow-queue", "data": {}, "opts": { "jobId": "old" } },
            { "queue": "workflow-queue", "data": {}, "opts": { "jobId": "recent" } },
        ]),
    );
    fail_jobs(&prefix, "workflow-queue", 2);
    // `old` failed two hours ago.
    let mut redis = redis_connection();
    let two_hours_ago = now_ms() - 7_200_000;
    let _: () = redis.zadd(prefix.key("workflow-queue:failed"), "old", two_hours_ago).unwrap();
    let _: () = redis.hset(prefix.key("workflow-queue:old"), "finishedOn", two_hours_ago).unwrap();
    let sandbox = Sandbox::new();

    let run = queue(&sandbox, &["clean", "--state", "failed", "--older-than", "1h", "--prefix", &prefix.name]);
    assert_filtered_snapshot!(&prefix, "clean_failed", run.transcript());
    let exists: (bool, bool) = (
        redis.exists(prefix.key("workflow-queue:old")).unwrap(),
        redis.exists(prefix.key("workflow-queue:recent")).unwrap(),
    );
    assert_eq!(exists, (false, true));

    let args = ["clean", "--state", "completed", "--older-than", "0s", "--prefix", &prefix.name, "--json"];
    assert_eq!(json_of(&queue(&sandbox, &args))["removed"], 0);
    let args = ["clean", "--state", "failed", "--older-than", "0s", "--prefix", &prefix.name, "--json"];
    assert_eq!(
        json_of(&queue(&sandbox, &args)),
        json!({ "prefix": prefix.name, "queue": "workflow-queue", "state": "failed", "older_than": "0s", "removed": 1 })
    );
    let failed: u64 = redis.zcard(prefix.key("workflow-queue:failed")).unwrap();
    assert_eq!(failed, 0);

    let run = queue(&sandbox, &["clean", "--state", "failed", "--older-than", "5x", "--prefix", &prefix.name]);
    assert_filtered_snapshot!(&prefix, "clean_bad_duration", run.transcript());
}

#[test]
fn pause_and_resume_hold_python_workers() {
    let prefix = Prefix::new();
    add_jobs(&prefix, &json!([{ "queue": "workflow-queue", "data": {}, "opts": { "jobId": "held" } }]));
    let sandbox = Sandbox::new();
    let mut redis = redis_connection();

    let run = queue(&sandbox, &["pause", "--prefix", &prefix.name]);
    assert_filtered_snapshot!(&prefix, "pause", run.transcript());
    let paused: Option<String> = redis.hget(prefix.key("workflow-queue:meta"), "paused").unwrap();
    assert_eq!(paused.as_deref(), Some("1"));
    // Opening the queue for the repair left the meta hash as Python wrote it (without `library`).
    let library: Option<String> = redis.hget(prefix.key("workflow-queue:meta"), "library").unwrap();
    assert_eq!(library, None);
    assert_eq!(states(&prefix, &["held"]), json!({ "paused": true, "states": { "held": "waiting" } }));
    let processed = python(RUN_WORKER, REDIS_URL, &prefix.name, &["workflow-queue", "2", ""]);
    assert_eq!(processed.trim(), "[]", "a paused queue gives its worker nothing");
    let listed = json_of(&queue(&sandbox, &["ls", "--prefix", &prefix.name, "--json"]));
    assert_eq!(listed["queues"][0]["paused"], true);
    let again = json_of(&queue(&sandbox, &["pause", "--prefix", &prefix.name, "--json"]));
    assert_eq!(again, json!({ "prefix": prefix.name, "queue": "workflow-queue", "paused": true, "was_paused": true }));

    let run = queue(&sandbox, &["resume", "--prefix", &prefix.name]);
    assert_filtered_snapshot!(&prefix, "resume", run.transcript());
    assert_eq!(states(&prefix, &["held"])["paused"], false);
    let processed = python(RUN_WORKER, REDIS_URL, &prefix.name, &["workflow-queue", "20", "held"]);
    assert_eq!(processed.trim(), r#"["held"]"#);

    // BullMQ holds a queue paused while its meta hash has the field, whatever its value.
    let _: () = redis.hset(prefix.key("workflow-queue:meta"), "paused", "0").unwrap();
    assert_eq!(states(&prefix, &[])["paused"], true, "as Python sees it");
    let listed = json_of(&queue(&sandbox, &["ls", "--prefix", &prefix.name, "--json"]));
    assert_eq!(listed["queues"][0]["paused"], true);
    let resumed = json_of(&queue(&sandbox, &["resume", "--prefix", &prefix.name, "--json"]));
    assert_eq!(resumed["was_paused"], true);
}

#[test]
fn repairs_refuse_a_queue_that_does_not_exist() {
    let prefix = Prefix::new();
    let sandbox = Sandbox::new();
    let run = queue(&sandbox, &["pause", "--prefix", &prefix.name, "--queue", "typo-queue"]);
    assert_filtered_snapshot!(&prefix, "unknown_queue", run.transcript());
    let mut redis = redis_connection();
    let created: Vec<String> = redis.scan_match::<_, String>(prefix.key("*")).unwrap().filter_map(Result::ok).collect();
    assert_eq!(created, Vec::<String>::new(), "refusing must write nothing");
}

/// A `redis-server` of the test's own, with a password, stopped on drop.
struct PasswordRedis {
    child: Child,
    port: u16,
}

impl PasswordRedis {
    fn start(password: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--requirepass", password])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run redis-server ({error}): run `script/bootstrap`"));
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped deploy.toml, with the local environment's redis publishing `port`.
fn local_sandbox_publishing(port: u16) -> Sandbox {
    let build = "build = { host_package = \"redis-server\" }";
    Sandbox::edited(build, &format!("{build}\nports = [{{ host = {port}, container = 6379 }}]"))
}

#[test]
fn redis_is_found_through_deploy_toml_and_the_env_file() {
    let password = "pw-from-the-env-file-7f3a";
    let server = PasswordRedis::start(password);
    let sandbox = local_sandbox_publishing(server.port);

    // Without the env file, the password is missing.
    let run = sandbox.run(&["--env", "local", "queue", "ls"]);
    assert_eq!(run.status, 1, "{}", run.transcript());
    insta::assert_snapshot!("deploy_toml_without_env_file", run.transcript());

    fs_err::write(sandbox.path(".env.local"), format!("REDIS_PASSWORD={password}\n")).unwrap();
    let url = format!("redis://:{password}@127.0.0.1:{}", server.port);
    let mut connection = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
    let _: () = connection.hset("found-it:workflow-queue:meta", "opts.maxLenEvents", 10_000).unwrap();

    let run = sandbox.run(&["--env", "local", "-v", "queue", "ls", "--prefix", "found-it", "--json"]);
    let document = json_of(&run);
    assert_eq!(document["queues"][0]["name"], "workflow-queue", "{document:#}");
    let shown = format!("redis at `redis://:***@127.0.0.1:{}`", server.port);
    assert!(run.stderr.contains(&shown), "{}", run.stderr);
    assert!(!run.stderr.contains(password) && !run.stdout.contains(password), "{}", run.transcript());

    // `REDIS_URL` wins over deploy.toml: the bootstrap's Redis has no `found-it` queue.
    let run = sandbox.run_with_env(
        &["--env", "local", "queue", "ls", "--prefix", "found-it", "--json"],
        &[("NO_COLOR", "1"), ("REDIS_URL", REDIS_URL)],
    );
    assert_eq!(json_of(&run), json!({ "queues": [] }));
}

#[test]
fn a_redis_the_host_cannot_reach_is_explained() {
    let sandbox = Sandbox::new();
    fs_err::write(sandbox.path(".env.production"), "REDIS_PASSWORD=secret-value-1234\n").unwrap();
    // A project no engine runs, whatever this machine deployed (the local stack is `masstock` too).
    let config = fs_err::read_to_string(sandbox.path("deploy.toml")).unwrap();
    fs_err::write(sandbox.path("deploy.toml"), config.replacen("name = \"masstock\"", "name = \"nowhere\"", 1))
        .unwrap();
    let run = sandbox.run(&["queue", "ls"]);
    assert_eq!(run.status, 1);
    insta::assert_snapshot!("production_redis_unreachable", run.transcript());
    assert!(!run.stderr.contains("secret-value-1234"));
}

#[test]
fn passwords_never_reach_the_output() {
    let sandbox = Sandbox::new();
    let mut transcripts = BTreeMap::new();
    // Every password below holds `ter2`, which must appear nowhere.
    for (name, url) in [
        ("refused", "redis://:hunter2-secret@127.0.0.1:1"),
        ("wrong_password", "redis://:hunter2-secret@127.0.0.1:6379"),
        ("slash", "redis://:hun/ter2@127.0.0.1:6379"),
        ("hash", "redis://:hun#ter2@127.0.0.1:6379"),
        ("question_mark", "redis://:hun?ter2@127.0.0.1:6379"),
        ("at_sign", "redis://user:hun@ter2@127.0.0.1:1"),
        ("no_scheme_separator", "redis//:hunter2@127.0.0.1:6379"),
        ("one_slash", "redis:/:hunter2@127.0.0.1:6379"),
        ("unix_query", "redis+unix:///tmp/no-such.sock?pass=hunter2"),
        ("unix_password_query", "unix:///tmp/no-such.sock?db=0&password=hunter2"),
    ] {
        for command in [&["ls"][..], &["show", "some-job"], &["retry", "some-job"], &["retry", "--failed"]] {
            for json in [false, true] {
                let mut args = vec!["-v", "queue"];
                args.extend_from_slice(command);
                if json {
                    args.push("--json");
                }
                let run = sandbox.run_with_env(&args, &[("NO_COLOR", "1"), ("REDIS_URL", url)]);
                assert_eq!(run.status, 1, "{url}: {}", run.transcript());
                let transcript = run.transcript();
                assert!(!transcript.contains("ter2"), "{url}: {transcript}");
                assert!(transcript.contains("***"), "{url}: {transcript}");
                transcripts
                    .insert(format!("{name}_{}{}", command.join("_"), if json { "_json" } else { "" }), transcript);
            }
        }
    }
    insta::assert_snapshot!("password_redacted_refused", transcripts["refused_ls"]);
}

#[test]
fn a_secret_that_breaks_the_url_is_refused_unprinted() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sandbox = local_sandbox_publishing(port);
    fs_err::write(sandbox.path(".env.local"), "REDIS_PASSWORD=ab#cdSECRET\n").unwrap();
    for json in [false, true] {
        let mut args = vec!["--env", "local", "-v", "queue", "ls"];
        if json {
            args.push("--json");
        }
        let run = sandbox.run(&args);
        assert_eq!(run.status, 2, "{}", run.transcript());
        assert!(!run.transcript().contains("cdSECRET"), "{}", run.transcript());
        if !json {
            insta::assert_snapshot!("deploy_toml_secret_breaks_url", run.transcript());
        }
    }
}

#[test]
fn tls_urls_fail_without_panicking() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("rediss://127.0.0.1:{port}");
    let run = Sandbox::new().run_with_env(&["queue", "ls"], &[("NO_COLOR", "1"), ("REDIS_URL", &url)]);
    assert_eq!(run.status, 1, "{}", run.transcript());
    insta::with_settings!({ filters => vec![(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]")] }, {
        insta::assert_snapshot!("tls_refused", run.transcript());
    });
}
