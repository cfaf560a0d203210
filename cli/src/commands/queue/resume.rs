//! `masstockctl queue resume`: let workers take jobs again.

use std::process::ExitCode;

use crate::commands::queue::{target, with_admin, QueueSelection};
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// Resume a paused queue
///
/// Runs BullMQ's `Queue.resume`: workers take waiting jobs again.
///
/// `--json` prints `{"prefix", "queue", "paused": false, "was_paused"}`.
///
/// Example: `masstockctl queue resume`
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub selection: QueueSelection,
}

pub fn cmd_queue_resume(global: &GlobalArgs, ui: &Ui, args: &ResumeArgs) -> Result<ExitCode, CommandError> {
    let target = target(global, ui)?;
    let selection = &args.selection;
    let was_paused = with_admin(&target, selection, async |admin| admin.resume().await)?;
    if ui.json {
        ui.json_document(&serde_json::json!({
            "prefix": selection.prefix,
            "queue": selection.queue,
            "paused": false,
            "was_paused": was_paused,
        }));
    } else if was_paused {
        ui.data(&format!("resumed `{}`\n", selection.qualified()));
    } else {
        ui.data(&format!("`{}` was not paused\n", selection.qualified()));
    }
    Ok(ExitCode::SUCCESS)
}
