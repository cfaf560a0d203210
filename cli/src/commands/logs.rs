//! `masstockctl logs`: services' container output, their stdout on ours and their stderr on ours;
//! one service as it wrote it, several (or all) interleaved behind their names (`docker::logs`).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::query_parameters::LogsOptionsBuilder;

use crate::commands::GlobalArgs;
use crate::config::units;
use crate::docker;
use crate::docker::logs::{LogsError, Output, Source};
use crate::error::CommandError;
use crate::ui::Ui;

/// Print services' container output
///
/// Reads `<project>_<service>` through the Docker Engine API. What the container wrote to stdout
/// goes to stdout, what it wrote to stderr goes to stderr, so `2>/dev/null` keeps only one of
/// them. `--json` does not apply: the lines are the services' own (JSON already in production).
/// One service's output is printed as it is; with several services, or none named (every
/// deployed service), the lines are interleaved as they come, each behind `<service> | `, as
/// `docker compose logs` does.
///
/// Examples: `masstockctl logs api --since 10m --follow`, `masstockctl logs -f api worker`
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The services, as deploy.toml names them (`api`, `worker`, …); none for every deployed one
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
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
    let declared: Vec<&str> = stack.services().map(|(name, _)| name).collect();
    if let Some(unknown) = args.services.iter().find(|service| !declared.contains(&service.as_str())) {
        return Err(CommandError::usage(format!("no service `{unknown}` in environment `{}`", stack.environment))
            .with_hint(format!("the services are: {}", declared.join(", "))));
    }
    let named = !args.services.is_empty();
    let services: Vec<&str> = if named { args.services.iter().map(String::as_str).collect() } else { declared };
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
        // Named services must all be deployed; with none named, the deployed ones are read.
        let mut sources = Vec::new();
        for service in &services {
            let container = stack.container_name(service);
            match docker.inspect_container(&container, None).await {
                Ok(_) => sources.push(Source { service: (*service).to_owned(), container }),
                Err(error) if docker::is_not_found(&error) && !named => {}
                Err(error) if docker::is_not_found(&error) => {
                    return Err(CommandError::failure(format!(
                        "no container `{container}`: service `{service}` is not deployed"
                    ))
                    .with_hint(format!("`masstockctl --env {} deploy` creates it", stack.environment)));
                }
                Err(error) => return Err(docker::api_error(format!("failed to inspect `{container}`"), &error).into()),
            }
        }
        if sources.is_empty() {
            return Err(CommandError::failure(format!(
                "no service of environment `{}` is deployed",
                stack.environment
            ))
            .with_hint(format!("`masstockctl --env {} deploy` creates them", stack.environment)));
        }
        let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
        // A closed pipe (`| head`) ends the command quietly: the sink's error stops the reading.
        docker::logs::stream(&docker, &sources, &options, |output, bytes| match output {
            Output::Stdout => stdout.write_all(bytes).and_then(|()| stdout.flush()),
            Output::Stderr => stderr.write_all(bytes).and_then(|()| stderr.flush()),
        })
        .await
        .map_err(|LogsError::Read { container, source }| {
            docker::api_error(format!("failed to read the logs of `{container}`"), &source)
        })?;
        Ok(ExitCode::SUCCESS)
    })?
}
