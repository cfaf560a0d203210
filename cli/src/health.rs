//! The checks behind `masstockctl health`. Each one takes what it checks as an argument (a
//! container name, a URL, an address) rather than a `Stack`, so that tests can aim it at a
//! server of their own. [`timed`] runs one with a deadline and measures it; a check answers
//! `Ok(detail)` or `Err(reason)`, both said for an operator.
//!
//! The checks' inputs that come from deploy.toml live here too: [`redis_password`] (also read by
//! `doctor`) and [`secret_values`], the values every detail is scrubbed of.
//!
//! No detail may hold a secret: callers pass the secret values they used to [`timed`], which
//! replaces them with `***` in whatever a client library put in its error message.
//!
//! # What `health` answers
//!
//! "Does the stack work?", for an operator, from the host, the way the reference's troubleshooting
//! guide asks it, but in one command and without the `docker` CLI. Every check runs at once
//! (`join_all`), each with its own deadline (`--timeout`, 5 s) and its latency, so one hanging
//! dependency costs one timeout, not the sum. Exit 1 when any check fails. No check depends on
//! another's verdict: each says why it could not run (no container, a secret missing from the env
//! file, the engine unreachable) instead of being skipped. The command turns the `Stack` into the
//! list of checks; the checks are:
//!
//! - **`container <service>`**, for every enabled service: the engine's state and Docker health of
//!   `<project>_<service>`, the primary (a rollout's `_standby` is `status`'s business). Running
//!   without a health check passes; `starting` and `unhealthy` fail, the latter quoting the last
//!   health log. A missing container says `masstockctl deploy` creates it. This is the reference's
//!   `docker ps -a` and `docker inspect … Health`.
//! - **`http <service> <path>`**, for each service with an `http` health check: the same path, but
//!   from the host through the port the service publishes on `edge.upstream_host`. It proves what
//!   the container's own check cannot: the port mapping works, which is nginx's path in. The API's
//!   `/health` must say `"status":"ok"` and the app's `healthy` (DESIGN's contract), and the API's
//!   `/health/ready` is checked too, because it probes the API's own PostgreSQL and Redis and names
//!   what failed. Redirects are not followed: a redirect there is a misconfiguration worth seeing.
//! - **`redis`**: `PING` with the password (the redis service's `REDIS_PASSWORD`, else the one in
//!   the API's `REDIS_URL`, from the env file), then `INFO persistence`: `aof_enabled:1` and
//!   `aof_last_write_status:ok`, because the queue survives a restart only through the AOF and a
//!   full disk shows there first. Redis publishes no port, so the check goes to the container's
//!   address on the project network (`NetworkSettings.Networks[network].IPAddress`); on Linux the
//!   host reaches bridge addresses. The password is percent-encoded into the URL, so any value
//!   works.
//! - **`worker heartbeat`**: the freshest `bull:workflow-queue:heartbeat:*` is under 30 s old (the
//!   key's TTL and the worker's own health check's limit), read with the queue crate's read-only
//!   `Inspector`, the view `queue ls` uses. A worker whose container runs but whose loop is stuck
//!   fails here and nowhere else.
//! - **`postgres`**: `SELECT 1` with the API's `DATABASE_URL` (sqlx). A `host.docker.internal` host
//!   means the Docker host, which is this machine, so it is reached on 127.0.0.1.
//! - **`site <domain>`**, for each enabled site: HTTPS through nginx at
//!   `edge.upstream_host:edge.https_port`, with the domain as SNI and Host (reqwest's `resolve`), so
//!   neither DNS nor the public address is involved, and the certificate is verified against the
//!   system's roots plus `edge.ca_bundle` (the local environment's test CA). The path is the site
//!   service's health path, or `/`. This is the reference's "from the internet" `curl`, minus DNS.
//!
//! **Secrets never show.** Each detail passes through [`scrub`], which replaces every value of the
//! env file (and its percent-encoding) with `***`, whatever a client library put in its error.
//! PostgreSQL is named by `host:port/database` only.
//!
//! `--watch [SECS]` runs the round again every SECS seconds (2) until Ctrl-C and exits with the
//! last round's verdict. On a terminal it redraws in place; with `--json` it prints one document
//! per line.

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use bollard::Docker;
use serde::Serialize;
use sqlx::Connection as _;

