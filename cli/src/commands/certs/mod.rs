//! `masstockctl certs ...`: the TLS certificates obtained over ACME, stored in certbot's layout
//! under `acme.cert_dir` (see `crate::certs`).

pub mod install_timer;
pub mod status;

use std::process::ExitCode;

use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    Status(status::StatusArgs),
    InstallTimer(install_timer::InstallTimerArgs),
}

pub fn run(global: &GlobalArgs, ui: &Ui, command: &CertsCommand) -> Result<ExitCode, CommandError> {
    match command {
        CertsCommand::Status(args) => status::cmd_certs_status(global, ui, args),
        CertsCommand::InstallTimer(args) => install_timer::cmd_certs_install_timer(global, ui, args),
    }
}
