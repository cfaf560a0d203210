//! `masstockctl certs install-timer`: the systemd service and timer that run `certs renew`
//! twice a day, rendered from the embedded templates (what the timer is, and where systemd looks
//! for it, lives in `crate::certs::timer`).
//!
//! The templates are `templates/masstock-certs.{service,timer}.tera`, embedded as
//! `render::TIMER_TEMPLATES` (apart from `TEMPLATES`, because they name the running binary and
//! `render` must stay a pure function of the stack). `ExecStart` words are systemd-quoted (`%` and
//! `$` doubled). `[acme] systemd_dir` redirects the units (tests, hosts with another unit folder).
//! The units are written before systemctl is asked anything; when `daemon-reload` or `enable`
//! fails, the error quotes systemctl, and where systemd is not PID 1 (a container, a chroot: no
//! `/run/systemd/system`, or systemctl says so) points at `--no-enable`, which writes them and
//! stops there.

use std::process::{Command, ExitCode};

use serde_json::json;

use crate::certs::timer::{self, TIMER_UNIT};
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::render::render_certs_timer;
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
        if ui.json {
            let units: Vec<_> =
                units.iter().map(|unit| json!({ "name": unit.path, "contents": unit.contents })).collect();
            ui.json_document(&json!({ "units": units }));
        } else {
            let text: Vec<String> =
                units.iter().map(|unit| format!("# {}\n{}", unit.path.display(), unit.contents)).collect();
            ui.data(&text.join("\n"));
        }
        return Ok(ExitCode::SUCCESS);
    }

    let dir = stack.config.acme.systemd_dir();
    timer::create_unit_dir(&dir)?;
    let mut written = Vec::new();
    for unit in &units {
        let path = timer::write_unit(&dir, &unit.path, &unit.contents)?;
        ui.info(format!("wrote `{}`", path.display()));
        written.push(path);
    }
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
    for arguments in [&["daemon-reload"][..], &["enable", "--now", TIMER_UNIT]] {
        systemctl(arguments)?;
        ui.info(format!("ran `systemctl {}`", arguments.join(" ")));
    }
    if ui.json {
        ui.json_document(&json!({ "units": written, "enabled": TIMER_UNIT }));
    } else {
        ui.data(&format!("{TIMER_UNIT} is enabled: `certs renew` runs twice a day (`systemctl list-timers {TIMER_UNIT}` shows the next run)\n"));
    }
    Ok(ExitCode::SUCCESS)
}

fn systemctl(arguments: &[&str]) -> Result<(), CommandError> {
    let command = format!("systemctl {}", arguments.join(" "));
    match Command::new("systemctl").args(arguments).output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let failure = CommandError::failure(format!("`{command}` failed ({}): {}", output.status, stderr.trim()));
            // systemd not PID 1 (a container, a chroot): `--no-enable` is the way. Elsewhere
            // systemctl's own words say what to do (permissions, a unit it refuses).
            let no_systemd = stderr.contains("not been booted with systemd")
                || !timer::systemd_runs();
            Err(if no_systemd {
                failure.with_hint(format!(
                    "the units are written; systemd does not run here, so `--no-enable` writes them without \
                     asking systemctl, and `systemctl enable --now {TIMER_UNIT}` starts the timer once it does"
                ))
            } else {
                failure
            })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(CommandError::failure(format!(
            "`systemctl` was not found: this host does not run systemd, so the timer cannot be enabled (`{command}`)"
        ))
        .with_hint("the units are written; on a host without systemd, run `masstockctl certs renew` twice a day from cron instead")),
        Err(error) => Err(CommandError::failure(format!("failed to run `{command}`: {error}"))),
    }
}