use crate::config::Stack;
use crate::docker::{engine_message, is_not_found};
use crate::secrets::{self, ResolveError};

/// How old the worker's heartbeat may be: its key's TTL, and the worker's own health check's
/// limit (`masstock-worker healthcheck`).
pub const HEARTBEAT_MAX_AGE_S: u64 = 30;

/// The host that means "the Docker host" inside a container (`extra_hosts: host-gateway`).
const DOCKER_HOST_ALIAS: &str = "host.docker.internal";

/// How much of a body or a health log a detail quotes.
const QUOTE_CHARS: usize = 160;

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub latency_ms: u64,
}

/// Milliseconds since the epoch: the clock ages of jobs and heartbeats are measured against.
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(0))
}

/// Runs `check` for at most `timeout`, measures it, and hides `secrets` in its detail.
pub async fn timed(
    name: impl Into<String>,
    timeout: Duration,
    secrets: &[String],
    check: impl Future<Output = Result<String, String>>,
) -> Check {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}", seconds(timeout))));
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (ok, detail) = match outcome {
        Ok(detail) => (true, detail),
        Err(reason) => (false, reason),
    };
    Check { name: name.into(), ok, detail: scrub(&detail, secrets), latency_ms }
}

/// A check that could not even start (a secret missing, no address): failed, with its reason.
pub fn failed(name: impl Into<String>, reason: impl Into<String>) -> Check {
    Check { name: name.into(), ok: false, detail: reason.into(), latency_ms: 0 }
}

/// `text` with every secret value replaced by `***` (longest first, so a secret that contains
/// another is hidden whole).
#[must_use]
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&String> = secrets.iter().filter(|secret| !secret.is_empty()).collect();
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    let mut text = text.to_owned();
    for secret in secrets {
        text = text.replace(secret.as_str(), "***");
        // A URL may carry it percent-encoded.
        let encoded = percent_encode(secret);
        if encoded != *secret {
            text = text.replace(&encoded, "***");
        }
    }
    text
}

/// How long the health test may take when `container` runs it itself.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A container that runs and, when it has a Docker health check, is healthy (or, while Docker's
/// first probe is due, passes its health test when run now).
pub async fn container(docker: &Docker, name: &str) -> Result<String, String> {
    let inspected = match docker.inspect_container(name, None).await {
        Ok(inspected) => inspected,
        Err(error) if is_not_found(&error) => {
            return Err(format!("no container `{name}`: `masstockctl deploy` creates it"));
        }
        Err(error) => return Err(format!("cannot inspect `{name}`: {}", engine_message(&error))),
    };
    let state = inspected.state.unwrap_or_default();
    let restarts = inspected.restart_count.unwrap_or(0);
    let restarts = if restarts > 0 { format!(", {restarts} restarts") } else { String::new() };
    let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
    if status != ContainerStateStatusEnum::RUNNING {
        let exit = state.exit_code.map(|code| format!(" (exit code {code})")).unwrap_or_default();
        let since =
            state.finished_at.as_deref().and_then(age_since).map(|age| format!(" {age} ago")).unwrap_or_default();
        let oom = if state.oom_killed == Some(true) { ", killed for lack of memory" } else { "" };
        return Err(format!("{status}{exit}{since}{oom}{restarts}; `masstockctl logs` shows why"));
    }
    let up = state.started_at.as_deref().and_then(age_since).map(|age| format!(", up {age}")).unwrap_or_default();
    let Some(health) = state.health else { return Ok(format!("running{up}{restarts} (no health check)")) };
    match health.status.unwrap_or(HealthStatusEnum::NONE) {
        HealthStatusEnum::HEALTHY => Ok(format!("running, healthy{up}{restarts}")),
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => Ok(format!("running{up}{restarts} (no health check)")),
        HealthStatusEnum::STARTING => {
            // Docker's first probe comes only after `interval` (30 s); `deploy` declares a
            // container ready once its health test passes, so ask the test itself meanwhile.
            let test =
                inspected.config.and_then(|config| config.healthcheck).and_then(|check| check.test).unwrap_or_default();
            let Some(command) = crate::deploy::wait::probe_command(&test) else {
                return Err(format!("running, health check still starting{up}{restarts}"));
            };
            match crate::deploy::wait::run_probe(docker, name, &command, PROBE_TIMEOUT).await {
                Ok(()) => Ok(format!("running, health test passes (Docker's first probe is still due){up}{restarts}")),
                Err(said) => Err(format!(
                    "running, health check still starting, and the health test fails: {said}{up}{restarts}"
                )),
            }
        }
        HealthStatusEnum::UNHEALTHY => {
            let streak = health.failing_streak.unwrap_or(0);
            let last = health
                .log
                .and_then(|log| log.into_iter().last())
                .and_then(|result| result.output)
                .map(|output| format!(": {}", quote(&output)))
                .unwrap_or_default();
            Err(format!("running, unhealthy ({streak} failed checks in a row){last}{restarts}"))
        }
    }
}

