//! `masstockctl queue retry ID` and `queue retry --failed`: run failed jobs again.
//!
//! Repairs go through BullMQ's scripts, and keep priorities. `retry ID` and `retry --failed` are
//! both `Job.retry` (`reprocessJob`), which puts a job back into its priority band.
//! `Queue.retryJobs` (`moveJobsToWait`) is not used: it pushes every job onto `wait`, ahead of
//! every prioritized job, so retried standard jobs would overtake waiting premium ones. `--failed`
//! reads the ids of the jobs that failed before it started (pages of 1,000 that follow the score),
//! then retries them 64 at a time on the multiplexed connection; a job retried or removed by
//! someone else meanwhile counts as `gone`. Both use BullMQ's `resetAttemptsMade`: after its last
//! failure a job's `atm` equals `attempts`, so without it the retried job would get one try with
//! no backoff; an operator's retry gives it all its attempts again.

use std::process::ExitCode;

use crate::commands::queue::{target, with_admin, QueueSelection};
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::health::now_ms;
use crate::ui::Ui;

/// Run failed jobs again: one by id, or every failed job
///
/// Uses BullMQ's `Job.retry` (its `reprocessJob` script), job by job, for one job (failed or
/// completed) and for `--failed`: each job goes back into its priority band, premium before
/// standard, and emits `waiting`. A retried job starts over with all its attempts (BullMQ's
/// `resetAttemptsMade`), backoff included; without it, a job that failed its last attempt would
/// get a single try. `--failed` retries the jobs that had failed when it started; a job that
/// another client retries or removes meanwhile is counted as `gone`.
///
/// `--json` prints `{"prefix", "queue", "id", "from"}` for one job, `{"prefix", "queue",
/// "retried", "gone"}` (counts) for `--failed`.
///
/// Example: `masstockctl queue retry --failed`
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("jobs").required(true).args(["id", "failed"])))]
pub struct RetryArgs {
    /// The job to retry
    pub id: Option<String>,
    /// Retry every job that has failed
    #[arg(long)]
    pub failed: bool,
    #[command(flatten)]
    pub selection: QueueSelection,
}

pub fn cmd_queue_retry(global: &GlobalArgs, ui: &Ui, args: &RetryArgs) -> Result<ExitCode, CommandError> {
    let target = target(global, ui)?;
    let selection = &args.selection;
    if let Some(id) = &args.id {
        let retried = with_admin(&target, selection, async |admin| admin.retry_job(id).await)?;
        if ui.json {
            ui.json_document(&serde_json::json!({
                "prefix": selection.prefix,
                "queue": selection.queue,
                "id": retried.id,
                "from": retried.from,
            }));
        } else {
            ui.data(&format!(
                "retried job `{}` of `{}` (it had {})\n",
                retried.id,
                selection.qualified(),
                retried.from.as_str()
            ));
        }
    } else {
        let now = now_ms();
        let outcome = with_admin(&target, selection, async |admin| admin.retry_failed(now).await)?;
        let count = outcome.retried;
        if ui.json {
            ui.json_document(&serde_json::json!({
                "prefix": selection.prefix,
                "queue": selection.queue,
                "retried": count,
                "gone": outcome.gone,
            }));
        } else {
            let jobs = if count == 1 { "job" } else { "jobs" };
            ui.data(&format!("retried {count} failed {jobs} of `{}`\n", selection.qualified()));
            if outcome.gone > 0 {
                ui.info(format!(
                    "{} left the failed set before their turn (retried or removed by another client)",
                    outcome.gone
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
