//! `masstockctl backup ls`: the snapshots in the repository, newest first.

use std::process::ExitCode;

use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// List the snapshots, newest first, with their component, time, sizes and recorded figures
#[derive(Debug, clap::Args)]
pub struct LsArgs {}

pub fn cmd_backup_ls(_global: &GlobalArgs, _ui: &Ui, _args: &LsArgs) -> Result<ExitCode, CommandError> {
    Err(CommandError::failure("`backup ls` is being built"))
}