/// What an HTTP answer must hold besides a 2xx status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Any body.
    Anything,
    /// JSON with `"status": "ok"` (the API's `/health`).
    StatusOk,
    /// Exactly this text, spaces around it aside (the web server's `/health` says `healthy`).
    Text(&'static str),
}

/// `GET url` answers a 2xx with what `expect` says.
pub async fn http(client: &reqwest::Client, url: &str, expect: Expect) -> Result<String, String> {
    let response = client.get(url).send().await.map_err(|error| format!("GET {url}: {}", reqwest_reason(&error)))?;
    let status = response.status();
    let body = response.text().await.map_err(|error| format!("GET {url}: {}", reqwest_reason(&error)))?;
    if !status.is_success() {
        let body = if body.trim().is_empty() { String::new() } else { format!(": {}", quote(&body)) };
        return Err(format!("GET {url} answered {status}{body}"));
    }
    match expect {
        Expect::Anything => {}
        Expect::StatusOk => {
            let value: serde_json::Value = serde_json::from_str(&body)
                .map_err(|_| format!("GET {url} answered {status} with a body that is not JSON: {}", quote(&body)))?;
            if value.get("status").and_then(serde_json::Value::as_str) != Some("ok") {
                return Err(format!("GET {url} answered {status} without `\"status\": \"ok\"`: {}", quote(&body)));
            }
        }
        Expect::Text(text) => {
            if body.trim() != text {
                return Err(format!("GET {url} answered {status} with {}, not `{text}`", quote(&body)));
            }
        }
    }
    Ok(format!("GET {url} → {status}"))
}

/// Why a client for the checks cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `edge.ca_bundle` cannot be read or holds no certificate.
    #[error("`edge.ca_bundle`: {0}")]
    CaBundle(crate::certs::trust::TrustError),
    /// rustls refuses the configuration.
    #[error("{0}")]
    Tls(crate::certs::trust::TrustError),
    #[error("cannot build an HTTP client: {error}")]
    Http { error: reqwest::Error },
    #[error("cannot build an HTTPS client: {error}")]
    Https { error: reqwest::Error },
}

/// A client for the checks through published ports: no proxy, no redirects followed (a redirect
/// is an answer worth seeing, not a success).
pub fn plain_client(timeout: Duration) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|error| ClientError::Http { error })
}

/// `GET https://<domain><path>` through the edge at `edge` (with `domain` as SNI and Host),
/// trusting the system's roots plus those in `ca_bundle`.
pub async fn site(
    domain: &str,
    edge: SocketAddr,
    path: &str,
    ca_bundle: Option<&Path>,
    timeout: Duration,
) -> Result<String, String> {
    let client = edge_client(domain, edge, ca_bundle, timeout).map_err(|error| error.to_string())?;
    let url = edge_url(domain, edge, path);
    let detail = http(&client, &url, Expect::Anything).await?;
    Ok(format!("{detail} (through {edge})"))
}

