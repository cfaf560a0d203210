//! `masstockctl queue pause`: stop workers from taking new jobs.

use std::process::ExitCode;

use crate::commands::queue::{target, with_admin, QueueSelection};
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// Pause a queue: workers finish what they hold and take nothing new
///
/// Runs BullMQ's `Queue.pause`, which every client honours: jobs can still be added, and they
/// wait until `masstockctl queue resume`.
///
/// `--json` prints `{"prefix", "queue", "paused": true, "was_paused"}`.
///
/// Example: `masstockctl queue pause`
#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub selection: QueueSelection,
}

pub fn cmd_queue_pause(global: &GlobalArgs, ui: &Ui, args: &PauseArgs) -> Result<ExitCode, CommandError> {
    let target = target(global, ui)?;
    let selection = &args.selection;
    let was_paused = with_admin(&target, selection, async |admin| admin.pause().await)?;
    if ui.json {
        ui.json_document(&serde_json::json!({
            "prefix": selection.prefix,
            "queue": selection.queue,
            "paused": true,
            "was_paused": was_paused,
        }));
    } else if was_paused {
        ui.data(&format!("`{}` was already paused\n", selection.qualified()));
    } else {
        ui.data(&format!("paused `{}`\n", selection.qualified()));
    }
    Ok(ExitCode::SUCCESS)
}
