//! `masstockctl logs`: a service's container output, its stdout on ours and its stderr on ours.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt as _;

use crate::commands::GlobalArgs;
use crate::config::units;
use crate::docker;
use crate::error::CommandError;
use crate::ui::Ui;

/// Print a service's container output
///
/// Reads `<project>_<service>` through the Docker Engine API. What the container wrote to stdout
/// goes to stdout, what it wrote to stderr goes to stderr, so `2>/dev/null` keeps only one of
/// them. `--json` does not apply: the lines are the services' own (JSON already in production).
///
/// Example: `masstockctl logs api --since 10m --follow`
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The service, as deploy.toml names it (`api`, `worker`, …)
    pub service: String,
    /// Keep printing as the container writes, until Ctrl-C or the container stops
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines to print first (`all` for every line)
    #[arg(long, value_name = "N", default_value = "100", value_parser = parse_tail)]
    pub tail: String,
    /// Only lines written in the last DURATION (`10m`, `2h`, `1d`)
    #[arg(long, value_name = "DURATION")]
    pub since: Option<units::Duration>,
    /// Prefix each line with the time the engine received it (RFC 3339)
    #[arg(long)]
    pub timestamps: bool,
}

fn parse_tail(text: &str) -> Result<String, String> {
    if text == "all" || text.parse::<u64>().is_ok() {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is neither a number of lines nor `all`"))
    }
}

pub fn cmd_logs(global: &GlobalArgs, _ui: &Ui, args: &LogsArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack_without_env_file()?;
    if !stack.services().any(|(name, _)| name == args.service) {
        let declared: Vec<&str> = stack.services().map(|(name, _)| name).collect();
        return Err(CommandError::usage(format!(
            "no service `{}` in environment `{}`",
            args.service, stack.environment
        ))
        .with_hint(format!("the services are: {}", declared.join(", "))));
    }
    let container = stack.container_name(&args.service);
    let since = match args.since {
        Some(duration) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
            i32::try_from(now.saturating_sub(duration.as_secs())).unwrap_or(0)
        }
        None => 0,
    };
    let options = LogsOptionsBuilder::default()
        .follow(args.follow)
        .stdout(true)
        .stderr(true)
        .tail(&args.tail)
        .since(since)
        .timestamps(args.timestamps)
        .build();
    crate::runtime::block_on(async {
        let docker = docker::connect().await?;
        // Ask first, so that a missing container is said plainly rather than as a stream error.
        if let Err(error) = docker.inspect_container(&container, None).await {
            return Err(if docker::is_not_found(&error) {
                CommandError::failure(format!("no container `{container}`: service `{}` is not deployed", args.service))
                    .with_hint(format!("`masstockctl --env {} deploy` creates it", stack.environment))
            } else {
                docker::api_error(format!("failed to inspect `{container}`"), &error).into()
            });
        }
        let mut stream = docker.logs(&container, Some(options));
        let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
        while let Some(item) = stream.next().await {
            let written = match item {
                Ok(LogOutput::StdErr { message }) => stderr.write_all(&message).and_then(|()| stderr.flush()),
                // A container with a terminal has one stream, which is its stdout.
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    stdout.write_all(&message).and_then(|()| stdout.flush())
                }
                Ok(LogOutput::StdIn { .. }) => Ok(()),
                Err(error) => {
                    return Err(docker::api_error(format!("failed to read the logs of `{container}`"), &error).into());
                }
            };
            // A closed pipe (`| head`) ends the command quietly.
            if written.is_err() {
                break;
            }
        }
        Ok(ExitCode::SUCCESS)
    })?
}
