//! `masstockctl queue retry ID` and `queue retry --failed`: run failed jobs again.

use std::process::ExitCode;

use crate::commands::queue::{now_ms, target, with_admin, QueueSelection};
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// Run failed jobs again: one by id, or every failed job
///
/// Uses BullMQ's own scripts: `Job.retry` for one job (failed or completed), `Queue.retryJobs`
/// for `--failed`. A retried job keeps its attempts made and goes back to waiting; `--failed`
/// puts the jobs in the `wait` list, as BullMQ does, so they run before prioritized ones.
///
/// `--json` prints `{"prefix", "queue", "id", "from"}` for one job, `{"prefix", "queue",
/// "retried"}` (a count) for `--failed`.
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
        let count = with_admin(&target, selection, async |admin| admin.retry_failed(now).await)?;
        if ui.json {
            ui.json_document(&serde_json::json!({
                "prefix": selection.prefix,
                "queue": selection.queue,
                "retried": count,
            }));
        } else {
            let jobs = if count == 1 { "job" } else { "jobs" };
            ui.data(&format!("retried {count} failed {jobs} of `{}`\n", selection.qualified()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
