//! `masstockctl backup ...`: back the stack's data up to its restic repository, list and check
//! the snapshots, install the timer (see `crate::backup`).

pub mod check;
pub mod install_timer;
pub mod ls;
pub mod run;

use std::process::ExitCode;

use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// Back up the stack's data (Redis, uploads, n8n, PostgreSQL) to its restic repository
///
/// Without a subcommand: store a consistent snapshot of each COMPONENT (default: every one of
/// `[backup] include`), then forget the snapshots the retention no longer keeps. Exit 0 only when
/// every component was stored.
///
/// Example: `masstockctl backup`, `masstockctl backup postgres uploads`
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    #[command(flatten)]
    pub run: run::RunArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    Ls(ls::LsArgs),
    Check(check::CheckArgs),
    InstallTimer(install_timer::InstallTimerArgs),
}

pub fn run(global: &GlobalArgs, ui: &Ui, args: &BackupArgs) -> Result<ExitCode, CommandError> {
    match &args.command {
        None => run::cmd_backup(global, ui, &args.run),
        Some(BackupCommand::Ls(args)) => ls::cmd_backup_ls(global, ui, args),
        Some(BackupCommand::Check(args)) => check::cmd_backup_check(global, ui, args),
        Some(BackupCommand::InstallTimer(args)) => install_timer::cmd_backup_install_timer(global, ui, args),
    }
}
