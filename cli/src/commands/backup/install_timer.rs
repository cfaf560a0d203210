//! `masstockctl backup install-timer`: the systemd units that run `backup` and `restore --drill`.

use std::process::ExitCode;

use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// Install systemd timers that run `backup` on `[backup] schedule` and `restore --drill` weekly
#[derive(Debug, clap::Args)]
pub struct InstallTimerArgs {
    /// Print the units on stdout instead of installing them
    #[arg(long)]
    pub print: bool,
    /// Write the units without asking systemctl to enable them
    #[arg(long, conflicts_with = "print")]
    pub no_enable: bool,
}

pub fn cmd_backup_install_timer(
    _global: &GlobalArgs,
    _ui: &Ui,
    _args: &InstallTimerArgs,
) -> Result<ExitCode, CommandError> {
    Err(CommandError::failure("`backup install-timer` is being built"))
}
