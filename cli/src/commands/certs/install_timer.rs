//! `masstockctl certs install-timer`: the systemd service and timer that run `certs renew`
//! twice a day, rendered from the embedded templates (what the timer is lives in
//! `crate::certs::timer`; writing units and asking systemctl, in `crate::systemd`).
//!
//! The templates are `templates/masstock-certs.{service,timer}.tera`, embedded as
//! `render::TIMER_TEMPLATES` (apart from `TEMPLATES`, because they name the running binary and
//! `render` must stay a pure function of the stack). `ExecStart` words are systemd-quoted (`%` and
//! `$` doubled). `[acme] systemd_dir` redirects the units (tests, hosts with another unit folder).
//! The units are written before systemctl is asked anything; `--no-enable` writes them and stops
//! there.

use std::process::ExitCode;

use serde_json::json;

use crate::certs::timer::{CRON_FALLBACK, TIMER_UNIT};
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::progress::Terminal;
use crate::render::render_certs_timer;
use crate::systemd::{self, Timers};
use crate::ui::Ui;

/// Install a systemd timer that runs `certs renew` twice a day
///
/// Writes masstock-certs.service (a oneshot running this masstockctl with this deploy.toml and
/// environment, all paths absolute) and masstock-certs.timer (00:00 and 12:00, a random delay of
/// up to an hour, runs missed while the host was off made up at boot) to `acme.systemd_dir`
/// (/etc/systemd/system), then runs `systemctl daemon-reload` and `systemctl enable --now
/// masstock-certs.timer` (`--no-enable` stops after writing them).
#[derive(Debug, clap::Args)]
pub struct InstallTimerArgs {
    /// Print both units on stdout instead of installing them
    #[arg(long)]
    pub print: bool,
    /// Write the units without asking systemctl to enable them (a host where systemd does not run
    /// yet, or configuration management that enables units itself)
    #[arg(long, conflicts_with = "print")]
    pub no_enable: bool,
}

pub fn cmd_certs_install_timer(
    global: &GlobalArgs,
    ui: &Ui,
    args: &InstallTimerArgs,
) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack_without_env_file()?;
    let masstockctl = std::env::current_exe().map_err(|error| {
        CommandError::failure(format!("failed to find the path of the running masstockctl: {error}"))
    })?;
    let units = render_certs_timer(&stack, &masstockctl).map_err(CommandError::failure)?;

    if args.print {
        ui.rendered_units(&units);
        return Ok(ExitCode::SUCCESS);
    }

    let timers = Timers { units: &[TIMER_UNIT], cron_fallback: CRON_FALLBACK };
    let written =
        systemd::install(&stack.config.acme.systemd_dir(), &units, &timers, !args.no_enable, &Terminal::new(ui))?;
    if args.no_enable {
        if ui.json {
            ui.json_document(&json!({ "units": written, "enabled": null }));
        } else {
            ui.data(&format!(
                "{TIMER_UNIT} is written, not enabled: `systemctl enable --now {TIMER_UNIT}` starts it\n"
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if ui.json {
        ui.json_document(&json!({ "units": written, "enabled": TIMER_UNIT }));
    } else {
        ui.data(&format!("{TIMER_UNIT} is enabled: `certs renew` runs twice a day (`systemctl list-timers {TIMER_UNIT}` shows the next run)\n"));
    }
    Ok(ExitCode::SUCCESS)
}
