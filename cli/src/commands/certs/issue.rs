//! `masstockctl certs issue [NAME…]`: a new certificate now, due or not.

use std::process::ExitCode;

use crate::certs::lifecycle;
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// Issue the stack's certificates from `[acme] directory` and install them
///
/// One certificate naming every domain (or one per domain with `[acme] certificates =
/// "per-domain"`), validated over HTTP-01 through the webroot nginx serves. Each challenge is
/// fetched through the edge first, so a broken setup costs no validation attempt. The new
/// version is stored in certbot's layout, nginx is tested and reloaded, and every name must then
/// be served with the new serial, or the previous version comes back.
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// Only these certificates (lineage names or domains)
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

pub fn cmd_issue(global: &GlobalArgs, ui: &Ui, args: &IssueArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack(ui)?;
    let outcomes = lifecycle::issue(&stack, &crate::progress::Terminal::new(ui), &args.names)?;
    Ok(super::report(ui, &outcomes))
}
