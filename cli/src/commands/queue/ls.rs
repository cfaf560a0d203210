//! `masstockctl queue ls`: every queue under a prefix, its counts, oldest waiting job and workers.
//!
//! What it costs: `ls` finds the queues under one prefix with a single `SCAN` whose pattern,
//! `<prefix>:*:[hmi][ed]*`, catches `:meta`, `:id` and `:heartbeat:` keys in one pass over the
//! keyspace; that pass grows with the number of keys in the database, not in the queue (about
//! 0.45 s for 1,000,000 keys). The names of connected workers add the queues that have no key yet.
//! Then two pipelines go out together: a `MULTI` with the counts (`LLEN`, `ZCARD`),
//! `HEXISTS meta paused` (BullMQ's test: the field, whatever its value) and the heartbeats; and, per
//! waiting list (`wait`, `paused`, `prioritized`),
//! `SORT_RO <list> BY <prefix>:<queue>:*->timestamp LIMIT 0 8 GET <prefix>:<queue>:*->timestamp`.
//! Queue order is not creation order (a retried job keeps its `timestamp` but goes to the end of
//! its band; LIFO, promote), so the oldest waiting job is found by sorting on `timestamp` in Redis,
//! which costs O(n) server time per list (about 130 ms for 100,000 jobs, during which Redis serves
//! no one else) and sends back at most eight values. `SORT` substitutes each member for the `*` as
//! it is, so any job id works; it falls back to `SORT` on servers older than Redis 7 and to `ALPHA`
//! where a `timestamp` is not a number. On 100,000 jobs `ls` takes about 190 ms (`bench/queue.sh`).
//! `show` reads the job hash and the checks of BullMQ's `getStateV2` in one `MULTI`.
//!
//! Two kinds of worker: `workers` is BullMQ's own notion, connections that `CLIENT LIST` shows named
//! after the queue (`name`, `addr`, `age_s`, `idle_s`), `<prefix>:<base64(queue)>` for Node and
//! Rust, `<prefix>:<queue>` for Python 3.4.4, either alone or followed by `:w:<worker name>`; both
//! are matched. To find a queue from a name alone, a segment that is a queue found by its keys is
//! taken as it is; otherwise canonical base64 of a valid name is decoded. `heartbeats` is our
//! worker's notion, one per process (`worker_id`, `host`, `pid`, `concurrency`, `active`,
//! `started_at_ms`, `at_ms`, `age_s`). They stay apart because they count different things: a Node
//! or Python worker has connections and no heartbeat, while ours has both. A heartbeat is read
//! leniently: a missing field is `null`, and an unreadable value is listed with `unreadable`.

use std::fmt::Write as _;
use std::process::ExitCode;

use masstock_queue::admin::{Inspector, QueueSummary};

use crate::commands::queue::{admin_error, target};
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::health::now_ms;
use crate::queue_target::TIMEOUT;
use crate::ui::Ui;
use crate::ui::{short_duration as age, table};

/// List the queues in Redis with their counts, oldest waiting job and workers
///
/// Finds every queue under the prefix (by its `meta` and `id` keys, the worker heartbeats and the
/// names of connected workers) and reads, without changing anything: the jobs in each state, the
/// age of the oldest waiting job (waiting, prioritized or paused, by creation time), whether the
/// queue is paused, the worker connections (BullMQ names them after the queue:
/// `<prefix>:<base64 of the queue>` in Node and Rust, `<prefix>:<queue>` in Python) and our
/// workers' heartbeats. Queue names and prefixes holding `:` or `*` are not supported.
///
/// Redis is `REDIS_URL` when set, otherwise the `REDIS_URL` deploy.toml gives the worker, with the
/// password from the env file, reached through the port the redis service publishes.
///
/// `--json` prints `{"queues": [{"prefix", "name", "counts": {"wait", "prioritized", "active",
/// "delayed", "completed", "failed", "paused", "waiting_children"}, "oldest_waiting_age_s" (null
/// when nothing waits), "paused", "workers": [{"name", "addr", "age_s", "idle_s"}], "heartbeats":
/// [{"worker_id", "host", "pid", "concurrency", "active", "started_at_ms", "at_ms", "age_s"}]}]}`.
///
/// Example: `REDIS_URL=redis://:PASSWORD@172.18.0.2:6379 masstockctl queue ls`
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// BullMQ's key prefix to look under
    #[arg(long, value_name = "PREFIX", default_value = masstock_queue::PREFIX)]
    pub prefix: String,
}

pub fn cmd_queue_ls(global: &GlobalArgs, ui: &Ui, args: &LsArgs) -> Result<ExitCode, CommandError> {
    let target = target(global, ui)?;
    let queues = crate::runtime::block_on(async {
        let mut inspector = Inspector::connect(target.url(), TIMEOUT).await?;
        inspector.queues(&args.prefix, now_ms()).await
    })?
    .map_err(|error| admin_error(error, &target))?;

    if ui.json {
        ui.json_document(&serde_json::json!({ "queues": queues }));
    } else if queues.is_empty() {
        ui.info(format!("no queue under prefix `{}`", args.prefix));
    } else {
        ui.data(&render(&queues));
    }
    Ok(ExitCode::SUCCESS)
}

/// The table of queues, then each queue's workers.
fn render(queues: &[QueueSummary]) -> String {
    let headers = [
        "QUEUE",
        "WAIT",
        "PRIORITIZED",
        "ACTIVE",
        "DELAYED",
        "COMPLETED",
        "FAILED",
        "PAUSED",
        "OLDEST WAITING",
        "STATE",
        "WORKERS",
        "HEARTBEATS",
    ];
    let numeric = [false, true, true, true, true, true, true, true, false, false, true, true];
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|queue| {
            let counts = &queue.counts;
            vec![
                format!("{}:{}", queue.prefix, queue.name),
                counts.wait.to_string(),
                counts.prioritized.to_string(),
                counts.active.to_string(),
                counts.delayed.to_string(),
                counts.completed.to_string(),
                counts.failed.to_string(),
                counts.paused.to_string(),
                queue.oldest_waiting_age_s.map_or_else(|| "-".to_owned(), age),
                if queue.paused { "paused" } else { "running" }.to_owned(),
                queue.workers.len().to_string(),
                queue.heartbeats.len().to_string(),
            ]
        })
        .collect();
    let mut text = table(&headers, &numeric, &rows);
    for queue in queues.iter().filter(|queue| !queue.workers.is_empty() || !queue.heartbeats.is_empty()) {
        let _ = writeln!(text, "\nworkers of {}:{}", queue.prefix, queue.name);
        for worker in &queue.workers {
            let (open, idle) = (age(worker.age_s), age(worker.idle_s));
            let _ = writeln!(text, "  connection  {}  {}  open {open}  idle {idle}", worker.name, worker.addr);
        }
        for beat in &queue.heartbeats {
            if let Some(reason) = &beat.unreadable {
                let _ = writeln!(text, "  heartbeat   {}  unreadable: {reason}", beat.worker_id);
                continue;
            }
            let known = |value: Option<u64>| value.map_or_else(|| "?".to_owned(), |value| value.to_string());
            let _ = writeln!(
                text,
                "  heartbeat   {}  on {} (pid {})  {}/{} active  beat {} ago",
                beat.worker_id,
                beat.host.as_deref().unwrap_or("?"),
                known(beat.pid),
                known(beat.active),
                known(beat.concurrency),
                beat.age_s.map_or_else(|| "?".to_owned(), age),
            );
        }
    }
    text
}
