//! `masstockctl backup [COMPONENT…]`: a snapshot of each component, then the retention.

use std::process::ExitCode;

use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The components to back up: redis, uploads, n8n, postgres (default: `[backup] include`)
    #[arg(value_name = "COMPONENT")]
    pub components: Vec<String>,
}

pub fn cmd_backup(_global: &GlobalArgs, _ui: &Ui, _args: &RunArgs) -> Result<ExitCode, CommandError> {
    Err(CommandError::failure("`backup` is being built"))
}
