//! `masstockctl restore`: a snapshot put back on the running stack, or rehearsed in throwaway
//! containers (`--drill`).

use std::process::ExitCode;

use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// Put a backup back on the running stack, or prove it restores (`--drill`)
///
/// Without `--yes`, says what it would do and changes nothing. Before replacing anything it
/// takes a safety snapshot of what it replaces; it stops the services that use the component,
/// restores, starts them again health-gated and checks the figures recorded at backup time.
///
/// `--drill` restores into throwaway containers on an isolated network and a scratch database,
/// checks every recorded figure, and removes everything it created.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The components to restore: redis, uploads, n8n, postgres (a drill: default all)
    #[arg(value_name = "COMPONENT")]
    pub components: Vec<String>,
    /// A snapshot id (its run's snapshots are used), or `latest`
    #[arg(long, value_name = "ID", default_value = "latest")]
    pub snapshot: String,
    /// Replace the live data (without it, only say what would be done)
    #[arg(long)]
    pub yes: bool,
    /// Restore into throwaway containers and check the figures instead
    #[arg(long, conflicts_with = "yes")]
    pub drill: bool,
}

pub fn cmd_restore(_global: &GlobalArgs, _ui: &Ui, _args: &RestoreArgs) -> Result<ExitCode, CommandError> {
    Err(CommandError::failure("`restore` is being built"))
}
