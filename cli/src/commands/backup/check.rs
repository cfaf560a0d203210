//! `masstockctl backup check`: `restic check` on the repository.

use std::process::ExitCode;

use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// Check the repository's integrity (`restic check`)
#[derive(Debug, clap::Args)]
pub struct CheckArgs {}

pub fn cmd_backup_check(_global: &GlobalArgs, _ui: &Ui, _args: &CheckArgs) -> Result<ExitCode, CommandError> {
    Err(CommandError::failure("`backup check` is being built"))
}
