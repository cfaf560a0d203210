//! The queue machinery alone, for `bench/worker.sh`: a `WorkflowConsumer` whose handler does nothing.
//!
//! Usage: `noop_consumer <redis-url> <prefix> <concurrency> <jobs>`
//!
//! Takes jobs off `<prefix>:workflow-queue` with a handler that answers `{}` at once, until
//! `<jobs>` jobs have been completed, then prints one JSON line on stdout:
//! `{"jobs": …, "seconds": …, "jobs_per_second": …, "cpu_seconds": …}`, timed from the first job
//! taken to the last one moved to completed; `cpu_seconds` is the CPU time the process used over
//! that span (every thread, user and system; `null` where `/proc` is missing).
//! `bench/node-bullmq/consumer.js` does the same with Node's BullMQ and prints the same line.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use masstock_queue::consumer::{ConsumerOptions, WorkflowConsumer};
use tokio::sync::Notify;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the last jobs' completion is checked, once every job has been handed out.
const DRAIN_POLL: Duration = Duration::from_millis(1);

struct Arguments {
    redis_url: String,
    prefix: String,
    concurrency: usize,
    jobs: usize,
}

fn arguments() -> Result<Arguments, String> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [redis_url, prefix, concurrency, jobs] = arguments.as_slice() else {
        return Err("usage: noop_consumer <redis-url> <prefix> <concurrency> <jobs>".to_owned());
    };
    let count = |name: &str, text: &str| match text.parse::<usize>() {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(format!("{name} `{text}` is not a positive integer")),
    };
    Ok(Arguments {
        redis_url: redis_url.clone(),
        prefix: prefix.clone(),
        concurrency: count("concurrency", concurrency)?,
        jobs: count("jobs", jobs)?,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let arguments = match arguments() {
        Ok(arguments) => arguments,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&arguments).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(arguments: &Arguments) -> Result<(), String> {
    let started: Arc<OnceLock<(Instant, Option<f64>)>> = Arc::new(OnceLock::new());
    let taken = Arc::new(AtomicUsize::new(0));
    let all_taken = Arc::new(Notify::new());
    let handler = {
        let (started, taken, all_taken) = (Arc::clone(&started), Arc::clone(&taken), Arc::clone(&all_taken));
        let jobs = arguments.jobs;
        move |_job| {
            started.get_or_init(|| (Instant::now(), cpu_seconds()));
            if taken.fetch_add(1, Ordering::Relaxed) + 1 == jobs {
                all_taken.notify_one();
            }
            std::future::ready(Ok(serde_json::json!({})))
        }
    };
    let options = ConsumerOptions::new(&arguments.prefix, arguments.concurrency, "bench-noop");
    let consumer = WorkflowConsumer::start(&arguments.redis_url, &options, CONNECT_TIMEOUT, handler)
        .await
        .map_err(|error| error.to_string())?;

    // Every job has reached the handler once `taken` is `jobs`; a job stays among the active ones
    // until it has been moved to completed, so none left then means all are done.
    all_taken.notified().await;
    while consumer.active_jobs().await > 0 {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let (finished, cpu_finished) = (Instant::now(), cpu_seconds());
    let (started, cpu_started) = started.get().copied().ok_or("no job was taken")?;
    let seconds = finished.duration_since(started).as_secs_f64();
    let cpu = cpu_started.zip(cpu_finished).map(|(before, after)| after - before);
    consumer.close(Duration::from_secs(1)).await.map_err(|error| error.to_string())?;

    #[allow(clippy::cast_precision_loss, reason = "job counts are far below 2^52")]
    let jobs_per_second = arguments.jobs as f64 / seconds;
    let taken = taken.load(Ordering::Relaxed);
    let line = serde_json::json!({ "jobs": taken, "seconds": seconds, "jobs_per_second": jobs_per_second, "cpu_seconds": cpu });
    println!("{line}");
    Ok(())
}

/// CPU time this process has used so far, every thread, user and system: fields 14 and 15 of
/// `/proc/self/stat`, in the kernel's fixed unit for user space (`USER_HZ`, 100 per second).
fn cpu_seconds() -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = fs_err::read_to_string("/proc/self/stat").ok()?;
    // The command name, in parentheses, may hold spaces: count the fields after it.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    #[allow(clippy::cast_precision_loss, reason = "tick counts are far below 2^52")]
    Some((user + system) as f64 / USER_HZ)
}
