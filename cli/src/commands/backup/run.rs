//! `masstockctl backup [COMPONENT…]`: a snapshot of each component, then the retention (see
//! `crate::backup::run`). Under the backup lock, so two runs never overlap.

use std::process::ExitCode;

use serde_json::{json, Value};

use crate::backup::run::{self, RunReport};
use crate::backup::store::bytes;
use crate::backup::{restic::Repository, Target};
use crate::commands::GlobalArgs;
use crate::deploy::lock::{DeployLock, LockName};
use crate::error::CommandError;
use crate::progress::Terminal;
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The components to back up: redis, uploads, n8n, postgres (default: `[backup] include`)
    #[arg(value_name = "COMPONENT")]
    pub components: Vec<String>,
    /// Create the repository when there is none (the first backup of a stack does so anyway;
    /// later, a missing repository is an error: an unmounted disk must not become a new one)
    #[arg(long)]
    pub init: bool,
}

pub fn cmd_backup(global: &GlobalArgs, ui: &Ui, args: &RunArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack(ui)?;
    let repository = Repository::of(&stack)?;
    let components = run::chosen(&stack, &args.components)?;
    let _lock = DeployLock::acquire_named(&stack, LockName::Backup, "backup")?;
    let reporter = Terminal::new(ui);
    let report = crate::runtime::block_on(async {
        let docker = crate::docker::connect().await?;
        let target = Target { stack: &stack, docker: &docker, reporter: &reporter };
        Ok::<_, CommandError>(
            run::back_up(&target, &repository, &components, args.init, crate::runtime::interrupted()).await?,
        )
    })??;
    print(ui, &repository, &report);
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print(ui: &Ui, repository: &Repository, report: &RunReport) {
    if ui.json {
        let mut components: Vec<Value> = report
            .stored
            .iter()
            .map(|stored| {
                json!({
                    "component": stored.component,
                    "ok": true,
                    "snapshot": stored.snapshot.id,
                    "short_id": stored.snapshot.short_id,
                    "figures": stored.snapshot.tags.figures,
                    "added_bytes": stored.summary.data_added,
                    "total_bytes": stored.summary.total_bytes_processed,
                    "seconds": stored.seconds,
                    "error": null,
                })
            })
            .collect();
        components.extend(report.failed.iter().map(|failed| {
            let component = match failed {
                crate::backup::store::StoreError::Capture { component, .. }
                | crate::backup::store::StoreError::Restic { component, .. } => *component,
            };
            json!({ "component": component, "ok": false, "error": failed.to_string(), "hints": failed.hints() })
        }));
        let forget = match &report.forgotten {
            Some(Ok(count)) => json!({ "ok": true, "forgotten": count }),
            Some(Err(error)) => json!({ "ok": false, "error": error.to_string() }),
            None => Value::Null,
        };
        ui.json_document(&json!({
            "ok": report.ok(),
            "run": report.run,
            "repository": repository.shown(),
            "initialized": report.initialized,
            "components": components,
            "forget": forget,
        }));
        return;
    }
    for stored in &report.stored {
        let figures: Vec<String> =
            stored.snapshot.tags.figures.iter().map(|(name, value)| format!("{name}={value}")).collect();
        ui.data(&format!(
            "{}\t{}\t{} added\t{} total\t{:.1}s\t{}\n",
            stored.component,
            stored.snapshot.short_id,
            bytes(stored.summary.data_added),
            bytes(stored.summary.total_bytes_processed),
            stored.seconds,
            figures.join(" ")
        ));
    }
    for failed in &report.failed {
        ui.failure(failed);
        for hint in failed.hints() {
            ui.info(format!("hint: {hint}"));
        }
    }
    match &report.forgotten {
        Some(Ok(count)) => ui.info(format!("retention: {count} snapshot(s) forgotten")),
        Some(Err(error)) => ui.failure(format!("retention: {error}")),
        None => ui.info("retention: not applied, because a component failed"),
    }
}
