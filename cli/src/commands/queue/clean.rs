//! `masstockctl queue clean`: remove finished jobs older than a duration.
//!
//! `clean` removes by `finishedOn`, 10,000 jobs per script call, until a call removes fewer.

use std::process::ExitCode;
use std::str::FromStr;

use masstock_queue::admin::FinishedState;

use crate::commands::queue::{target, with_admin, QueueSelection};
use crate::commands::GlobalArgs;
use crate::config::units::Duration;
use crate::error::CommandError;
use crate::ui::Ui;

/// Remove completed or failed jobs that finished longer ago than a duration
///
/// Runs BullMQ's `Queue.clean`, in batches, until every matching job is gone, and says how many
/// it removed. Waiting and active jobs are never touched.
///
/// `--json` prints `{"prefix", "queue", "state", "older_than", "removed"}`, `older_than` as typed.
///
/// Example: `masstockctl queue clean --state failed --older-than 7d`
#[derive(Debug, clap::Args)]
pub struct CleanArgs {
    /// Which finished jobs to remove
    #[arg(long, value_enum)]
    pub state: CleanState,
    /// How long ago they must have finished, as in deploy.toml: `30m`, `12h`, `7d`; `0s` for all
    #[arg(long, value_name = "DURATION")]
    pub older_than: TypedDuration,
    #[command(flatten)]
    pub selection: QueueSelection,
}

/// A duration and the text it was typed as, which messages echo.
#[derive(Debug, Clone)]
pub struct TypedDuration {
    pub text: String,
    pub duration: Duration,
}

impl FromStr for TypedDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self { text: text.trim().to_owned(), duration: text.parse()? })
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CleanState {
    Completed,
    Failed,
}

impl From<CleanState> for FinishedState {
    fn from(state: CleanState) -> Self {
        match state {
            CleanState::Completed => Self::Completed,
            CleanState::Failed => Self::Failed,
        }
    }
}

pub fn cmd_queue_clean(global: &GlobalArgs, ui: &Ui, args: &CleanArgs) -> Result<ExitCode, CommandError> {
    let target = target(global, ui)?;
    let selection = &args.selection;
    let state = FinishedState::from(args.state);
    let older_than = &args.older_than.text;
    let grace = args.older_than.duration.0;
    let removed = with_admin(&target, selection, async |admin| admin.clean(state, grace).await)?;
    if ui.json {
        ui.json_document(&serde_json::json!({
            "prefix": selection.prefix,
            "queue": selection.queue,
            "state": state,
            "older_than": older_than,
            "removed": removed,
        }));
    } else {
        let jobs = if removed == 1 { "job" } else { "jobs" };
        ui.data(&format!(
            "removed {removed} {} {jobs} older than {older_than} from `{}`\n",
            state.as_str(),
            selection.qualified()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
