//! `masstockctl certs renew [--force] [--dry-run] [NAME…]`: renews what is due, nothing else.

use std::process::ExitCode;

use crate::certs::lifecycle::{self, RenewOptions};
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// Renew the certificates that are due, certbot's included
///
/// Due means inside the CA's renewal window when it offers ARI (the order then names the
/// certificate it replaces), else less than a third of the lifetime left. Certificates certbot
/// made are taken over. Exit status 1 when any renewal failed; its error is kept for
/// `certs status`.
#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// Renew even what is not due
    #[arg(long)]
    pub force: bool,
    /// Rehearse the whole flow against `[acme] staging_directory`, changing nothing: the
    /// certificates go to a temporary folder and nginx is not reloaded
    #[arg(long)]
    pub dry_run: bool,
    /// Only these certificates (lineage names or domains)
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

pub fn cmd_renew(global: &GlobalArgs, ui: &Ui, args: &RenewArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack(ui)?;
    let options = RenewOptions { force: args.force, dry_run: args.dry_run, only: args.names.clone() };
    let outcomes = lifecycle::renew(&stack, &crate::progress::Terminal::new(ui), &options)?;
    if outcomes.is_empty() {
        ui.info("no certificate to renew");
    }
    Ok(super::report(ui, &outcomes))
}
