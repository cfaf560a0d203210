//! `masstockctl health`: every check of the deployed stack at once, each with its deadline and
//! latency (the checks themselves live in `crate::health`).

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bollard::Docker;
use futures_util::future::join_all;

use crate::commands::GlobalArgs;
use crate::config::{units, Stack};
use crate::docker;
use crate::error::CommandError;
use crate::health::{self, Check, Expect, UnresolvedSecret};
use crate::secrets::ResolveError;
use crate::ui::Ui;

/// Check that the deployed stack works, end to end
///
/// Runs every check at once, each within `--timeout`, and prints each one's verdict, latency and
/// detail:
///
/// - `container <service>`: every enabled service's container `<project>_<service>` runs, and is
///   healthy when it has a Docker health check (a missing container fails, saying so).
///
/// - `http <service> <path>`: each service's HTTP health path (its `healthcheck.http`) answers a
///   2xx through the port it publishes on `edge.upstream_host` (`api`'s `/health` must say
///   `"status":"ok"`, `app`'s must say `healthy`); and `api`'s `/health/ready`, which probes its
///   own PostgreSQL and Redis.
///
/// - `redis`: `PING` with the password (the redis service's `REDIS_PASSWORD`, else the one in the
///   API's `REDIS_URL`), at the redis container's address on the project network (redis
///   publishes no port), and `INFO persistence`: the append-only file is on and its last write
///   succeeded.
///
/// - `worker heartbeat`: a worker wrote its heartbeat in Redis less than 30 s ago.
///
/// - `postgres`: `SELECT 1` with the API's `DATABASE_URL` (a `host.docker.internal` host is this
///   machine, reached on 127.0.0.1).
///
/// - `site <domain>`: each enabled site answers through the edge (nginx) over HTTPS, on
///   `edge.upstream_host:edge.https_port` with the site's domain as SNI and Host, trusting the
///   system's roots and `edge.ca_bundle`.
///
/// Exit status: 0 when every check passes, 1 otherwise. `--json` prints
/// `{"healthy": bool, "checks": [{"name", "ok", "detail", "latency_ms"}]}`; with `--watch`, one
/// such document per line and round (JSON Lines). No secret appears in any detail.
///
/// Example: `masstockctl health --watch 5`
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Run the checks again every SECS seconds (2 when no value is given), until Ctrl-C
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<u64>,
    /// How long each check may take (`500ms`, `5s`, …)
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub timeout: units::Duration,
}

pub fn cmd_health(global: &GlobalArgs, ui: &Ui, args: &HealthArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack(ui)?;
    let timeout = args.timeout.0;
    if timeout.is_zero() {
        return Err(CommandError::usage("`--timeout` must be longer than zero"));
    }
    if args.watch == Some(0) {
        return Err(CommandError::usage("`--watch` takes a number of seconds above zero"));
    }
    crate::runtime::block_on(async {
        loop {
            let checks = run_checks(&stack, timeout).await;
            let healthy = checks.iter().all(|check| check.ok);
            report(ui, &checks, args.watch.is_some());
            let Some(every) = args.watch else { return Ok(exit_code(healthy)) };
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(every)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(exit_code(healthy)),
            }
        }
    })?
}

