//! `masstockctl cors test`: a browser's CORS exchange with the API, through the edge, judged
//! against deploy.toml's `[cors]` (the exchange and the judgement live in `crate::cors`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Subcommand;

use crate::commands::GlobalArgs;
use crate::cors::{api_site, container_cors_origin, exchange, judge, Report, REQUEST_TIMEOUT};
use crate::docker;
use crate::error::CommandError;
use crate::health;
use crate::ui::Ui;

#[derive(Debug, Subcommand)]
pub enum CorsCommand {
    Test(TestArgs),
}

/// Send a browser's CORS requests to the API through the edge and judge the answers
///
/// Against the public site whose `cors = true`, over HTTPS to `edge.upstream_host:edge.https_port`
/// with the site's domain as SNI and Host (trusting the system's roots and `edge.ca_bundle`):
///
/// - the preflight: `OPTIONS <path>` with `Origin`, `Access-Control-Request-Method: GET` and
///   `Access-Control-Request-Headers: content-type,authorization`;
///
/// - the real request: `GET <path>` with `Origin` (without credentials, so 401 is the usual
///   status: CORS headers must be there all the same).
///
/// Prints each one's status and the `Access-Control-*` and `Vary` headers it returned, then the
/// verdict. For an origin `[cors] origins` lists, the preflight must answer 204 with
/// `Access-Control-Allow-Origin` equal to the origin (never `*` with credentials),
/// `-Allow-Credentials: true` when `[cors] credentials`, methods and headers that cover the
/// request, and `Vary: Origin`; the real answer must carry `Access-Control-Allow-Origin` equal to
/// the origin too. For any other origin, neither answer may carry `Access-Control-Allow-Origin`:
/// refused, as deploy.toml wants.
///
/// It also reads `CORS_ORIGIN` (and no other variable) from the API's container and says when it
/// differs from `[cors] origins`: `masstockctl deploy` sets it again.
///
/// Exit status: 0 when the verdict is ok, 1 otherwise. `--json` prints `{"origin", "url",
/// "preflight": {"status", "headers": {…}}, "request": {"status", "headers": {…}},
/// "container_cors_origin", "ok", "verdict", "reasons": […]}` (`status` is `null` when no answer
/// came).
///
/// Example: `masstockctl cors test --origin https://evil.example`
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The origin to send (default: the first of `[cors] origins`)
    #[arg(long, value_name = "URL")]
    pub origin: Option<String>,
    /// The API path to request: a GET route (one that needs authentication answers 401, with CORS
    /// headers all the same)
    #[arg(long, value_name = "P", default_value = "/api/v1/workflows")]
    pub path: String,
}

pub fn run(global: &GlobalArgs, ui: &Ui, command: &CorsCommand) -> Result<ExitCode, CommandError> {
    match command {
        CorsCommand::Test(args) => cmd_cors_test(global, ui, args),
    }
}

pub fn cmd_cors_test(global: &GlobalArgs, ui: &Ui, args: &TestArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack_without_env_file()?;
    let cors = &stack.config.cors;
    let Some(site) = api_site(&stack) else {
        return Err(CommandError::usage("no enabled site has `cors = true`: there is no API to test CORS against"));
    };
    let origin =
        match &args.origin {
            Some(origin) => origin.trim_end_matches('/').to_owned(),
            None => cors.origins.first().cloned().ok_or_else(|| {
                CommandError::usage("`[cors] origins` is empty: give the origin to test with `--origin`")
            })?,
        };
    if !args.path.starts_with('/') {
        return Err(CommandError::usage(format!("`--path` must start with `/`, not `{}`", args.path)));
    }
    let edge = &stack.config.edge;
    let edge_address = SocketAddr::new(edge.upstream_host, edge.https_port);
    let url = health::edge_url(&site.domain, edge_address, &args.path);
    let client = health::edge_client(&site.domain, edge_address, edge.ca_bundle.as_deref(), REQUEST_TIMEOUT)
        .map_err(CommandError::failure)?;
    let container = stack.container_name(&site.service);
    let ((preflight, request), container_env) = crate::runtime::block_on(async {
        tokio::join!(exchange(&client, &url, &origin), async {
            let docker = docker::connect().await.map_err(|error| {
                format!("the API container's `CORS_ORIGIN` is not compared: {}", error.chain().join(": "))
            })?;
            container_cors_origin(&docker, &container).await.map_err(|error| error.to_string())
        })
    })?;
    let (container_cors_origin, container_note) = match container_env {
        Ok(value) => (value, None),
        Err(note) => (None, Some(note)),
    };
    let report = judge(cors, &origin, &url, preflight, request, container_cors_origin, &container);
    if let Some(note) = container_note {
        ui.info(format!("note: {note}"));
    }
    if ui.json {
        ui.json_document(&serde_json::to_value(&report).unwrap_or_default());
    } else {
        ui.data(&render(&report, edge_address));
        if !report.ok {
            for reason in &report.reasons {
                ui.failure(reason);
            }
        }
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// What an operator reads.
fn render(report: &Report, edge: SocketAddr) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "origin  {}\nurl     {} (through {edge})", report.origin, report.url);
    for (what, answer) in [("preflight OPTIONS", &report.preflight), ("request   GET", &report.request)] {
        match (answer.status, &answer.error) {
            (Some(status), _) => {
                let _ = writeln!(text, "\n{what} → {status}");
            }
            (None, Some(error)) => {
                let _ = writeln!(text, "\n{what} → no answer: {error}");
            }
            (None, None) => {
                let _ = writeln!(text, "\n{what} → no answer");
            }
        }
        if answer.headers.is_empty() {
            let _ = writeln!(text, "  (no Access-Control-* header)");
        }
        for (name, value) in &answer.headers {
            let _ = writeln!(text, "  {}: {value}", header_case(name));
        }
    }
    if let Some(value) = &report.container_cors_origin {
        let _ = writeln!(text, "\ncontainer CORS_ORIGIN={value}");
    }
    let _ = writeln!(text, "\n{}", report.verdict);
    for reason in &report.reasons {
        let _ = writeln!(text, "  - {reason}");
    }
    text
}

/// `access-control-allow-origin` → `Access-Control-Allow-Origin`.
fn header_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut characters = part.chars();
            characters
                .next()
                .map_or_else(String::new, |first| first.to_ascii_uppercase().to_string() + characters.as_str())
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_written_as_browsers_show_them() {
        assert_eq!(header_case("access-control-allow-origin"), "Access-Control-Allow-Origin");
    }
}
