//! `masstockctl queue show ID`: one job, everything BullMQ keeps about it.

use std::fmt::Write as _;
use std::process::ExitCode;

use masstock_queue::admin::{AdminError, Inspector, JobDetails};

use crate::commands::queue::{admin_error, target, QueueSelection};
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::health::now_ms;
use crate::queue_target::TIMEOUT;
use crate::ui::short_duration as age;
use crate::ui::Ui;

/// Show one job: state, data, options, attempts, progress, times, failure and result
///
/// Reads the job without changing it. The state follows BullMQ's `getState`: completed, failed,
/// delayed, prioritized, active, waiting, waiting-children. Times are UTC, with their age.
///
/// `--json` prints `{"prefix", "queue", "id", "name", "state", "data", "options", "attempts_made",
/// "attempts_started", "priority", "delay_ms", "progress", "created_at", "created_age_s",
/// "processed_at", "processed_age_s", "finished_at", "finished_age_s", "processed_by",
/// "failed_reason", "stacktrace": [...], "returnvalue"}`; times absent from the job are null.
///
/// Example: `masstockctl queue show 6f1c0a52-4a8e-4d1e-9f57-0b1f1b0c2d3e`
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The job's id (for our jobs, the execution id)
    pub id: String,
    #[command(flatten)]
    pub selection: QueueSelection,
}

pub fn cmd_queue_show(global: &GlobalArgs, ui: &Ui, args: &ShowArgs) -> Result<ExitCode, CommandError> {
    let target = target(global, ui)?;
    let selection = &args.selection;
    let job = crate::runtime::block_on(async {
        let mut inspector = Inspector::connect(target.url(), TIMEOUT).await?;
        inspector.job(&selection.prefix, &selection.queue, &args.id).await
    })?
    .and_then(|job| {
        job.ok_or_else(|| AdminError::NoSuchJob {
            prefix: selection.prefix.clone(),
            queue: selection.queue.clone(),
            id: args.id.clone(),
        })
    })
    .map_err(|error| admin_error(error, &target))?;

    let now = now_ms();
    if ui.json {
        ui.json_document(&document(selection, &job, now));
    } else {
        ui.data(&render(selection, &job, now));
    }
    Ok(ExitCode::SUCCESS)
}

/// `ms` as ISO-8601 UTC with milliseconds.
fn iso(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| ms.to_string(), |time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn age_of(ms: u64, now: u64) -> u64 {
    now.saturating_sub(ms) / 1000
}

fn document(selection: &QueueSelection, job: &JobDetails, now: u64) -> serde_json::Value {
    let at = |ms: Option<u64>| ms.map(iso);
    let age = |ms: Option<u64>| ms.map(|ms| age_of(ms, now));
    serde_json::json!({
        "prefix": selection.prefix,
        "queue": selection.queue,
        "id": job.id,
        "name": job.name,
        "state": job.state,
        "data": job.data,
        "options": job.options,
        "attempts_made": job.attempts_made,
        "attempts_started": job.attempts_started,
        "priority": job.priority,
        "delay_ms": job.delay_ms,
        "progress": job.progress,
        "created_at": at(job.created_at_ms),
        "created_age_s": age(job.created_at_ms),
        "processed_at": at(job.processed_at_ms),
        "processed_age_s": age(job.processed_at_ms),
        "finished_at": at(job.finished_at_ms),
        "finished_age_s": age(job.finished_at_ms),
        "processed_by": job.processed_by,
        "failed_reason": job.failed_reason,
        "stacktrace": job.stacktrace,
        "returnvalue": job.returnvalue,
    })
}

fn render(selection: &QueueSelection, job: &JobDetails, now: u64) -> String {
    let mut text = String::new();
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(text, "{name:<11}{value}");
    };
    field("job", &job.id);
    field("queue", &selection.qualified());
    field("name", &job.name);
    field("state", &job.state);
    let mut attempts = format!("{} made, {} started", job.attempts_made, job.attempts_started);
    if let Some(allowed) =
        job.options.get("attempts").and_then(serde_json::Value::as_u64).filter(|allowed| *allowed > 0)
    {
        let _ = write!(attempts, " (of {allowed})");
    }
    field("attempts", &attempts);
    field("priority", &job.priority.to_string());
    if job.delay_ms > 0 {
        field("delay", &format!("{}ms", job.delay_ms));
    }
    field("progress", &job.progress.to_string());
    for (name, ms) in
        [("created", job.created_at_ms), ("processed", job.processed_at_ms), ("finished", job.finished_at_ms)]
    {
        if let Some(ms) = ms {
            field(name, &format!("{} ({} ago)", iso(ms), age(age_of(ms, now))));
        }
    }
    if let Some(worker) = &job.processed_by {
        field("worker", worker);
    }
    if let Some(reason) = &job.failed_reason {
        field("failed", reason);
    }
    if let Some(value) = &job.returnvalue {
        field("returned", &value.to_string());
    }
    if !job.stacktrace.is_empty() {
        let _ = writeln!(text, "stacktrace");
        for (index, trace) in job.stacktrace.iter().enumerate() {
            if index > 0 {
                let _ = writeln!(text, "  --");
            }
            for line in trace.lines() {
                let _ = writeln!(text, "  {line}");
            }
        }
    }
    for (name, value) in [("options", &job.options), ("data", &job.data)] {
        let _ = writeln!(text, "{name}");
        let pretty = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
        for line in pretty.lines() {
            let _ = writeln!(text, "  {line}");
        }
    }
    text
}
