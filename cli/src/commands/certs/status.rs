//! `masstockctl certs status`: every certificate under `acme.cert_dir`, when it expires, when it
//! is due for renewal and by which rule, who renews it, and what went wrong last time.
//!
//! Which lineages deploy.toml wants (`Stack::certificate_lineages`): one per name that
//! `certificate_paths` gives the enabled sites' domains (one SAN lineage, `cert_name` or the
//! shortest domain, or one per domain). `status` lists those (a missing one is exit 1) and every
//! other lineage under `live/` (certbot's `README` skipped), and names configured domains the
//! certificate does not cover. Exit 1 when one is expired, expires within 7 days, or cannot be
//! read. It never touches the network: the rule it shows is one-third (see `certs::due`).

use std::fmt::Write as _;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::certs::due::{decide, Rule};
use crate::certs::expiry::Expiry;
use crate::certs::store::{self, Lineage};
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// Show each certificate: names, issuer, serial, expiry, when renewal is due, the last error
///
/// Reads the certificates under `acme.cert_dir` (certbot's layout, certbot's lineages included),
/// without network access: renewal times follow the one-third rule here, and `certs renew` asks
/// the CA's renewal window (ARI) when the CA offers one. Exit 1 when a certificate has expired,
/// expires within 7 days, cannot be read, or deploy.toml's certificate is missing; 0 otherwise.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}

/// How a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Ok,
    Expiring,
    Expired,
    Missing,
    /// The lineage is there but its certificate cannot be read.
    Invalid,
}

impl Standing {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Expiring => "expiring",
            Self::Expired => "expired",
            Self::Missing => "missing",
            Self::Invalid => "invalid",
        }
    }
}

/// One row: a lineage found, or one deploy.toml implies and the store lacks.
struct Row {
    name: String,
    /// The domains deploy.toml gives this lineage; empty for a lineage it does not name.
    configured_domains: Vec<String>,
    lineage: Option<Lineage>,
    error: Option<String>,
    standing: Standing,
}

pub fn cmd_certs_status(global: &GlobalArgs, ui: &Ui, _args: &StatusArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack_without_env_file()?;
    let cert_dir = &stack.config.acme.cert_dir;
    let now = Utc::now();
    let configured = stack.certificate_lineages();
    let found = store::lineage_names(cert_dir).map_err(CommandError::failure)?;

    let mut names: Vec<String> = configured.iter().map(|(name, _)| name.clone()).collect();
    names.extend(found.into_iter().filter(|name| !configured.iter().any(|(configured, _)| configured == name)));
    let rows: Vec<Row> = names
        .into_iter()
        .map(|name| {
            let configured_domains =
                configured.iter().find(|(configured, _)| *configured == name).map(|(_, domains)| domains.clone());
            let (lineage, error) = match store::read_lineage(cert_dir, &name) {
                Ok(lineage) => (lineage, None),
                Err(error) => (None, Some(crate::error::chain_line(&error))),
            };
            let standing = match (&lineage, &error) {
                (_, Some(_)) => Standing::Invalid,
                (None, None) => Standing::Missing,
                (Some(lineage), None) => match Expiry::at(lineage.cert.not_after, now) {
                    Expiry::Expired => Standing::Expired,
                    Expiry::Expiring => Standing::Expiring,
                    Expiry::Valid => Standing::Ok,
                },
            };
            Row { name, configured_domains: configured_domains.unwrap_or_default(), lineage, error, standing }
        })
        .collect();

    if ui.json {
        let certificates: Vec<Value> = rows.iter().map(|row| json_row(row, now)).collect();
        ui.json_document(&json!({ "cert_dir": cert_dir, "certificates": certificates }));
    } else if rows.is_empty() {
        ui.data(&format!("no certificates under `{}`, and deploy.toml declares no site\n", cert_dir.display()));
    } else {
        let text: Vec<String> = rows.iter().map(|row| text_row(row, now, cert_dir)).collect();
        ui.data(&text.join("\n"));
    }

    // A certificate that lacks a name deploy.toml serves with it fails in browsers, whatever its dates.
    let problems: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let lacking = uncovered(row);
            if row.standing != Standing::Ok {
                Some(format!("`{}` {}", row.name, row.standing.as_str()))
            } else if !lacking.is_empty() {
                Some(format!(
                    "`{}` does not name {} (`masstockctl certs renew` adds them)",
                    row.name,
                    lacking.join(", ")
                ))
            } else {
                None
            }
        })
        .collect();
    if problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    ui.failure(format!(
        "{} certificate problem{}: {}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.join(", ")
    ));
    if rows.iter().any(|row| matches!(row.standing, Standing::Missing | Standing::Expired | Standing::Expiring)) {
        ui.info("hint: `masstockctl certs issue` obtains a missing certificate; `masstockctl certs renew` renews what is due");
    }
    Ok(ExitCode::from(1))
}