fn exit_code(healthy: bool) -> ExitCode {
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints one round: a JSON document, or the table (redrawn in place on a terminal when watching).
fn report(ui: &Ui, checks: &[Check], watching: bool) {
    let healthy = checks.iter().all(|check| check.ok);
    if ui.json {
        let document = serde_json::json!({ "healthy": healthy, "checks": checks });
        if watching {
            ui.data(&format!("{document}\n"));
        } else {
            ui.json_document(&document);
        }
        return;
    }
    let mut text = String::new();
    if watching && std::io::stdout().is_terminal() {
        // Home, then clear the screen: the new round replaces the last one.
        text.push_str("\x1b[H\x1b[2J");
    }
    text.push_str(&table(checks));
    let failed = checks.iter().filter(|check| !check.ok).count();
    if watching {
        let now = chrono::Local::now().format("%H:%M:%S");
        let _ = writeln!(text, "\n{now}  {} (Ctrl-C stops)", summary(failed, checks.len()));
        ui.data(&text);
    } else {
        ui.data(&text);
        ui.info(summary(failed, checks.len()));
    }
}

fn summary(failed: usize, total: usize) -> String {
    if failed == 0 {
        format!("healthy: {total} checks passed")
    } else {
        format!("unhealthy: {failed} of {total} checks failed")
    }
}

/// `✓ name  latency  detail`, columns aligned.
fn table(checks: &[Check]) -> String {
    let name_width = checks.iter().map(|check| check.name.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for check in checks {
        let mark = if check.ok { "✓" } else { "✗" };
        let latency = format!("{}ms", check.latency_ms);
        let _ = writeln!(text, "{mark} {:<name_width$}  {latency:>7}  {}", check.name, check.detail);
    }
    text
}

/// A check to run, borrowing the stack's secrets to scrub its detail.
type PendingCheck<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Check> + Send + 'a>>;

/// Every check of the stack, run at once, in a stable order: the containers, the HTTP health
/// paths, Redis and the worker's heartbeat, PostgreSQL, the sites through the edge.
pub async fn run_checks(stack: &Stack, timeout: Duration) -> Vec<Check> {
    let secrets = health::secret_values(stack);
    let secrets = secrets.as_slice();
    let docker = docker::connect().await;
    let mut checks: Vec<PendingCheck<'_>> = Vec::new();
    checks.extend(container_checks(stack, docker.as_ref(), timeout, secrets));
    checks.extend(http_checks(stack, timeout, secrets));
    checks.extend(redis_checks(stack, docker.as_ref().ok(), timeout, secrets).await);
    checks.extend(postgres_check(stack, timeout, secrets));
    checks.extend(site_checks(stack, timeout, secrets));
    join_all(checks).await
}

/// A check that failed before it could run.
fn failed_now<'a>(name: impl Into<String>, reason: impl Into<String>) -> PendingCheck<'a> {
    Box::pin(std::future::ready(health::failed(name, reason)))
}

/// `container <service>` for every enabled service.
fn container_checks<'a>(
    stack: &Stack,
    docker: Result<&Docker, &docker::DockerError>,
    timeout: Duration,
    secrets: &'a [String],
) -> Vec<PendingCheck<'a>> {
    stack
        .start_order()
        .into_iter()
        .map(|service| {
            let name = format!("container {service}");
            let container = stack.container_name(service);
            match docker {
                Ok(docker) => {
                    let docker = docker.clone();
                    Box::pin(async move {
                        health::timed(
                            name,
                            timeout,
                            secrets,
                            async move { health::container(&docker, &container).await },
                        )
                        .await
                    }) as PendingCheck<'a>
                }
                Err(error) => failed_now(name, error.chain().join(": ")),
            }
        })
        .collect()
}

/// `http <service> <path>` through the published ports.
fn http_checks<'a>(stack: &Stack, timeout: Duration, secrets: &'a [String]) -> Vec<PendingCheck<'a>> {
    let client = health::plain_client(timeout);
    let mut checks = Vec::new();
    for (service, path, expect) in http_paths(stack) {
        let name = format!("http {service} {path}");
        let Some(port) = published_port(stack, service) else {
            checks.push(failed_now(name, format!("service `{service}` publishes no port for its health check")));
            continue;
        };
        let url = format!("http://{}{path}", SocketAddr::new(stack.config.edge.upstream_host, port));
        match &client {
            Ok(client) => {
                let client = client.clone();
                checks.push(Box::pin(async move {
                    health::timed(name, timeout, secrets, async move { health::http(&client, &url, expect).await })
                        .await
                }));
            }
            Err(error) => checks.push(failed_now(name, error.to_string())),
        }
    }
    checks
}

/// `redis` and `worker heartbeat`, at the redis container's address.
async fn redis_checks<'a>(
    stack: &Stack,
    docker: Option<&Docker>,
    timeout: Duration,
    secrets: &'a [String],
) -> Vec<PendingCheck<'a>> {
    let Some(redis_service) = stack.services().find(|(name, _)| *name == "redis").map(|(name, _)| name) else {
        return Vec::new();
    };
    let has_worker = stack.services().any(|(name, _)| name == "worker");
    let mut checks = Vec::new();
    match redis_target(stack, docker, redis_service).await {
        Ok(url) => {
            let redis_url = url.clone();
            checks.push(Box::pin(async move {
                health::timed("redis", timeout, secrets, async move { health::redis(&redis_url, timeout).await }).await
            }) as PendingCheck<'a>);
            if has_worker {
                checks.push(Box::pin(async move {
                    health::timed("worker heartbeat", timeout, secrets, async move {
                        health::heartbeat(
                            &url,
                            masstock_queue::PREFIX,
                            masstock_queue::QUEUE,
                            health::now_ms(),
                            timeout,
                        )
                        .await
                    })
                    .await
                }));
            }
        }
        Err(reason) => {
            checks.push(failed_now("redis", reason.clone()));
            if has_worker {
                checks.push(failed_now("worker heartbeat", reason));
            }
        }
    }
    checks
}