/// A client that reaches `domain` at the edge address `edge` (SNI and Host stay `domain`),
/// trusting what `certs::trust::root_store` gives (the system's roots plus those in
/// `ca_bundle`, as doctor's chain check does); no proxy, no redirects followed.
pub fn edge_client(
    domain: &str,
    edge: SocketAddr,
    ca_bundle: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, ClientError> {
    let roots = crate::certs::trust::root_store(ca_bundle).map_err(ClientError::CaBundle)?;
    let tls = crate::certs::trust::client_config(roots).map_err(ClientError::Tls)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .resolve(domain, edge)
        .build()
        .map_err(|error| ClientError::Https { error })
}

/// `https://<domain>[:<port>]<path>` for the edge's HTTPS port (443 is left out).
#[must_use]
pub fn edge_url(domain: &str, edge: SocketAddr, path: &str) -> String {
    let port = if edge.port() == 443 { String::new() } else { format!(":{}", edge.port()) };
    format!("https://{domain}{port}{path}")
}

/// Redis answers `PING` (with the password in `url`) and writes its append-only file.
pub async fn redis(url: &str, timeout: Duration) -> Result<String, String> {
    let mut connection = redis_connection(url, timeout).await?;
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .map_err(|error| format!("PING failed: {}", redis_reason(&error)))?;
    if pong != "PONG" {
        return Err(format!("PING answered `{}`", quote(&pong)));
    }
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut connection)
        .await
        .map_err(|error| format!("INFO persistence failed: {}", redis_reason(&error)))?;
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(str::trim))
            .unwrap_or("?")
            .to_owned()
    };
    let (enabled, last_write) = (field("aof_enabled"), field("aof_last_write_status"));
    if enabled != "1" {
        return Err(format!(
            "PONG, but the append-only file is off (aof_enabled:{enabled}): a restart would lose the queue"
        ));
    }
    if last_write != "ok" {
        return Err(format!("PONG, but the last append-only write failed (aof_last_write_status:{last_write})"));
    }
    Ok("PONG; append-only file on, last write ok".to_owned())
}

/// Some worker under `prefix:queue` wrote its heartbeat less than [`HEARTBEAT_MAX_AGE_S`] ago.
pub async fn heartbeat(url: &str, prefix: &str, queue: &str, now_ms: u64, timeout: Duration) -> Result<String, String> {
    let mut inspector =
        masstock_queue::admin::Inspector::connect(url, timeout).await.map_err(|error| error.to_string())?;
    let queues = inspector.queues(prefix, now_ms).await.map_err(|error| error.to_string())?;
    let beats: Vec<_> = queues
        .into_iter()
        .filter(|summary| summary.name == queue)
        .flat_map(|summary| summary.heartbeats)
        .filter(|beat| beat.unreadable.is_none())
        .collect();
    let freshest = beats.iter().filter_map(|beat| Some((beat.age_s?, beat))).min_by_key(|(age, _)| *age);
    match freshest {
        Some((age, beat)) if age < HEARTBEAT_MAX_AGE_S => {
            Ok(format!("worker `{}` beat {age}s ago ({} worker(s) seen)", beat.worker_id, beats.len()))
        }
        Some((age, beat)) => Err(format!(
            "the freshest heartbeat (worker `{}`) is {age}s old, over {HEARTBEAT_MAX_AGE_S}s: the worker is stuck or \
             cannot write to redis",
            beat.worker_id
        )),
        None => Err(format!(
            "no worker heartbeat under `{prefix}:{queue}:heartbeat:*`: no worker is running against this redis"
        )),
    }
}

/// PostgreSQL lets us in with `url` and answers `SELECT 1`. A `host.docker.internal` host is the
/// Docker host, that is this machine: it is reached on 127.0.0.1.
pub async fn postgres(url: &str) -> Result<String, String> {
    let options = sqlx::postgres::PgConnectOptions::from_str(url)
        .map_err(|error| format!("`DATABASE_URL` is not a PostgreSQL URL: {error}"))?;
    let options = if options.get_host() == DOCKER_HOST_ALIAS { options.host("127.0.0.1") } else { options };
    let shown = format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or(""));
    let mut connection = sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(|error| format!("cannot connect to {shown}: {error}"))?;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut connection)
        .await
        .map_err(|error| format!("SELECT 1 on {shown} failed: {error}"))?;
    let _ = connection.close().await;
    if one == 1 {
        Ok(format!("SELECT 1 on {shown}"))
    } else {
        Err(format!("SELECT 1 on {shown} answered {one}"))
    }
}

/// A value from deploy.toml that a check needs and the env file cannot complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {error}")]
pub struct UnresolvedSecret {
    /// The variable, e.g. ``"`REDIS_URL` of service `api`"``.
    pub what: String,
    pub error: ResolveError,
}

/// `declared`, the value of `what`, with its secrets from `stack`'s env file.
pub fn resolve_secrets(stack: &Stack, declared: &str, what: &str) -> Result<String, UnresolvedSecret> {
    secrets::splice_in(stack, declared).map_err(|error| UnresolvedSecret { what: what.to_owned(), error })
}

