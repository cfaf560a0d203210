//! The services' command lines: a default command, and missing settings named by their
//! environment variable.

use std::process::ExitCode;

/// Installs ring as rustls's process-level provider, for `rediss://` URLs: redis's TLS support
/// asks rustls for the process default, which rustls can only guess when exactly one provider is
/// compiled in, and panics otherwise. Installing it twice is harmless.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A service's whole `main`: parses the arguments into `C` (see [`parse`]), starts the async
/// runtime and runs `run` on it; the exit status is `run`'s.
pub fn main<C, F>(default_command: &str, run: impl FnOnce(C) -> F) -> ExitCode
where
    C: clap::Parser,
    F: std::future::Future<Output = ExitCode>,
{
    match parse::<C>(default_command) {
        Ok(cli) => block_on(run(cli)),
        Err(status) => status,
    }
}

/// The `healthcheck [--url URL]` subcommand of an HTTP service (the container's health check,
/// answered by [`crate::healthcheck::command`]): how its help names the service, and the URL it
/// GETs unless told otherwise.
#[derive(Debug, Clone, Copy)]
pub struct HttpHealthcheck {
    /// As in "Check that {service} answers": `the API`, `the server`.
    pub service: &'static str,
    pub default_url: &'static str,
}

impl HttpHealthcheck {
    fn command(self) -> clap::Command {
        clap::Command::new("healthcheck")
            .about(format!("Check that {} answers (the container's health check): exit 0 on a 2xx", self.service))
            .arg(
                clap::Arg::new("url").long("url").value_name("URL").help("What to GET").default_value(self.default_url),
            )
    }
}

/// [`main`] for an HTTP service: `healthcheck` is added after `C`'s own subcommands and answered
/// here, so each service declares it with one value; every other command goes to `run`.
pub fn main_with_healthcheck<C, F>(
    default_command: &str,
    healthcheck: HttpHealthcheck,
    run: impl FnOnce(C) -> F,
) -> ExitCode
where
    C: clap::Parser,
    F: std::future::Future<Output = ExitCode>,
{
    let mut matches = match matches::<C>(default_command, C::command().subcommand(healthcheck.command())) {
        Ok(matches) => matches,
        Err(status) => return status,
    };
    if let Some(("healthcheck", arguments)) = matches.subcommand() {
        let url = arguments.get_one::<String>("url").cloned().unwrap_or_else(|| healthcheck.default_url.to_owned());
        return block_on(async move { crate::healthcheck::command(&url).await });
    }
    match C::from_arg_matches_mut(&mut matches) {
        Ok(cli) => block_on(run(cli)),
        Err(error) => report::<C>(&error.format(&mut C::command())),
    }
}

/// Runs `future` to its end on a new multi-threaded runtime.
fn block_on(future: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(future),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::from(1)
        }
    }
}

/// Parses the process's arguments into `C` (after installing the TLS provider every service
/// needs), running `default_command` when none is named. On an error, prints it (a missing
/// setting as the environment variable to set) and returns the exit status: 2 for bad usage, 0
/// for `--help` and `--version`.
pub fn parse<C: clap::Parser>(default_command: &str) -> Result<C, ExitCode> {
    let mut matches = matches::<C>(default_command, C::command())?;
    C::from_arg_matches_mut(&mut matches).map_err(|error| report::<C>(&error.format(&mut C::command())))
}

/// The process's arguments matched against `command` (`C`'s, perhaps with more subcommands),
/// with [`parse`]'s handling of errors. A secret's `NAME_FILE` is read first
/// ([`crate::config::read_secret_files`]); one that cannot be read is exit status 2.
fn matches<C: clap::CommandFactory>(
    default_command: &str,
    command: clap::Command,
) -> Result<clap::ArgMatches, ExitCode> {
    install_tls_provider();
    let command = crate::config::read_secret_files(command).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(2)
    })?;
    command.try_get_matches_from(arguments(default_command)).map_err(|error| report::<C>(&error))
}

/// Prints a parsing error (a missing setting as the environment variable to set) and returns
/// its exit status.
fn report<C: clap::CommandFactory>(error: &clap::Error) -> ExitCode {
    match missing_variables::<C>(error) {
        Some(variables) => eprintln!(
            "error: missing environment variable{}: {}",
            if variables.len() == 1 { "" } else { "s" },
            variables.join(", ")
        ),
        None => {
            let _ = error.print();
        }
    }
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}

/// The arguments with `default_command` inserted when no command is named.
fn arguments(default_command: &str) -> Vec<std::ffi::OsString> {
    let mut arguments: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let named = arguments
        .get(1)
        .and_then(|first| first.to_str())
        .is_some_and(|first| !first.starts_with('-') || matches!(first, "-h" | "--help" | "-V" | "--version"));
    if !named {
        arguments.insert(1.min(arguments.len()), default_command.into());
    }
    arguments
}

/// For a missing required argument that has an environment variable, the variable's name:
/// services are configured by their environment, so that is what the operator must set.
fn missing_variables<C: clap::CommandFactory>(error: &clap::Error) -> Option<Vec<String>> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::MissingRequiredArgument {
        return None;
    }
    let Some(ContextValue::Strings(missing)) = error.get(ContextKind::InvalidArg) else { return None };
    let command = C::command();
    let arguments: Vec<&clap::Arg> = command
        .get_subcommands()
        .flat_map(|sub| sub.get_subcommands().chain([sub]))
        .flat_map(clap::Command::get_arguments)
        .collect();
    missing
        .iter()
        .map(|shown| {
            let long = shown.trim_start_matches("--").split_whitespace().next().unwrap_or_default();
            let argument = arguments.iter().find(|argument| argument.get_long() == Some(long))?;
            argument.get_env().map(|variable| format!("{} (or {shown})", variable.to_string_lossy()))
        })
        .collect()
}