/// `postgres`: `SELECT 1` with the API's (else the worker's) `DATABASE_URL`.
fn postgres_check<'a>(stack: &Stack, timeout: Duration, secrets: &'a [String]) -> Option<PendingCheck<'a>> {
    let (service, declared) = ["api", "worker"]
        .into_iter()
        .find_map(|service| Some((service, stack.environment_of(service).get("DATABASE_URL")?.clone())))
        .filter(|(service, _)| stack.services().any(|(name, _)| name == *service))?;
    Some(match health::resolve_secrets(stack, &declared, &format!("`DATABASE_URL` of service `{service}`")) {
        Ok(url) => Box::pin(async move {
            health::timed("postgres", timeout, secrets, async move { health::postgres(&url).await }).await
        }),
        Err(unresolved) => failed_now("postgres", unresolved_reason(&unresolved)),
    })
}

/// `site <domain>` for each enabled site, through the edge.
fn site_checks<'a>(stack: &Stack, timeout: Duration, secrets: &'a [String]) -> Vec<PendingCheck<'a>> {
    let edge = &stack.config.edge;
    let edge_address = SocketAddr::new(edge.upstream_host, edge.https_port);
    stack
        .sites()
        .map(|(_, site)| {
            let name = format!("site {}", site.domain);
            let path = stack
                .config
                .services
                .get(&site.service)
                .and_then(|service| service.healthcheck.as_ref())
                .and_then(|check| check.http.clone())
                .unwrap_or_else(|| "/".to_owned());
            let domain = site.domain.clone();
            let ca_bundle = edge.ca_bundle.clone();
            Box::pin(async move {
                health::timed(name, timeout, secrets, async move {
                    health::site(&domain, edge_address, &path, ca_bundle.as_deref(), timeout).await
                })
                .await
            }) as PendingCheck<'a>
        })
        .collect()
}

/// The HTTP health paths to check: each enabled service's `healthcheck.http`, and the API's
/// readiness. The web server's `/health` and the API's have known bodies.
fn http_paths(stack: &Stack) -> Vec<(&str, String, Expect)> {
    let mut paths = Vec::new();
    for service in stack.start_order() {
        let Some(path) = stack.config.services[service].healthcheck.as_ref().and_then(|check| check.http.clone())
        else {
            continue;
        };
        let expect = match (service, path.as_str()) {
            ("api", "/health") => Expect::StatusOk,
            ("app", "/health") => Expect::Text("healthy"),
            _ => Expect::Anything,
        };
        paths.push((service, path, expect));
        if service == "api" {
            paths.push((service, "/health/ready".to_owned(), Expect::Anything));
        }
    }
    paths
}

/// The host port of the container port a service's health check uses (or of its only port).
fn published_port(stack: &Stack, service: &str) -> Option<u16> {
    let declared = &stack.config.services[service];
    let container_port = declared.healthcheck.as_ref().and_then(|check| check.port);
    match container_port {
        Some(port) => {
            declared.ports.iter().find(|published| published.container == port).map(|published| published.host)
        }
        None => declared.ports.first().map(|published| published.host),
    }
}

/// `redis://:<password>@<container ip>:<port>` for the redis container on the project network.
pub async fn redis_target(stack: &Stack, docker: Option<&Docker>, service: &str) -> Result<String, String> {
    let Some(docker) = docker else { return Err("the Docker engine is unreachable".to_owned()) };
    let address = docker::container_address(docker, &stack.container_name(service), &stack.config.project.network)
        .await
        .map_err(|error| error.to_string())?;
    let password = health::redis_password(stack, service).map_err(|unresolved| unresolved_reason(&unresolved))?;
    Ok(health::redis_url(&address, 6379, password.as_deref()))
}

/// What `health` says when a secret a check needs cannot be resolved.
fn unresolved_reason(unresolved: &UnresolvedSecret) -> String {
    let what = &unresolved.what;
    match &unresolved.error {
        ResolveError::Syntax(_) => unresolved.error.to_string(),
        ResolveError::NoEnvFile { path, names } => format!(
            "{what} needs `{}` from the env file `{}`, which does not exist (`masstockctl secrets generate`)",
            names.join("`, `"),
            path.display()
        ),
        ResolveError::Unset { path, names } => {
            format!("{what} needs `{}`, which is not set in `{}`", names[0], path.display())
        }
        ResolveError::BreaksUrl { .. } => unresolved.to_string(),
    }
}
