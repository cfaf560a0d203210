//! The shared service kit: what MasStock's services (the API, the worker, the web server) share
//! at run time. Secrets that never print, the deployment environment, logs and the termination
//! signal here; the command line (`cli`, with the HTTP services' `healthcheck`), settings checks
//! (`config`), the health check itself (`healthcheck`) and the HTTP server (`server`) in modules.
//!
//! Written once here so the services cannot drift apart:
//!
//! - `Secret`: a redacted `Debug`, no `Display`.
//! - `AppEnv`, and `init_logs`: JSON lines in production, colour only on a terminal and never with
//!   `NO_COLOR`.
//! - `termination()`: SIGTERM or Ctrl-C.
//! - `cli::parse`: a default command, and a missing setting reported as its environment variable;
//!   `cli::main_with_healthcheck` adds the HTTP services' `healthcheck` subcommand, declared once.
//! - `config::{ConfigError, check_url}`: errors that name the variable and never echo a URL, which
//!   may hold a password.
//! - `config::read_secret_files`: `NAME_FILE` before `NAME` for every setting read from the
//!   environment (deploy mounts secrets as files at `/run/secrets/NAME`), called by `cli`'s
//!   parsing so each service gets it without declaring it.
//! - `server::run(listener, router, shutdown, grace)`: shutdown is an argument, so tests pass their
//!   own; in-flight requests get `grace` to finish.
//! - `healthcheck`: the `healthcheck --url` of the HTTP services (one HTTP/1.0 GET, a 2xx is
//!   healthy), since their images have no shell and no wget.

pub mod cli;
pub mod config;
pub mod healthcheck;
pub mod server;

use std::fmt;
use std::str::FromStr;

/// A value that must never be printed: `Debug` shows `[redacted]`, and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

/// `APP_ENV`: `production` logs JSON lines (and makes the API's cookies `Secure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AppEnv {
    Production,
    Staging,
    Local,
    Test,
}

impl AppEnv {
    #[must_use]
    pub fn is_production(self) -> bool {
        self == Self::Production
    }
}

/// Logs on stderr: JSON lines in production, readable lines elsewhere. `RUST_LOG` refines
/// `default_filter`.
pub fn init_logs(app_env: AppEnv, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colour only on a terminal, and never with `NO_COLOR`: log files stay plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = if app_env.is_production() {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
}

/// Resolves on SIGTERM (what `docker stop` sends) or Ctrl-C.
pub async fn termination() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
