//! `masstockctl certs ...`: the TLS certificates obtained over ACME, stored in certbot's layout
//! under `acme.cert_dir` (see `crate::certs`).

pub mod install_timer;
pub mod issue;
pub mod renew;
pub mod status;

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::certs::lifecycle::{Action, Outcome};
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    Issue(issue::IssueArgs),
    Renew(renew::RenewArgs),
    Status(status::StatusArgs),
    InstallTimer(install_timer::InstallTimerArgs),
}

pub fn run(global: &GlobalArgs, ui: &Ui, command: &CertsCommand) -> Result<ExitCode, CommandError> {
    match command {
        CertsCommand::Issue(args) => issue::cmd_issue(global, ui, args),
        CertsCommand::Renew(args) => renew::cmd_renew(global, ui, args),
        CertsCommand::Status(args) => status::cmd_certs_status(global, ui, args),
        CertsCommand::InstallTimer(args) => install_timer::cmd_certs_install_timer(global, ui, args),
    }
}

/// Prints the outcomes (a line each, or one JSON document) and gives the exit status: 1 when any
/// certificate failed.
#[must_use]
pub fn report(ui: &Ui, outcomes: &[Outcome]) -> ExitCode {
    let failed = outcomes.iter().any(|outcome| outcome.action == Action::Failed);
    if ui.json {
        ui.json_document(&serde_json::json!({ "ok": !failed, "certificates": outcomes }));
    } else {
        for outcome in outcomes {
            let action = serde_json::to_value(outcome.action).ok().and_then(|v| v.as_str().map(str::to_owned));
            let mut line = format!("{}\t{}", outcome.lineage, action.unwrap_or_default());
            if let Some(version) = outcome.version {
                let _ = write!(line, "\tversion {version}");
            }
            if let Some(serial) = &outcome.serial {
                let _ = write!(line, "\tserial {serial}");
            }
            if let Some(not_after) = outcome.not_after {
                let _ = write!(line, "\tnot after {}", not_after.format("%Y-%m-%d %H:%M UTC"));
            }
            if matches!(outcome.action, Action::Issued | Action::Rehearsed) {
                let _ = write!(line, "\t{:.1}s", outcome.seconds);
            }
            ui.data(&format!("{line}\n"));
        }
    }
    for outcome in outcomes {
        if let Some(error) = &outcome.error {
            ui.failure(format!("`{}`: {error}", outcome.lineage));
        }
        if let Some(hint) = &outcome.hint {
            ui.info(format!("  hint: {hint}"));
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