/// The redis service's `REDIS_PASSWORD`, else the password in the API's (or worker's) `REDIS_URL`.
pub fn redis_password(stack: &Stack, service: &str) -> Result<Option<String>, UnresolvedSecret> {
    if let Some(declared) = stack.environment_of(service).get("REDIS_PASSWORD") {
        let what = format!("`REDIS_PASSWORD` of service `{service}`");
        return resolve_secrets(stack, declared, &what).map(Some);
    }
    for client in ["api", "worker"] {
        let Some(declared) = stack.environment_of(client).get("REDIS_URL").cloned() else { continue };
        let url = resolve_secrets(stack, &declared, &format!("`REDIS_URL` of service `{client}`"))?;
        return Ok(masstock_queue::admin::url_password(&url));
    }
    Ok(None)
}

/// Every secret value the env file holds, to be hidden in the checks' details.
#[must_use]
pub fn secret_values(stack: &Stack) -> Vec<String> {
    stack
        .secrets
        .env_file
        .as_ref()
        .map(|file| file.values().into_values().filter(|value| !value.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// `redis://:<password>@<host>:<port>`, the password percent-encoded so that any value works.
#[must_use]
pub fn redis_url(host: &str, port: u16, password: Option<&str>) -> String {
    match password.filter(|password| !password.is_empty()) {
        Some(password) => format!("redis://:{}@{host}:{port}", percent_encode(password)),
        None => format!("redis://{host}:{port}"),
    }
}

async fn redis_connection(url: &str, timeout: Duration) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|error| format!("not a redis URL: {}", redis_reason(&error)))?;
    let config =
        redis::AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|error| format!("cannot connect: {}", redis_reason(&error)))
}

fn redis_reason(error: &redis::RedisError) -> String {
    let text = error.to_string();
    let lower = text.to_lowercase();
    if ["wrongpass", "noauth", "invalid password", "authentication"].iter().any(|word| lower.contains(word)) {
        format!("{text} (is `REDIS_PASSWORD` in the env file the one redis was started with?)")
    } else {
        text
    }
}

/// reqwest's error with its causes (the outermost says only "error sending request").
#[must_use]
pub fn reqwest_reason(error: &reqwest::Error) -> String {
    let mut reasons = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        // reqwest's and hyper's wrappers repeat the URL or say nothing the causes do not.
        let wrapper = text.starts_with("error sending request") || text.starts_with("client error");
        if !wrapper && !reasons.iter().any(|reason: &String| reason.contains(&text)) {
            reasons.push(text);
        }
        source = cause.source();
    }
    if reasons.is_empty() {
        reasons.push(error.to_string());
    }
    if error.is_timeout() {
        reasons.push("timed out".to_owned());
    }
    reasons.join(": ")
}