/// The domains deploy.toml gives a lineage that its certificate does not name.
fn uncovered(row: &Row) -> Vec<String> {
    let Some(lineage) = &row.lineage else { return Vec::new() };
    row.configured_domains.iter().filter(|domain| !lineage.cert.names.contains(domain)).cloned().collect()
}

fn json_row(row: &Row, now: DateTime<Utc>) -> Value {
    let mut value = json!({
        "name": row.name,
        "configured": !row.configured_domains.is_empty(),
        "status": row.standing.as_str(),
    });
    match &row.lineage {
        Some(lineage) => {
            let due = decide(&lineage.cert, None, now, false);
            let extra = json!({
                "names": lineage.cert.names,
                "issuer": lineage.cert.issuer,
                "serial": lineage.cert.serial,
                "not_before": lineage.cert.not_before.to_rfc3339(),
                "not_after": lineage.cert.not_after.to_rfc3339(),
                "days_left": (lineage.cert.not_after - now).num_days(),
                "renewal_due_at": due.at.to_rfc3339(),
                "renewal_due": due.due,
                "rule": due.rule.as_str(),
                "manager": lineage.manager.as_str(),
                "version": lineage.version,
                "live_dir": lineage.live_dir,
                "last_error": lineage.last_error,
                "last_error_at": lineage.last_error_at.map(|at| at.to_rfc3339()),
                "uncovered_domains": uncovered(row),
            });
            merge(&mut value, extra);
        }
        None => merge(
            &mut value,
            json!({
                "names": row.configured_domains, "issuer": null, "serial": null, "not_after": null,
                "days_left": null, "renewal_due_at": null, "rule": null, "manager": null,
                "last_error": row.error,
            }),
        ),
    }
    value
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

fn text_row(row: &Row, now: DateTime<Utc>, cert_dir: &std::path::Path) -> String {
    let mut text = format!("{}  {}", row.name, row.standing.as_str());
    if row.configured_domains.is_empty() {
        text.push_str("  (not in deploy.toml)");
    }
    text.push('\n');
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(text, "  {label:<11} {value}");
    };
    match &row.lineage {
        None => {
            if let Some(error) = &row.error {
                line("error", error);
            } else {
                line("expected", &format!("{}/", cert_dir.join("live").join(&row.name).display()));
                line("for", &row.configured_domains.join(", "));
            }
        }
        Some(lineage) => {
            let cert = &lineage.cert;
            line("names", &cert.names.join(", "));
            let uncovered = uncovered(row);
            if !uncovered.is_empty() {
                line("not named", &format!("{} (deploy.toml serves them with this certificate)", uncovered.join(", ")));
            }
            line("issuer", &cert.issuer);
            line("serial", &cert.serial);
            let left = cert.not_after - now;
            let relative = if left.num_seconds() <= 0 {
                format!("expired {} ago", crate::ui::short_duration(u64::try_from(-left.num_seconds()).unwrap_or(0)))
            } else {
                format!("in {}", crate::ui::short_duration(u64::try_from(left.num_seconds()).unwrap_or(0)))
            };
            line("expires", &format!("{} ({relative})", stamp(cert.not_after)));
            let due = decide(cert, None, now, false);
            let when = match (due.rule, due.due) {
                (Rule::Expired, _) => "now: expired".to_owned(),
                (_, true) => format!("now (since {}, {})", stamp(due.at), due.rule.as_str()),
                (_, false) => {
                    format!("{} ({}; `certs renew` also asks the CA's ARI window)", stamp(due.at), due.rule.as_str())
                }
            };
            line("renewal", &when);
            line("managed by", lineage.manager.as_str());
            let last_error = match (&lineage.last_error, lineage.last_error_at) {
                (Some(error), Some(at)) => format!("{} ({error})", stamp(at)),
                (Some(error), None) => error.clone(),
                (None, _) => "none".to_owned(),
            };
            line("last error", &last_error);
        }
    }
    text
}

fn stamp(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}
