//! `masstockctl restore`: snapshots put back on the running stack, or rehearsed in throwaway
//! objects (`--drill`); the order of the work and what an interruption leaves are in
//! `crate::backup::restore`.
//!
//! Without `--yes` (and without `--drill`) it says what it would do and changes nothing. A
//! restore holds the deploy lock (it stops and starts containers) and the backup lock (it writes
//! safety snapshots); a drill only the backup lock. Ctrl-C stops either cleanly: a restore starts
//! what it stopped, a drill removes what it created. A drill records its outcome for `doctor`.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::backup::restic::Repository;
use crate::backup::restore::{self, Chosen, DrillReport, FigureCheck, RestoreReport};
use crate::backup::status::{self, Kind};
use crate::backup::{store, Target};
use crate::commands::GlobalArgs;
use crate::deploy::lock::{DeployLock, LockName};
use crate::error::CommandError;
use crate::progress::Terminal;
use crate::ui::Ui;

/// Put a backup back on the running stack, or prove it restores (`--drill`)
///
/// Without `--yes`, says what it would do and changes nothing. Before replacing anything it
/// takes a safety snapshot of what it replaces; it stops the services that use the component,
/// restores, starts them again health-gated and checks the figures recorded at backup time.
///
/// `--drill` restores into throwaway containers on an isolated network and a scratch database,
/// checks every recorded figure, and removes everything it created. Exit 0 only when every
/// figure matches.
///
/// Example: `masstockctl restore --drill`, `masstockctl restore postgres uploads --yes`
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The components to restore: redis, uploads, n8n, postgres (a drill: default all of the run)
    #[arg(value_name = "COMPONENT", required_unless_present = "drill")]
    pub components: Vec<String>,
    /// A snapshot id or its prefix (the components come from its run), or `latest`
    #[arg(long, value_name = "ID", default_value = "latest")]
    pub snapshot: String,
    /// Replace the live data (without it, only say what would be done)
    #[arg(long)]
    pub yes: bool,
    /// Restore into throwaway containers and check the figures instead
    #[arg(long, conflicts_with = "yes")]
    pub drill: bool,
}

