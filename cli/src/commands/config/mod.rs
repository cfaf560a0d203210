//! `masstockctl config ...`: questions about deploy.toml itself.

pub mod check;

use std::process::ExitCode;

use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    Check(check::CheckArgs),
}

pub fn run(global: &GlobalArgs, ui: &Ui, command: &ConfigCommand) -> Result<ExitCode, CommandError> {
    match command {
        ConfigCommand::Check(args) => check::cmd_config_check(global, ui, args),
    }
}
