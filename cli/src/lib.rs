//! masstockctl: the operator's CLI that validates deploy.toml, renders the edge and compose files,
//! and deploys and runs the MasStock stack.

pub mod atomic;
pub mod backup;
pub mod certs;
pub mod commands;
pub mod config;
pub mod cors;
pub mod deploy;
pub mod docker;
pub mod doctor;
pub mod error;
pub mod health;
pub mod ports;
pub mod progress;
pub mod queue_target;
pub mod render;
pub mod report;
pub mod runtime;
pub mod secrets;
pub mod systemd;
pub mod ui;

use std::process::ExitCode;

use clap::Parser as _;

pub use commands::Cli;
pub use error::{CommandError, ErrorKind};

/// Parses the command line, runs the command and maps the outcome to an exit status:
/// 0 success, 1 the operation failed or found a problem, 2 bad usage or invalid configuration.
#[must_use]
pub fn main() -> ExitCode {
    install_tls_provider();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap prints help and version to stdout with status 0, usage errors with status 2.
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    let ui = cli.global.ui();
    match commands::run(&cli, &ui) {
        Ok(status) => status,
        Err(error) => {
            ui.command_error(&error);
            error.exit_code()
        }
    }
}

/// Installs ring as rustls's process-level provider, for `rediss://` URLs. redis's TLS support asks
/// rustls for the process default, which rustls can only guess when exactly one provider is
/// compiled in, and panics otherwise (bullmq-official's redis features compile in none; feature
/// unification may bring two). Installing it twice is harmless, so the answer is ignored.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
