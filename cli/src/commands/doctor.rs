//! `masstockctl doctor`: every diagnosis of the troubleshooting guide at once, each finding with
//! its evidence and the command that fixes it (the checks live in `crate::doctor`).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use crate::commands::GlobalArgs;
use crate::config::{units, DEFAULT_ENVIRONMENT};
use crate::doctor::{self, Context, Finding, Severity};
use crate::error::CommandError;
use crate::secrets::EnvFile;
use crate::ui::Ui;

/// Find what is wrong with the deployed stack, and say how to fix it
///
/// Runs every diagnosis at once and prints one finding per problem: its severity, what is wrong,
/// the evidence (numbers, log lines, the failing request) and the fix, a command to run. doctor
/// changes nothing itself, and never suggests a command that deletes data without saying so.
///
/// - Services that will not start: containers missing, exited, restarting or unhealthy (with
///   exit code, restart count and their last log lines), secrets missing from the env file, a
///   declared host port held by another process or container (which one, its PID), an image
///   missing, a dependency that is not up.
///
/// - CORS: the preflight from the first of `[cors] origins` through the edge answers 204 with the
///   expected `Access-Control-*` headers, and the API container's `CORS_ORIGIN` is deploy.toml's.
///
/// - The worker: Redis unreachable or refusing the password, a client container started with
///   another password, jobs waiting with no live worker (and the oldest one's age), a paused
///   queue, failed jobs of the last 24 hours grouped by cause (Gemini key refused, rate limited…).
///
/// - Certificates: missing, expired or expiring within 7 days, lacking a name, nginx serving
///   another certificate than the one on disk, no renewal timer.
///
/// - Disk: the free space of the Docker data root and the log folders (`edge.log_dir`, the
///   `logs` volume), with the engine's disk usage, the largest logs and safe clean-up commands.
///
/// Exit status: 0 without findings, 1 with. `--json` prints `{"findings": [{"id", "severity",
/// "summary", "evidence", "fix"}]}` (`severity`: `error` or `warning`; `id`: the kind of problem
/// and its subject, `container-down:worker`). No secret appears in any finding.
///
/// Example: `masstockctl doctor --json | jq -r '.findings[].fix'`
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// How long each request (HTTP, Redis, TLS, Engine API) may take
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub timeout: units::Duration,
}

pub fn cmd_doctor(global: &GlobalArgs, ui: &Ui, args: &DoctorArgs) -> Result<ExitCode, CommandError> {
    // The env file is read, not validated: a secret it lacks is a finding (`env-missing`), not a
    // refusal to look at the rest.
    let mut stack = global.load_stack_without_env_file()?;
    let env_file_error = match EnvFile::read(&stack.config.project.env_file) {
        Ok(file) => {
            stack.secrets.env_file = file;
            None
        }
        Err(error) => Some(CommandError::failure(error).chain().join(": ")),
    };
    if args.timeout.0.is_zero() {
        return Err(CommandError::usage("`--timeout` must be longer than zero"));
    }
    let started = Instant::now();
    let findings = crate::runtime::block_on(async {
        let mut context = Context::new(&stack, args.timeout.0, invocation(global)).await;
        context.env_file_error = env_file_error;
        Box::pin(doctor::examine(&context)).await
    })?;
    let elapsed = started.elapsed();
    if ui.json {
        ui.json_document(&serde_json::json!({ "findings": findings }));
    } else {
        ui.data(&render(&findings));
        ui.info(summary(&findings, elapsed.as_secs_f64()));
    }
    Ok(if findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `masstockctl`, with `--config` and `--env` as the operator gave them (defaults left out).
fn invocation(global: &GlobalArgs) -> String {
    let mut line = String::from("masstockctl");
    if global.config.as_os_str() != "deploy.toml" {
        let _ = write!(line, " --config {}", global.config.display());
    }
    if global.environment != DEFAULT_ENVIRONMENT {
        let _ = write!(line, " --env {}", global.environment);
    }
    line
}

fn summary(findings: &[Finding], seconds: f64) -> String {
    let errors = findings.iter().filter(|finding| finding.severity == Severity::Error).count();
    let warnings = findings.len() - errors;
    if findings.is_empty() {
        format!("no problem found ({seconds:.1}s)")
    } else {
        let plural = |count: usize, word: &str| format!("{count} {word}{}", if count == 1 { "" } else { "s" });
        format!("{}, {} ({seconds:.1}s)", plural(errors, "error"), plural(warnings, "warning"))
    }
}

/// Each finding as a block: `✗ error  container-down:worker  summary`, then its evidence and fix.
fn render(findings: &[Finding]) -> String {
    let mut text = String::new();
    for finding in findings {
        let mark = match finding.severity {
            Severity::Error => "✗",
            Severity::Warning => "!",
        };
        let _ = writeln!(text, "{mark} {:<7} {}  {}", finding.severity.as_str(), finding.id, finding.summary);
        for line in &finding.evidence {
            let _ = writeln!(text, "    | {line}");
        }
        let _ = writeln!(text, "    fix: {}\n", finding.fix);
    }
    text
}