/// At most [`QUOTE_CHARS`] characters of `text`, on one line.
fn quote(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > QUOTE_CHARS {
        format!("{}…", one_line.chars().take(QUOTE_CHARS).collect::<String>())
    } else {
        one_line
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
#[must_use]
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// How long ago an RFC 3339 instant from the engine was, shortly (`5m07s`); `None` for the zero
/// time the engine reports for "never".
#[must_use]
pub fn age_since(instant: &str) -> Option<String> {
    let seconds = seconds_since(instant)?;
    Some(crate::ui::short_duration(seconds))
}

/// Seconds since an RFC 3339 instant; `None` for the engine's zero time (`0001-01-01…`).
#[must_use]
pub fn seconds_since(instant: &str) -> Option<u64> {
    let instant = chrono::DateTime::parse_from_rfc3339(instant).ok()?;
    if instant.timestamp() <= 0 {
        return None;
    }
    u64::try_from((chrono::Utc::now() - instant.to_utc()).num_seconds()).ok().or(Some(0))
}

fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    //! Each check against a server of the test's own: a `redis-server` child with a password and
    //! AOF, the bootstrap's PostgreSQL, and raw HTTP answers from a local listener.

    use std::process::{Child, Command, Stdio};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    const PASSWORD: &str = "s3cret-Pa55/word";

    /// A `redis-server` child, stopped when dropped, with its data in a temporary folder.
    struct RedisServer {
        child: Child,
        port: u16,
        _dir: tempfile::TempDir,
    }

    impl RedisServer {
        fn start(extra: &[&str]) -> Self {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                .arg("--dir")
                .arg(dir.path())
                .args(extra)
                .stdout(Stdio::null())
                .spawn()
                .expect("`redis-server` is not installed: run `script/bootstrap`");
            let server = Self { child, port, _dir: dir };
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not listen on {port}");
                std::thread::sleep(Duration::from_millis(50));
            }
            server
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn redis_passes_with_the_password_and_the_append_only_file() {
        let server = RedisServer::start(&["--requirepass", PASSWORD, "--appendonly", "yes"]);
        let url = redis_url("127.0.0.1", server.port, Some(PASSWORD));
        let check = timed("redis", TIMEOUT, &[PASSWORD.to_owned()], redis(&url, TIMEOUT)).await;
        assert!(check.ok, "{check:?}");
        assert_eq!(check.detail, "PONG; append-only file on, last write ok");
    }

    #[tokio::test]
    async fn redis_fails_on_a_wrong_password_without_showing_it() {
        let server = RedisServer::start(&["--requirepass", PASSWORD, "--appendonly", "yes"]);
        let wrong = "wrong-password-42";
        let url = redis_url("127.0.0.1", server.port, Some(wrong));
        let check = timed("redis", TIMEOUT, &[wrong.to_owned()], redis(&url, TIMEOUT)).await;
        assert!(!check.ok, "{check:?}");
        assert!(!check.detail.contains(wrong), "{check:?}");
        assert!(check.detail.contains("REDIS_PASSWORD"), "{check:?}");
    }

    #[tokio::test]
    async fn redis_without_the_append_only_file_fails() {
        let server = RedisServer::start(&["--appendonly", "no"]);
        let check = timed("redis", TIMEOUT, &[], redis(&redis_url("127.0.0.1", server.port, None), TIMEOUT)).await;
        assert!(!check.ok, "{check:?}");
        assert!(check.detail.contains("aof_enabled:0"), "{check:?}");
    }

    #[tokio::test]
    async fn heartbeat_is_fresh_stale_or_missing() {
        let server = RedisServer::start(&["--requirepass", PASSWORD]);
        let url = redis_url("127.0.0.1", server.port, Some(PASSWORD));
        let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap();
        let missing = heartbeat(&url, "bull", "workflow-queue", now, TIMEOUT).await;
        assert!(missing.as_ref().is_err_and(|reason| reason.contains("no worker heartbeat")), "{missing:?}");

        let client = redis::Client::open(url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let beat = |worker: &str, at_ms: u64| {
            serde_json::json!({"worker_id": worker, "host": "h", "pid": 1, "concurrency": 3, "active": 0,
                "started_at_ms": at_ms, "at_ms": at_ms})
            .to_string()
        };
        let _: () = redis::cmd("SET")
            .arg("bull:workflow-queue:heartbeat:old")
            .arg(beat("old", now - 60_000))
            .query_async(&mut connection)
            .await
            .unwrap();
        let stale = heartbeat(&url, "bull", "workflow-queue", now, TIMEOUT).await;
        assert!(stale.as_ref().is_err_and(|reason| reason.contains("60s old")), "{stale:?}");

        let _: () = redis::cmd("SET")
            .arg("bull:workflow-queue:heartbeat:w1")
            .arg(beat("w1", now - 3_000))
            .query_async(&mut connection)
            .await
            .unwrap();
        let fresh = heartbeat(&url, "bull", "workflow-queue", now, TIMEOUT).await;
        assert_eq!(fresh, Ok("worker `w1` beat 3s ago (2 worker(s) seen)".to_owned()));
    }

    /// The bootstrap's PostgreSQL (see `.cargo/config.toml`).
    fn database_url() -> String {
        std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://masstock:masstock@127.0.0.1:5432/masstock_test".to_owned())
    }

    #[tokio::test]
    async fn postgres_answers_select_one_also_through_the_docker_host_alias() {
        let url = database_url();
        let check = timed("postgres", TIMEOUT, &[], postgres(&url)).await;
        assert!(check.ok, "{check:?} (is the bootstrap's PostgreSQL running? run `script/bootstrap`)");
        let aliased =
            url.replacen("@127.0.0.1", "@host.docker.internal", 1).replacen("@localhost", "@host.docker.internal", 1);
        assert!(aliased.contains(DOCKER_HOST_ALIAS), "{aliased}");
        let check = timed("postgres", TIMEOUT, &[], postgres(&aliased)).await;
        assert!(check.ok, "{check:?}");
        assert!(check.detail.starts_with("SELECT 1 on 127.0.0.1:"), "{check:?}");
    }

    #[tokio::test]
    async fn postgres_refusing_the_password_is_a_failure_that_hides_it() {
        let options = sqlx::postgres::PgConnectOptions::from_str(&database_url()).unwrap();
        let wrong = "not-the-Password-7";
        let url = format!(
            "postgres://{}:{wrong}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("postgres")
        );
        let check = timed("postgres", TIMEOUT, &[wrong.to_owned()], postgres(&url)).await;
        assert!(!check.ok, "{check:?}");
        assert!(!check.detail.contains(wrong), "{check:?}");
        assert!(check.detail.starts_with("cannot connect to"), "{check:?}");
    }

    /// Serves `answer` to every connection on a free port; the task ends with the test.
    async fn serve(answer: &'static str) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0_u8; 4096];
                let _ = stream.read(&mut request).await;
                if answer.is_empty() {
                    // Never answer: the check's deadline must end it.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                } else {
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            }
        });
        address
    }

    fn response(status: &str, body: &str) -> &'static str {
        let text = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        Box::leak(text.into_boxed_str())
    }

    #[tokio::test]
    async fn http_checks_status_and_body() {
        let client = plain_client(TIMEOUT).unwrap();
        let ok = serve(response("200 OK", r#"{"status":"ok","timestamp":"2025-01-01T00:00:00Z"}"#)).await;
        let url = format!("http://{ok}/health");
        assert_eq!(http(&client, &url, Expect::StatusOk).await, Ok(format!("GET {url} → 200 OK")));
        assert!(http(&client, &url, Expect::Text("healthy")).await.is_err());

        let healthy = serve(response("200 OK", "healthy\n")).await;
        assert!(http(&client, &format!("http://{healthy}/health"), Expect::Text("healthy")).await.is_ok());

        let unready =
            serve(response("503 Service Unavailable", r#"{"status":"unavailable","failed":["redis"]}"#)).await;
        let reason = http(&client, &format!("http://{unready}/health/ready"), Expect::Anything).await.unwrap_err();
        assert!(reason.contains("503 Service Unavailable") && reason.contains("redis"), "{reason}");

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let reason = http(&client, &format!("http://{closed}/"), Expect::Anything).await.unwrap_err();
        assert!(reason.to_lowercase().contains("refused"), "{reason}");
    }

    #[tokio::test]
    async fn a_check_that_does_not_answer_fails_at_its_deadline() {
        let silent = serve("").await;
        let client = plain_client(Duration::from_secs(30)).unwrap();
        let url = format!("http://{silent}/");
        let check = timed("slow", Duration::from_millis(300), &[], http(&client, &url, Expect::Anything)).await;
        assert!(!check.ok);
        assert_eq!(check.detail, "no answer within 300ms");
    }

    #[tokio::test]
    async fn a_site_is_checked_with_its_domain_at_the_edge_address() {
        // Nothing listens there: the failure names the URL with the domain, and the edge.
        let edge: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let reason = site("app.example.test", edge, "/health", None, TIMEOUT).await.unwrap_err();
        assert!(reason.starts_with(&format!("GET https://app.example.test:{}/health", edge.port())), "{reason}");
    }

    #[test]
    fn secrets_are_scrubbed_also_when_percent_encoded() {
        let secrets = vec![PASSWORD.to_owned(), String::new()];
        let text = format!("redis://:{}@h:1 and {PASSWORD}", percent_encode(PASSWORD));
        assert_eq!(scrub(&text, &secrets), "redis://:***@h:1 and ***");
        assert_eq!(redis_url("10.0.0.2", 6379, Some("a/b@c")), "redis://:a%2Fb%40c@10.0.0.2:6379");
        assert_eq!(redis_url("10.0.0.2", 6379, Some("")), "redis://10.0.0.2:6379");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(crate::ui::short_duration(42), "42s");
        assert_eq!(crate::ui::short_duration(307), "5m07s");
        assert_eq!(crate::ui::short_duration(3 * 86_400 + 4 * 3600), "3d04h");
        assert_eq!(seconds_since("0001-01-01T00:00:00Z"), None);
        assert!(seconds_since("2020-01-01T00:00:00.123456789Z").is_some_and(|seconds| seconds > 1000));
    }
}