pub fn cmd_restore(global: &GlobalArgs, ui: &Ui, args: &RestoreArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack(ui)?;
    let repository = Repository::of(&stack)?;
    let named = crate::backup::run::chosen(&stack, &args.components)?;
    let named = if args.components.is_empty() && args.snapshot != "latest" { Vec::new() } else { named };
    let _deploy_lock = if args.yes { Some(DeployLock::acquire(&stack, "restore")?) } else { None };
    let _backup_lock =
        DeployLock::acquire_named(&stack, LockName::Backup, if args.drill { "restore --drill" } else { "restore" })?;
    let reporter = Terminal::new(ui);
    // A drill of the newest backup of every component says whether the stack's backups restore
    // (what `doctor` judges); one of an older snapshot or of some components is not recorded.
    let whole_drill = args.drill && args.snapshot == "latest" && args.components.is_empty();
    let record_drill = |ok: bool, summary: String| -> Result<(), CommandError> {
        if whole_drill {
            status::record(&stack, Kind::Drill, status::Run { at: chrono::Utc::now(), ok, summary })
                .map_err(CommandError::failure)?;
        }
        Ok(())
    };
    crate::runtime::block_on(async {
        let docker = crate::docker::connect().await?;
        let target = Target { stack: &stack, docker: &docker, reporter: &reporter };
        let chosen = async {
            repository.open(false).await?;
            restore::choose(&repository, &store::stack_filter(&stack), &named, &args.snapshot).await
        }
        .await;
        let chosen = match chosen {
            Ok(chosen) => chosen,
            Err(error) => {
                if args.drill {
                    record_drill(false, format!("the snapshots could not be chosen: {error}"))?;
                }
                return Err(error.into());
            }
        };
        if args.drill {
            let report = restore::drill(&target, &repository, &chosen, crate::runtime::interrupted()).await;
            record_drill(report.ok(), drill_summary(&report))?;
            print_drill(ui, &report);
            return Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        if !args.yes {
            print_plan(ui, &target, &chosen);
            return Ok(ExitCode::SUCCESS);
        }
        let report = restore::restore(&target, &repository, &chosen, crate::runtime::interrupted()).await?;
        print_restore(ui, &report);
        Ok(if report.restored.iter().all(restore::Restored::ok) { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })?
}

fn figures_json(figures: &[FigureCheck]) -> Value {
    json!(figures)
}

fn chosen_words(chosen: &Chosen) -> String {
    format!(
        "{} from snapshot {} ({}, run {})",
        chosen.component,
        chosen.snapshot.short_id,
        chosen.snapshot.time.format("%Y-%m-%d %H:%M:%S UTC"),
        chosen.snapshot.tags.run
    )
}

fn print_plan(ui: &Ui, target: &Target<'_>, chosen: &[Chosen]) {
    let stopped = restore::services_to_stop(target, chosen);
    if ui.json {
        let components: Vec<Value> = chosen
            .iter()
            .map(|chosen| {
                json!({
                    "component": chosen.component,
                    "snapshot": chosen.snapshot.id,
                    "short_id": chosen.snapshot.short_id,
                    "time": chosen.snapshot.time,
                    "figures": chosen.snapshot.tags.figures,
                })
            })
            .collect();
        ui.json_document(&json!({ "changed": false, "components": components, "stops": stopped }));
        return;
    }
    let mut text = String::from("would restore:\n");
    for chosen in chosen {
        let _ = writeln!(text, "  {}", chosen_words(chosen));
    }
    let _ = writeln!(
        text,
        "after a safety snapshot of each, stopping {} and starting them again\nnothing was changed: add `--yes` to restore",
        if stopped.is_empty() { "nothing".to_owned() } else { stopped.join(", ") }
    );
    ui.data(&text);
}

fn print_restore(ui: &Ui, report: &RestoreReport) {
    let ok = report.restored.iter().all(restore::Restored::ok);
    if ui.json {
        let safety: Vec<Value> = report
            .safety
            .iter()
            .map(|stored| json!({ "component": stored.component, "snapshot": stored.snapshot.id, "short_id": stored.snapshot.short_id }))
            .collect();
        let components: Vec<Value> = report
            .restored
            .iter()
            .map(|restored| {
                json!({
                    "component": restored.component,
                    "snapshot": restored.snapshot.id,
                    "ok": restored.ok(),
                    "figures": figures_json(&restored.figures),
                })
            })
            .collect();
        ui.json_document(
            &json!({ "ok": ok, "safety_snapshots": safety, "components": components, "seconds": report.seconds }),
        );
    } else {
        for stored in &report.safety {
            ui.info(format!(
                "{}: the data as it was is in safety snapshot {}",
                stored.component, stored.snapshot.short_id
            ));
        }
        for restored in &report.restored {
            ui.data(&format!(
                "{}\trestored from {}\t{}\n",
                restored.component,
                restored.snapshot.short_id,
                if restored.ok() { "figures match" } else { "FIGURES DIFFER" }
            ));
        }
    }
    for restored in &report.restored {
        for figure in restored.figures.iter().filter(|figure| !figure.ok) {
            ui.failure(format!("{}: {figure}", restored.component));
        }
    }
    ui.info(format!("restore took {:.1}s", report.seconds));
}

fn drill_summary(report: &DrillReport) -> String {
    report
        .drilled
        .iter()
        .map(|drilled| {
            format!(
                "{} {}: {}",
                drilled.component,
                drilled.snapshot.short_id,
                if drilled.ok() { "ok" } else { "failed" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_drill(ui: &Ui, report: &DrillReport) {
    let estimated: f64 = report.drilled.iter().map(|drilled| drilled.seconds).sum();
    if ui.json {
        let components: Vec<Value> = report
            .drilled
            .iter()
            .map(|drilled| {
                json!({
                    "component": drilled.component,
                    "snapshot": drilled.snapshot.id,
                    "short_id": drilled.snapshot.short_id,
                    "ok": drilled.ok(),
                    "seconds": drilled.seconds,
                    "figures": figures_json(&drilled.figures),
                    "error": drilled.error,
                })
            })
            .collect();
        let queue: serde_json::Map<String, Value> = report
            .drilled
            .iter()
            .flat_map(|drilled| drilled.figures.iter())
            .filter_map(|figure| {
                let state = figure.name.strip_prefix("queue.")?;
                Some((state.to_owned(), json!(figure.restored)))
            })
            .collect();
        ui.json_document(&json!({
            "ok": report.ok(),
            "components": components,
            "queue": queue,
            "estimated_restore_seconds": estimated,
            "leftovers": report.leftovers,
            "seconds": report.seconds,
        }));
    } else {
        for drilled in &report.drilled {
            let matched = drilled.figures.iter().filter(|figure| figure.ok).count();
            let verdict = match &drilled.error {
                Some(_) => "FAILED".to_owned(),
                None if drilled.ok() => format!("{matched}/{} figures match", drilled.figures.len()),
                None => format!("{matched}/{} figures match: FAILED", drilled.figures.len()),
            };
            ui.data(&format!(
                "{}\t{}\t{verdict}\t{:.1}s\n",
                drilled.component, drilled.snapshot.short_id, drilled.seconds
            ));
        }
        ui.info(format!("a real restore of these snapshots would take about {estimated:.0}s (the drill's own times)"));
    }
    for drilled in &report.drilled {
        if let Some(error) = &drilled.error {
            ui.failure(format!("{}: {error}", drilled.component));
            for hint in &drilled.hints {
                ui.info(format!("hint: {hint}"));
            }
        }
        for figure in drilled.figures.iter().filter(|figure| !figure.ok) {
            ui.failure(format!("{}: {figure}", drilled.component));
        }
    }
    for leftover in &report.leftovers {
        ui.failure(format!("the drill could not remove {leftover}"));
    }
}
