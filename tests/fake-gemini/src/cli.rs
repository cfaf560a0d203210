//! The `fake-gemini` command line: start the fake, print where it listens, stop on SIGTERM or SIGINT.

use std::io::{IsTerminal as _, Write as _};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::{FakeGemini, ImageMode, Settings};

/// A stand-in for Google's Gemini API, speaking its REST format, for tests and the local environment.
///
/// Prints `listening on http://HOST:PORT` on stdout once it accepts connections, then serves until
/// SIGTERM or SIGINT. Point `GEMINI_BASE_URL` at that address. Prompt triggers (`[fail:500]`,
/// `[flaky:2]`, `[slow:300]`, `[noimage]`, `[blocked]`) and the `/_fake/stats` and `/_fake/settings`
/// endpoints are described in the crate's documentation.
#[derive(Debug, Parser)]
#[command(name = "fake-gemini", version)]
pub struct Cli {
    /// The address to listen on; 0.0.0.0 lets containers reach it through host.docker.internal
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// The port to listen on; 0 picks a free one
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The only API key accepted; without it, any non-empty key is
    #[arg(long, env = "FAKE_GEMINI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// How long generating an answer takes, in milliseconds
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Up to this many more milliseconds, drawn per request
    #[arg(long, default_value_t = 0)]
    pub latency_jitter_ms: u64,
    /// The fraction of requests (0 to 1) that fail with 503 or 500
    #[arg(long, default_value_t = 0.0, value_parser = parse_failure_rate)]
    pub failure_rate: f64,
    /// Seeds which requests fail, the jitter and the response ids
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Answer 429 beyond this many requests in any 60 s window
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub requests_per_minute: Option<u32>,
    /// What requests get when they succeed
    #[arg(long, value_enum, default_value_t = ImageMode::Image)]
    pub image_mode: ImageMode,
}

fn parse_failure_rate(text: &str) -> Result<f64, String> {
    let failure_rate: f64 = text.parse().map_err(|error| format!("`{text}` is not a number: {error}"))?;
    if (0.0..=1.0).contains(&failure_rate) {
        Ok(failure_rate)
    } else {
        Err(format!("`{text}` is not between 0 and 1"))
    }
}

impl Cli {
    #[must_use]
    pub fn settings(&self) -> Settings {
        Settings {
            host: self.host,
            port: self.port,
            api_key: self.api_key.clone(),
            latency: Duration::from_millis(self.latency_ms),
            latency_jitter: Duration::from_millis(self.latency_jitter_ms),
            failure_rate: self.failure_rate,
            seed: self.seed,
            requests_per_minute: self.requests_per_minute,
            image_mode: self.image_mode,
        }
    }
}

/// Runs the binary: 0 after a signal, 1 when it cannot listen, 2 on bad usage (from clap).
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let server = match FakeGemini::start(cli.settings()) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: cannot listen on `{}:{}`: {error}", cli.host, cli.port);
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "listening on {}", server.url()).and_then(|()| stdout.flush()).is_err() {
        eprintln!("error: cannot write the address to stdout");
        return ExitCode::FAILURE;
    }
    drop(stdout);

    if let Err(error) = wait_for_termination() {
        eprintln!("error: cannot wait for signals: {error}");
        return ExitCode::FAILURE;
    }
    tracing::info!("stopping on a signal");
    server.shutdown();
    ExitCode::SUCCESS
}

/// Waits for SIGTERM or SIGINT (Ctrl-C).
fn wait_for_termination() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = terminate.recv() => Ok(()),
                result = tokio::signal::ctrl_c() => result,
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await
        }
    })
}
