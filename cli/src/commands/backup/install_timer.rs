//! `masstockctl backup install-timer`: the systemd units that run `backup` and `restore --drill`.
//!
//! Four units, rendered from `templates/masstock-{backup,drill}.{service,timer}.tera`
//! (`render::render_backup_timers`): two root oneshots, niced and on the idle I/O class, each
//! with the hardening that leaves the Docker socket, the repository, ssh's keys and the network
//! reachable (the service template says why not more), and two timers on `[backup] schedule`
//! and `drill_schedule`, `Persistent=true` and a random delay. `[backup] systemd_dir` redirects
//! them. Writing them and asking systemctl go through `crate::systemd`, as `certs install-timer`
//! does: the units are written first, `--no-enable` stops there, `--print` writes nothing.

use std::process::ExitCode;

use serde_json::json;

use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::progress::Terminal;
use crate::render::render_backup_timers;
use crate::systemd::{self, Timers, BACKUP_TIMER_UNIT, DRILL_TIMER_UNIT};
use crate::ui::Ui;

/// Install systemd timers that run `backup` on `[backup] schedule` and `restore --drill` weekly
///
/// Writes masstock-backup.service and masstock-drill.service (root oneshots running this
/// masstockctl with this deploy.toml and environment, all paths absolute, at a low CPU and I/O
/// priority) and their timers (on `[backup] schedule` and `drill_schedule`, a random delay of up
/// to 15 minutes, runs missed while the host was off made up at boot) to `backup.systemd_dir`
/// (/etc/systemd/system), then runs `systemctl daemon-reload` and `systemctl enable --now` on
/// both timers (`--no-enable` stops after writing them).
#[derive(Debug, clap::Args)]
pub struct InstallTimerArgs {
    /// Print the units on stdout instead of installing them
    #[arg(long)]
    pub print: bool,
    /// Write the units without asking systemctl to enable them (a host where systemd does not run
    /// yet, or configuration management that enables units itself)
    #[arg(long, conflicts_with = "print")]
    pub no_enable: bool,
}

const TIMERS: Timers<'static> = Timers {
    units: &[BACKUP_TIMER_UNIT, DRILL_TIMER_UNIT],
    cron_fallback: "`masstockctl backup` daily and `masstockctl restore --drill` weekly",
};

pub fn cmd_backup_install_timer(
    global: &GlobalArgs,
    ui: &Ui,
    args: &InstallTimerArgs,
) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack_without_env_file()?;
    let Some(backup) = &stack.config.backup else {
        return Err(CommandError::usage(format!(
            "deploy.toml declares no `[backup]` for environment `{}`",
            stack.environment
        ))
        .with_hint("add a `[backup]` section with the repository and its password (deploy.toml's comments show one)"));
    };
    let masstockctl = std::env::current_exe().map_err(|error| {
        CommandError::failure(format!("failed to find the path of the running masstockctl: {error}"))
    })?;
    let units = render_backup_timers(&stack, backup, &masstockctl).map_err(CommandError::failure)?;

    if args.print {
        ui.rendered_units(&units);
        return Ok(ExitCode::SUCCESS);
    }

    let written = systemd::install(&backup.systemd_dir(), &units, &TIMERS, !args.no_enable, &Terminal::new(ui))?;
    let timers = TIMERS.units.join(" ");
    if args.no_enable {
        if ui.json {
            ui.json_document(&json!({ "units": written, "enabled": null }));
        } else {
            ui.data(&format!(
                "{BACKUP_TIMER_UNIT} and {DRILL_TIMER_UNIT} are written, not enabled: `systemctl enable --now {timers}` starts them\n"
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if ui.json {
        ui.json_document(&json!({ "units": written, "enabled": TIMERS.units }));
    } else {
        ui.data(&format!(
            "{BACKUP_TIMER_UNIT} and {DRILL_TIMER_UNIT} are enabled: `backup` runs on `{}`, `restore --drill` on `{}` (`systemctl list-timers {timers}` shows the next runs)\n",
            backup.schedule, backup.drill_schedule
        ));
    }
    Ok(ExitCode::SUCCESS)
}
