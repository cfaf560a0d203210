//! `masstockctl secrets ...`: the env file that holds the stack's secrets.

pub mod generate;

use std::process::ExitCode;

use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    Generate(generate::GenerateArgs),
}

pub fn run(global: &GlobalArgs, ui: &Ui, command: &SecretsCommand) -> Result<ExitCode, CommandError> {
    match command {
        SecretsCommand::Generate(args) => generate::cmd_secrets_generate(global, ui, args),
    }
}
