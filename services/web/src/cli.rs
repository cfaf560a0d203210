//! `masstock-web [serve] --root DIR --port N` and `masstock-web healthcheck [--url URL]`: the
//! command line, and the exit statuses (0 success or healthy, 1 failure or unhealthy, 2 bad usage
//! or configuration).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use masstock_kit::cli::HttpHealthcheck;
use masstock_kit::AppEnv;

use crate::site::SiteSettings;

/// MasStock's static web server: the app (a single-page application) or the landing page.
///
/// `serve` is the default command: `masstock-web --root DIR --port N`.
#[derive(Debug, Parser)]
#[command(name = "masstock-web", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a folder (the default)
    Serve(ServeArgs),
}

/// Everything `serve` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The folder to serve; its `index.html` answers the paths that name no file
    #[arg(long, env = "WEB_ROOT", value_name = "DIR")]
    pub root: PathBuf,
    /// The port to listen on
    #[arg(long, env = "PORT", default_value_t = 80)]
    pub port: u16,
    /// The deployment environment, told to the browser in `/config.json`
    #[arg(long, env = "APP_ENV", value_enum, default_value = "production")]
    pub app_env: AppEnv,
    /// Where the app calls the API, told to the browser in `/config.json`
    #[arg(long, env = "API_BASE_URL", value_name = "URL")]
    pub api_base_url: Option<String>,
    /// Where the landing page's links to the app point, told to the browser in `/config.json`
    #[arg(long, env = "APP_URL", value_name = "URL")]
    pub app_url: Option<String>,
    /// How long in-flight requests may take to finish after SIGTERM, in seconds
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,
}

impl ServeArgs {
    /// The site's settings; the root must be a folder with an `index.html`.
    pub fn settings(&self) -> Result<SiteSettings, String> {
        let index = self.root.join("index.html");
        if !index.is_file() {
            return Err(format!("`{}` is not a folder with an index.html (--root or WEB_ROOT)", self.root.display()));
        }
        for (variable, url) in [("API_BASE_URL", &self.api_base_url), ("APP_URL", &self.app_url)] {
            if let Some(url) = url {
                if !(url.starts_with("https://") || url.starts_with("http://")) || url.chars().any(char::is_whitespace)
                {
                    return Err(format!("{variable}: `{url}` is not an http(s) URL"));
                }
            }
        }
        Ok(SiteSettings {
            root: self.root.clone(),
            environment: self.app_env,
            api_base_url: self.api_base_url.clone(),
            app_url: self.app_url.clone(),
        })
    }
}

#[must_use]
pub fn main() -> ExitCode {
    let healthcheck = HttpHealthcheck { service: "the server", default_url: "http://127.0.0.1:80/health" };
    masstock_kit::cli::main_with_healthcheck("serve", healthcheck, |cli: Cli| async move {
        match cli.command {
            Command::Serve(args) => serve(&args).await,
        }
    })
}

async fn serve(args: &ServeArgs) -> ExitCode {
    let settings = match args.settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    masstock_kit::init_logs(settings.environment, "info");
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", args.port)).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, port = args.port, "cannot listen");
            return ExitCode::from(1);
        }
    };
    tracing::info!(port = args.port, root = %settings.root.display(), "listening");
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    let router = crate::site::router(&settings);
    match masstock_kit::server::run(listener, router, masstock_kit::termination(), grace).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the server failed");
            ExitCode::from(1)
        }
    }
}
