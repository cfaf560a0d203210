//! The command line: global flags, the command tree, and dispatch. One file per command.

pub mod backup;
pub mod build;
pub mod certs;
pub mod completions;
pub mod config;
pub mod cors;
pub mod deploy;
pub mod doctor;
pub mod down;
pub mod health;
pub mod lock;
pub mod logs;
pub mod ports;
pub mod queue;
pub mod render;
pub mod restart;
pub mod restore;
pub mod rollback;
pub mod secrets;
pub mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Stack, DEFAULT_ENVIRONMENT};
use crate::docker::build::BuildOptions;
use crate::error::CommandError;
use crate::ui::Ui;

/// Deploy and operate the MasStock stack on a Docker host.
///
/// Reads the stack from deploy.toml. Exit status: 0 success, 1 the operation failed or a check
/// found a problem, 2 bad usage or invalid configuration.
#[derive(Debug, Parser)]
#[command(
    name = "masstockctl",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("MASSTOCK_GIT_REVISION"), ")"),
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The stack's declaration
    #[arg(long, global = true, value_name = "FILE", default_value = "deploy.toml", env = "MASSTOCK_CONFIG")]
    pub config: PathBuf,
    /// The environment section of deploy.toml to use
    #[arg(long = "env", global = true, value_name = "NAME", default_value = DEFAULT_ENVIRONMENT, env = "MASSTOCK_ENV")]
    pub environment: String,
    /// Print one JSON document on stdout; talk and progress go to stderr
    #[arg(long, global = true)]
    pub json: bool,
    /// Never draw progress bars (they are only drawn on a terminal anyway)
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Say more (repeat for even more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Say less: errors only
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

impl GlobalArgs {
    /// The output settings these flags ask for.
    #[must_use]
    pub fn ui(&self) -> Ui {
        Ui::new(self.json, self.verbose, self.quiet, !self.no_progress)
    }

    /// Loads deploy.toml for the selected environment, printing its warnings.
    pub fn load_stack(&self, ui: &Ui) -> Result<Stack, CommandError> {
        let stack = Stack::load(&self.config, &self.environment)?;
        for warning in &stack.warnings {
            ui.warning(warning);
        }
        Ok(stack)
    }

    /// Loads deploy.toml without reading the env file: for commands that never need a secret's
    /// value (`render`) or that write the file (`secrets generate`).
    pub fn load_stack_without_env_file(&self) -> Result<Stack, CommandError> {
        let source = crate::config::read_source(&self.config)?;
        Ok(Stack::from_source_without_env_file(&source, &self.environment)?)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate deploy.toml and show what it declares
    #[command(subcommand)]
    Config(config::ConfigCommand),
    Render(render::RenderArgs),
    Build(build::BuildArgs),
    /// Manage the env file that holds the stack's secrets
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    Deploy(deploy::DeployArgs),
    Rollback(rollback::RollbackArgs),
    Restart(restart::RestartArgs),
    Down(down::DownArgs),
    /// Show or release the deploy lock
    #[command(subcommand)]
    Lock(lock::LockCommand),
    /// Inspect and repair the job queue in Redis
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    Status(status::StatusArgs),
    Logs(logs::LogsArgs),
    Health(health::HealthArgs),
    Doctor(doctor::DoctorArgs),
    /// Check the API's CORS through the edge, as a browser would
    #[command(subcommand)]
    Cors(cors::CorsCommand),
    Ports(ports::PortsArgs),
    /// Obtain, renew and inspect the TLS certificates (ACME)
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    Backup(backup::BackupArgs),
    Restore(restore::RestoreArgs),
    Completions(completions::CompletionsArgs),
}

/// Runs the parsed command.
pub fn run(cli: &Cli, ui: &Ui) -> Result<ExitCode, CommandError> {
    match &cli.command {
        Command::Config(command) => config::run(&cli.global, ui, command),
        Command::Render(args) => render::cmd_render(&cli.global, ui, args),
        Command::Build(args) => build::cmd_build(&cli.global, ui, args),
        Command::Secrets(command) => secrets::run(&cli.global, ui, command),
        Command::Deploy(args) => deploy::cmd_deploy(&cli.global, ui, args),
        Command::Rollback(args) => rollback::cmd_rollback(&cli.global, ui, args),
        Command::Restart(args) => restart::cmd_restart(&cli.global, ui, args),
        Command::Down(args) => down::cmd_down(&cli.global, ui, args),
        Command::Lock(command) => lock::run(&cli.global, ui, command),
        Command::Queue(command) => queue::run(&cli.global, ui, command),
        Command::Status(args) => status::cmd_status(&cli.global, ui, args),
        Command::Logs(args) => logs::cmd_logs(&cli.global, ui, args),
        Command::Health(args) => health::cmd_health(&cli.global, ui, args),
        Command::Doctor(args) => doctor::cmd_doctor(&cli.global, ui, args),
        Command::Cors(command) => cors::run(&cli.global, ui, command),
        Command::Ports(args) => ports::cmd_ports(&cli.global, ui, args),
        Command::Certs(command) => certs::run(&cli.global, ui, command),
        Command::Backup(args) => backup::run(&cli.global, ui, args),
        Command::Restore(args) => restore::cmd_restore(&cli.global, ui, args),
        Command::Completions(args) => completions::cmd_completions(ui, args),
    }
}

/// How our images' binaries are obtained (`build` and `deploy` take these).
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// The cargo profile to build the binaries with
    #[arg(long, value_name = "PROFILE", default_value = "release")]
    pub cargo_profile: String,
    /// Take prebuilt binaries from this folder instead of running cargo
    #[arg(long = "binaries", value_name = "DIR")]
    pub binaries_dir: Option<PathBuf>,
}

impl ImageArgs {
    #[must_use]
    pub fn options(&self) -> BuildOptions {
        BuildOptions { cargo_profile: self.cargo_profile.clone(), binaries_dir: self.binaries_dir.clone() }
    }
}
