//! `masstock-api serve|migrate|user add`: the command line, and the exit statuses
//! (0 success, 1 failure, 2 bad usage or configuration).

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use masstock_kit::cli::HttpHealthcheck;

use crate::config::{check_url, DatabaseArgs, ServeArgs};

/// MasStock's HTTP API.
///
/// Configured by the environment (`DATABASE_URL`, `REDIS_URL`, `JWT_SECRET`, `CORS_ORIGIN`, `PORT`,
/// `APP_ENV`, `TRUSTED_PROXIES`, `UPLOADS_DIR`); `serve` is the default command.
#[derive(Debug, Parser)]
#[command(name = "masstock-api", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once at start-up; boxing buys nothing")]
pub enum Command {
    /// Serve the API (the default)
    Serve(ServeArgs),
    /// Apply the database migrations
    Migrate(DatabaseArgs),
    /// Manage users
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from stdin
    ///
    /// Example: `printf '%s' "$PASSWORD" | masstock-api user add --email ana@example.com --password-stdin`
    Add {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        email: String,
        /// Read the password from stdin (required: passwords never go on the command line)
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Premium users' executions run first
        #[arg(long)]
        premium: bool,
    },
}

#[must_use]
pub fn main() -> ExitCode {
    let healthcheck = HttpHealthcheck { service: "the API", default_url: "http://127.0.0.1:3000/health" };
    masstock_kit::cli::main_with_healthcheck("serve", healthcheck, |cli: Cli| run(cli.command))
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve(args) => serve(&args).await,
        Command::Migrate(args) => migrate(&args).await,
        Command::User(UserCommand::Add { database, email, password_stdin: _, premium }) => {
            add_user(&database, &email, premium).await
        }
    }
}

async fn serve(args: &ServeArgs) -> ExitCode {
    let settings = match args.settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    masstock_kit::init_logs(settings.app_env, "info,sqlx=warn,tower_http=warn");
    let (port, grace) = (settings.port, settings.shutdown_grace);
    let state = match crate::app::AppState::new(settings) {
        Ok(state) => state,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, port, "cannot listen");
            return ExitCode::from(1);
        }
    };
    tracing::info!(port, "listening");
    let (stop_sweeper, sweeper_stopped) = tokio::sync::oneshot::channel::<()>();
    let sweeper = tokio::spawn(crate::sweeper::run(state.clone(), async move {
        let _ = sweeper_stopped.await;
    }));
    let served =
        masstock_kit::server::run(listener, crate::app::router(state), masstock_kit::termination(), grace).await;
    let _ = stop_sweeper.send(());
    let _ = sweeper.await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::from(1)
        }
    }
}

async fn connect(args: &DatabaseArgs) -> Result<sqlx::PgPool, ExitCode> {
    let url = check_url("DATABASE_URL", &args.database_url, &["postgres", "postgresql"]).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(2)
    })?;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url.expose())
        .await
        .map_err(|error| {
            // sqlx's connection errors name the host, never the password.
            eprintln!("error: cannot connect to PostgreSQL (DATABASE_URL): {error}");
            ExitCode::from(1)
        })
}

async fn migrate(args: &DatabaseArgs) -> ExitCode {
    let pool = match connect(args).await {
        Ok(pool) => pool,
        Err(status) => return status,
    };
    match masstock_schema::migrate(&pool).await {
        Ok(()) => {
            eprintln!("migrations applied ({} known)", masstock_schema::MIGRATOR.iter().count());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: migration failed: {error}");
            ExitCode::from(1)
        }
    }
}

async fn add_user(args: &DatabaseArgs, email: &str, premium: bool) -> ExitCode {
    let mut password = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut password) {
        eprintln!("error: cannot read the password from stdin: {error}");
        return ExitCode::from(1);
    }
    // One trailing newline is the terminal's, not the password's.
    let password =
        password.strip_suffix('\n').map_or(password.as_str(), |rest| rest.strip_suffix('\r').unwrap_or(rest));
    let pool = match connect(args).await {
        Ok(pool) => pool,
        Err(status) => return status,
    };
    match crate::users::add_user(&pool, email, password, premium).await {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(error @ (crate::users::UserError::InvalidEmail(_) | crate::users::UserError::WeakPassword)) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}
