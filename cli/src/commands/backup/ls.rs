//! `masstockctl backup ls`: the stack's snapshots in the repository, newest first, with what
//! each one recorded.

use std::process::ExitCode;

use serde_json::json;

use crate::backup::restic::Repository;
use crate::backup::store::bytes;
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// List the snapshots, newest first, with their component, time, sizes and recorded figures
#[derive(Debug, clap::Args)]
pub struct LsArgs {}

pub fn cmd_backup_ls(global: &GlobalArgs, ui: &Ui, _args: &LsArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack(ui)?;
    let repository = Repository::of(&stack)?;
    let filter =
        [format!("masstock:project={}", stack.config.project.name), format!("masstock:env={}", stack.environment)];
    let mut snapshots = crate::runtime::block_on(repository.snapshots(&filter))??;
    snapshots.reverse();
    if ui.json {
        let listed: Vec<_> = snapshots
            .iter()
            .map(|snapshot| {
                json!({
                    "id": snapshot.id,
                    "short_id": snapshot.short_id,
                    "time": snapshot.time,
                    "component": snapshot.tags.component,
                    "run": snapshot.tags.run,
                    "kind": snapshot.tags.kind,
                    "revision": snapshot.tags.revision,
                    "release": snapshot.tags.release,
                    "complete": snapshot.complete,
                    "figures": snapshot.tags.figures,
                    "added_bytes": snapshot.tags.added_bytes,
                    "total_bytes": snapshot.tags.total_bytes,
                })
            })
            .collect();
        ui.json_document(&json!({ "repository": repository.shown(), "snapshots": listed }));
        return Ok(ExitCode::SUCCESS);
    }
    if snapshots.is_empty() {
        ui.info(format!("no snapshot of this stack in `{}`: `masstockctl backup` takes one", repository.shown()));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = snapshots
        .iter()
        .map(|snapshot| {
            let figures: Vec<String> =
                snapshot.tags.figures.iter().map(|(name, value)| format!("{name}={value}")).collect();
            vec![
                snapshot.short_id.clone(),
                snapshot.time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                snapshot.tags.component.map_or_else(|| "?".to_owned(), |component| component.to_string()),
                if snapshot.complete {
                    snapshot.tags.kind.clone()
                } else {
                    format!("{} (incomplete)", snapshot.tags.kind)
                },
                snapshot.tags.added_bytes.map_or_else(String::new, bytes),
                snapshot.tags.total_bytes.map_or_else(String::new, bytes),
                figures.join(" "),
            ]
        })
        .collect();
    ui.data(&crate::ui::table(
        &["ID", "TIME", "COMPONENT", "KIND", "ADDED", "SIZE", "FIGURES"],
        &[false, false, false, false, true, true, false],
        &rows,
    ));
    Ok(ExitCode::SUCCESS)
}
