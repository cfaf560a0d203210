//! `masstockctl completions SHELL`: the completion script for a shell, on stdout.

use std::process::ExitCode;

use clap::CommandFactory as _;

use crate::commands::Cli;
use crate::error::CommandError;
use crate::ui::Ui;

/// Print a shell completion script
///
/// Example: `masstockctl completions bash > /etc/bash_completion.d/masstockctl`
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: clap_complete::Shell,
}

pub fn cmd_completions(ui: &Ui, args: &CompletionsArgs) -> Result<ExitCode, CommandError> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "masstockctl", &mut script);
    ui.data(&String::from_utf8_lossy(&script));
    Ok(ExitCode::SUCCESS)
}
