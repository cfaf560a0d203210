//! `masstock-worker run|healthcheck`: the command line, and the exit statuses: 0 success (or
//! healthy), 1 failure (or unhealthy, whatever the reason: Docker reads only 0 and 1), 2 bad
//! usage or configuration of `run`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{QueueArgs, RunArgs};

/// MasStock's worker: takes executions off the `workflow-queue` and turns their prompts into
/// images with Gemini.
///
/// Configured by the environment (`DATABASE_URL`, `REDIS_URL`, `GEMINI_API_KEY`, `GEMINI_BASE_URL`,
/// `GEMINI_MODEL`, `GEMINI_RPM`, `WORKER_CONCURRENCY`, `UPLOADS_DIR`); `run` is the default command.
#[derive(Debug, Parser)]
#[command(name = "masstock-worker", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Process jobs until SIGTERM (the default)
    Run(Box<RunArgs>),
    /// Check that Redis answers and this worker's heartbeat is fresh (the container's health
    /// check): exit 0 when healthy
    Healthcheck(QueueArgs),
}

#[must_use]
pub fn main() -> ExitCode {
    masstock_kit::cli::main("run", |cli: Cli| async move {
        match cli.command {
            Command::Run(args) => match args.settings() {
                Ok(settings) => crate::run::run(settings).await,
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(2)
                }
            },
            Command::Healthcheck(args) => match crate::healthcheck::check(&args, Duration::from_secs(5)).await {
                Ok(age) => {
                    println!("healthy: heartbeat {} s old", age.as_secs());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("unhealthy: {error}");
                    ExitCode::from(1)
                }
            },
        }
    })
}
