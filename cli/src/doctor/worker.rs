//! The reference's "the worker does not process jobs" scenario: Redis reachable and taking the
//! env file's password, every client container started with the password redis runs with, jobs
//! waiting while no worker beats, a paused queue, a backlog, and the last day's failed jobs
//! grouped by cause (a Gemini key refused, a rate limit, Gemini down).
//!
//! - Redis at the container's address with the env file's password: refused (`redis-auth`) or out
//!   of reach (`redis-unreachable`) are told apart by the error. A refused env-file password that
//!   is not the one the redis container was started with is tried the container's way too: when
//!   redis takes that one, the stack still works and the finding is the warning
//!   `redis-password-changed` (the next partial deploy would split redis from its clients), and the
//!   queue is still read. A connected redis that cannot answer the queue's reads is
//!   `queue-unreadable`.
//! - Client containers whose `REDIS_URL` password is not the redis container's `REDIS_PASSWORD`
//!   (`redis-password-mismatch:<service>`: after a secret changed and only some services were
//!   deployed).
//!
//! What a container was started with is read from the secret file it mounts, not from its
//! environment: `NAME_FILE` in `Config.Env` names the file, the mount whose destination holds it
//! gives its host path, which doctor reads (as deploy's user, who can). A container created
//! before secrets became files (`NAME` in its environment) is read the old way.
//! - Jobs waiting (`wait` + `prioritized` + `paused`) with no heartbeat under 30 s or no running
//!   worker container (`queue-no-worker`: a heartbeat outlives a killed worker by its TTL); a
//!   paused queue; a waiting job older than 10 minutes with a worker alive (`queue-backlog`).
//! - The failed jobs of the last 24 hours (`Inspector::recent_failures`: one `ZREVRANGEBYSCORE` on
//!   the failed set, scored by failure time, then the reasons pipelined) grouped by `cause_of`
//!   their reason, as the worker words Gemini's refusals: key refused (`API_KEY_INVALID`, 401,
//!   403), rate limit (429 `RESOURCE_EXHAUSTED`), Gemini down (5xx, retries exhausted), other. Each
//!   cause has its own fix, ending with `queue retry --failed`. One failure of no known cause (a
//!   prompt Gemini would not draw, an execution deleted meanwhile) is a user's business; from 5 in
//!   a day it is reported (`jobs-failed:other`). At most the newest 1,000 are read ("at least
//!   1000").

use std::collections::BTreeMap;

use masstock_queue::admin::{url_password, AdminError, Failure, Inspector, QueueSummary};

use super::{truncate, Context, Finding, Inspected};
use crate::docker;
use crate::health::redis_password;
use crate::health::{self, HEARTBEAT_MAX_AGE_S};
use crate::ui::short_duration;

/// A waiting job older than this, with a worker alive, is a backlog.
const BACKLOG_AGE_S: u64 = 10 * 60;
/// How far back failed jobs count.
const FAILURES_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;
/// The most failed jobs read (the newest).
const FAILURES_READ: usize = 1_000;
/// Failures of no known cause (a prompt Gemini would not draw, an execution deleted meanwhile)
/// are a user's business one at a time; this many in a day are the operator's.
const OTHER_FAILURES_REPORTED: usize = 5;
/// The services that talk to redis with `REDIS_URL`.
const CLIENTS: [&str; 2] = ["api", "worker"];

pub async fn examine(context: &Context<'_>) -> Vec<Finding> {
    let stack = context.stack;
    let Some(docker) = context.docker() else { return Vec::new() };
    if !stack.services().any(|(name, _)| name == "redis") {
        return Vec::new();
    }
    let redis_container = stack.container_name("redis");
    let restart_redis = context.command("restart redis");
    let address = match tokio::time::timeout(
        context.timeout,
        docker::container_address(docker, &redis_container, &stack.config.project.network),
    )
    .await
    {
        Ok(Ok(address)) => address,
        // No container at all is the services group's finding (`container-missing:redis`).
        Ok(Err(docker::AddressError::NoContainer(_))) => return Vec::new(),
        Ok(Err(reason)) => {
            return vec![Finding::error(
                "redis-unreachable",
                "the queue's redis cannot be reached: jobs can be neither added nor taken",
                format!("{restart_redis}, or {} when it does not exist", context.command("deploy redis")),
            )
            .with_evidence([reason.to_string()])];
        }
        Err(_) => return vec![unreachable(context, &redis_container, "the engine did not answer in time")],
    };
    // A missing secret is the services group's `env-missing`; without it there is nothing to try.
    let Ok(password) = redis_password(stack, "redis") else { return Vec::new() };
    let redis = context.inspect(&redis_container).await;
    let running_password = started_with(&redis, "REDIS_PASSWORD");

    let mut findings = password_mismatches(context, running_password.as_deref()).await;
    let connected =
        match Inspector::connect(&health::redis_url(&address, 6379, password.as_deref()), context.timeout).await {
            Ok(inspector) => Ok(inspector),
            // The env file's password refused: is it only the env file that moved on?
            Err(error) if refuses_password(&error.to_string()) => match running_password.as_deref() {
                Some(running) if Some(running) != password.as_deref() => {
                    match Inspector::connect(&health::redis_url(&address, 6379, Some(running)), context.timeout).await {
                        Ok(inspector) => {
                            findings.push(env_file_moved_on(context, &redis_container));
                            Ok(inspector)
                        }
                        Err(_) => Err(error),
                    }
                }
                _ => Err(error),
            },
            Err(error) => Err(error),
        };
    match connected {
        Ok(inspector) => findings.extend(queue_findings(context, inspector).await),
        Err(error) => findings.push(connection_finding(context, &redis_container, &address, &error)),
    }
    findings
}

/// The env file's `REDIS_PASSWORD` is not the one redis runs with, while redis still takes its
/// own: the stack works, and would lock its clients out at the next partial deploy.
fn env_file_moved_on(context: &Context<'_>, container: &str) -> Finding {
    let env_file = context.stack.config.project.env_file.display();
    Finding::warning(
        "redis-password-changed",
        format!("`REDIS_PASSWORD` in `{env_file}` is not the password `{container}` runs with"),
        format!(
            "deploy redis and its clients together, so that all take the env file's: {} (or put the previous \
             value back in `{env_file}`)",
            context.command("deploy redis api worker")
        ),
    )
    .with_evidence([
        format!(
            "`{container}` refuses the env file's password and takes the one it was started with (compared, not shown)"
        ),
        "a deploy of `redis` alone, or of the api or the worker alone, would split them".to_owned(),
    ])
}

fn unreachable(context: &Context<'_>, container: &str, reason: &str) -> Finding {
    Finding::error(
        "redis-unreachable",
        format!("the queue's redis (`{container}`) does not answer: jobs can be neither added nor taken"),
        format!(
            "{}; {} shows why it stopped answering",
            context.command("restart redis"),
            context.command("logs redis")
        ),
    )
    .with_evidence([reason.to_owned()])
}

/// Why connecting failed: a refused password, or redis out of reach.
fn connection_finding(context: &Context<'_>, container: &str, address: &str, error: &AdminError) -> Finding {
    let text = error.to_string();
    if refuses_password(&text) {
        let env_file = context.stack.config.project.env_file.display();
        return Finding::error(
            "redis-auth",
            format!("`{container}` refuses the password of the env file: the api and the worker cannot use the queue"),
            format!(
                "make `REDIS_PASSWORD` in `{env_file}` the one redis runs with, or restart redis and its clients \
                 with the env file's: {}",
                context.command("deploy redis api worker")
            ),
        )
        .with_evidence([format!("AUTH at {address}:6379 with `REDIS_PASSWORD` from `{env_file}`: {text}")]);
    }
    unreachable(context, container, &format!("{address}:6379: {text}"))
}

fn refuses_password(text: &str) -> bool {
    let lower = text.to_lowercase();
    ["wrongpass", "noauth", "invalid password", "invalid username-password", "authentication"]
        .iter()
        .any(|word| lower.contains(word))
}

/// Client containers started with another password than the redis container's: after a secret
/// changed and only some services were deployed again. Passwords are compared, never shown.
async fn password_mismatches(context: &Context<'_>, required: Option<&str>) -> Vec<Finding> {
    let stack = context.stack;
    let redis_container = stack.container_name("redis");
    let Some(required) = required else { return Vec::new() };
    let mut findings = Vec::new();
    for client in CLIENTS {
        if !stack.services().any(|(name, _)| name == client) {
            continue;
        }
        let container = stack.container_name(client);
        let inspected = context.inspect(&container).await;
        let Some(url) = started_with(&inspected, "REDIS_URL") else { continue };
        if url_password(&url).as_deref() != Some(required) {
            findings.push(
                Finding::error(
                    format!("redis-password-mismatch:{client}"),
                    format!("`{container}` connects to redis with another password than `{redis_container}` requires"),
                    format!(
                        "{} recreates both from the env file's `REDIS_PASSWORD`",
                        context.command(&format!("deploy redis {client}"))
                    ),
                )
                .with_evidence([format!(
                    "the password in `{container}`'s `REDIS_URL` differs from `{redis_container}`'s `REDIS_PASSWORD` \
                     (compared, not shown)"
                )]),
            );
        }
    }
    findings
}

fn variable<'a>(environment: &'a [String], name: &str) -> Option<&'a str> {
    environment.iter().find_map(|entry| entry.strip_prefix(name)?.strip_prefix('='))
}

/// The value of `name` the container was started with: the content of the file `NAME_FILE`
/// names, read on the host through the mount that holds it, or else `NAME` in its environment.
/// `None` when neither is there or the file cannot be read.
fn started_with(inspected: &Inspected, name: &str) -> Option<String> {
    let Inspected::Found(container) = inspected else { return None };
    let environment = inspected.environment();
    let Some(in_container) = variable(environment, &format!("{name}_FILE")) else {
        return variable(environment, name).map(str::to_owned);
    };
    let host_path = container.mounts.iter().flatten().find_map(|mount| {
        let destination = mount.destination.as_deref()?;
        let rest = std::path::Path::new(in_container).strip_prefix(destination).ok()?;
        Some(std::path::Path::new(mount.source.as_deref()?).join(rest))
    })?;
    let text = fs_err::read_to_string(host_path).ok()?;
    // As the services read it: one trailing newline is not part of the value.
    let text = text.strip_suffix('\n').map_or(text.as_str(), |text| text.strip_suffix('\r').unwrap_or(text));
    Some(text.to_owned())
}

/// The queue's state and its recent failures, read through `inspector`.
async fn queue_findings(context: &Context<'_>, mut inspector: Inspector) -> Vec<Finding> {
    let worker = worker_state(context).await;
    let since = context.now_ms.saturating_sub(FAILURES_WINDOW_MS);
    let mut failures_reader = inspector.clone();
    let (queues, failures) = tokio::join!(
        inspector.queues(masstock_queue::PREFIX, context.now_ms),
        failures_reader.recent_failures(masstock_queue::PREFIX, masstock_queue::QUEUE, since, FAILURES_READ),
    );
    let read = queues.and_then(|queues| Ok((queues, failures?)));
    let (queues, failures) = match read {
        Ok(read) => read,
        Err(error) => {
            return vec![Finding::error(
                "queue-unreadable",
                "redis answers, but the queue cannot be read",
                format!(
                    "{} says the same with more detail; {}",
                    context.command("queue ls"),
                    context.command("logs redis")
                ),
            )
            .with_evidence([error.to_string()])];
        }
    };
    let queue = queues.into_iter().find(|summary| summary.name == masstock_queue::QUEUE);
    let mut findings = queue.map(|queue| queue_state(context, &queue, worker.as_deref())).unwrap_or_default();
    findings.extend(failure_findings(context, &failures));
    findings
}

/// The worker container's state (`running`, `exited`…), `missing`, or `None` when the stack has
/// no worker or the engine cannot say.
async fn worker_state(context: &Context<'_>) -> Option<String> {
    if !context.stack.services().any(|(name, _)| name == "worker") {
        return None;
    }
    match context.inspect(&context.stack.container_name("worker")).await {
        Inspected::Found(inspected) => inspected.state.as_ref()?.status.map(|status| status.to_string()),
        Inspected::Missing => Some("missing".to_owned()),
        Inspected::Unknown(_) => None,
    }
}

/// Jobs waiting with no live worker, a paused queue, a backlog. A heartbeat outlives a worker
/// killed without its shutdown by up to its TTL, so a worker container that is not running
/// counts as no worker whatever the heartbeats say.
fn queue_state(context: &Context<'_>, queue: &QueueSummary, worker: Option<&str>) -> Vec<Finding> {
    let counts = &queue.counts;
    let waiting = counts.wait + counts.prioritized + counts.paused;
    let name = format!("{}:{}", queue.prefix, queue.name);
    let freshest = queue.heartbeats.iter().filter(|beat| beat.unreadable.is_none()).filter_map(|beat| beat.age_s).min();
    let alive = freshest.is_some_and(|age| age < HEARTBEAT_MAX_AGE_S) && worker.is_none_or(|state| state == "running");
    let mut evidence = vec![format!(
        "`{name}`: {waiting} waiting (wait {}, prioritized {}, paused {}), {} active, {} delayed",
        counts.wait, counts.prioritized, counts.paused, counts.active, counts.delayed
    )];
    if let Some(age) = queue.oldest_waiting_age_s {
        evidence.push(format!("the oldest waiting job was queued {} ago", short_duration(age)));
    }
    evidence.push(match freshest {
        Some(age) => {
            format!("the freshest worker heartbeat is {} old (limit {HEARTBEAT_MAX_AGE_S}s)", short_duration(age))
        }
        None => "no worker heartbeat in redis".to_owned(),
    });
    evidence.push(format!("{} worker connection(s) to redis", queue.workers.len()));
    if let Some(state) = worker {
        evidence.push(format!("worker container `{}`: {state}", context.stack.container_name("worker")));
    }

    let mut findings = Vec::new();
    if queue.paused {
        let finding = if waiting > 0 { Finding::error } else { Finding::warning };
        findings.push(
            finding(
                "queue-paused",
                format!("`{name}` is paused: no worker takes its jobs until it is resumed"),
                context.command("queue resume"),
            )
            .with_evidence(evidence.clone()),
        );
    } else if waiting > 0 && !alive {
        findings.push(
            Finding::error(
                "queue-no-worker",
                format!("{waiting} job(s) wait in `{name}` and no worker is alive to take them"),
                format!(
                    "{} (or {} when its container does not exist); {} shows why it stopped",
                    context.command("restart worker"),
                    context.command("deploy worker"),
                    context.command("logs worker --tail 50")
                ),
            )
            .with_evidence(evidence),
        );
    } else if alive && queue.oldest_waiting_age_s.is_some_and(|age| age > BACKLOG_AGE_S) {
        let worker = context.stack.environment_of("worker");
        let setting = |name: &str| worker.get(name).map_or("(default)".to_owned(), Clone::clone);
        evidence.push(format!(
            "WORKER_CONCURRENCY={}, GEMINI_RPM={}",
            setting("WORKER_CONCURRENCY"),
            setting("GEMINI_RPM")
        ));
        findings.push(
            Finding::warning(
                "queue-backlog",
                format!(
                    "jobs wait in `{name}` longer than {}: the worker does not keep up",
                    short_duration(BACKLOG_AGE_S)
                ),
                format!(
                    "raise `WORKER_CONCURRENCY` or `GEMINI_RPM` under `[services.worker.env]` within the Gemini \
                     quota, then {}",
                    context.command("deploy worker")
                ),
            )
            .with_evidence(evidence),
        );
    }
    findings
}

/// Why jobs fail, as far as an operator can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// Gemini refuses the API key: nothing succeeds until it is replaced.
    GeminiKey,
    /// Gemini's quota (429 `RESOURCE_EXHAUSTED`).
    GeminiRateLimit,
    /// Gemini failing (5xx) or out of reach after every retry.
    GeminiUnavailable,
    Other,
}

impl Cause {
    fn id(self) -> &'static str {
        match self {
            Self::GeminiKey => "gemini-key",
            Self::GeminiRateLimit => "gemini-rate-limit",
            Self::GeminiUnavailable => "gemini-unavailable",
            Self::Other => "other",
        }
    }
}

/// The cause a failure reason shows. The worker words Gemini's refusals as
/// `gemini refused the request (<status> <code>): <message>`.
#[must_use]
pub fn cause_of(reason: &str) -> Cause {
    let lower = reason.to_lowercase();
    let any = |words: &[&str]| words.iter().any(|word| lower.contains(word));
    if any(&["api key not valid", "api_key_invalid", "permission_denied", "unauthenticated", "(401 ", "(403 "]) {
        Cause::GeminiKey
    } else if any(&["resource_exhausted", "(429 ", "rate limit", "quota"]) {
        Cause::GeminiRateLimit
    } else if any(&["gemini still failing", "(500 ", "(502 ", "(503 ", "(504 ", "unavailable"]) {
        Cause::GeminiUnavailable
    } else {
        Cause::Other
    }
}

/// One finding per cause among the last day's failed jobs.
fn failure_findings(context: &Context<'_>, failures: &[Failure]) -> Vec<Finding> {
    let mut by_cause: BTreeMap<Cause, Vec<&Failure>> = BTreeMap::new();
    for failure in failures {
        by_cause.entry(cause_of(&failure.reason)).or_default().push(failure);
    }
    let env_file = context.stack.config.project.env_file.display();
    let retry = context.command("queue retry --failed");
    // The newest `FAILURES_READ` only: past that, "at least".
    let at_least = if failures.len() >= FAILURES_READ { "at least " } else { "" };
    by_cause
        .into_iter()
        .filter(|(cause, jobs)| *cause != Cause::Other || jobs.len() >= OTHER_FAILURES_REPORTED)
        .map(|(cause, jobs)| {
            let count = format!("{at_least}{}", jobs.len());
            let (summary, fix) = match cause {
                Cause::GeminiKey => (
                    format!("{count} job(s) failed in the last 24 h because Gemini refuses the API key"),
                    format!(
                        "put a valid `GEMINI_API_KEY` in `{env_file}`, {}, then {retry}",
                        context.command("deploy worker")
                    ),
                ),
                Cause::GeminiRateLimit => (
                    format!("{count} job(s) failed in the last 24 h on Gemini's rate limit"),
                    format!(
                        "lower `GEMINI_RPM` under `[services.worker.env]` to the project's quota (or raise the quota), \
                         {}, then {retry}",
                        context.command("deploy worker")
                    ),
                ),
                Cause::GeminiUnavailable => (
                    format!("{count} job(s) failed in the last 24 h because Gemini kept failing"),
                    format!("once Gemini answers again, {retry}"),
                ),
                Cause::Other => (
                    format!("{count} job(s) failed in the last 24 h"),
                    format!(
                        "{} shows one in full; fix its cause, then {retry}",
                        context.command(&format!("queue show {}", jobs[0].id))
                    ),
                ),
            };
            let mut evidence = Vec::new();
            if let Some(at) = jobs.iter().filter_map(|job| job.failed_at_ms).max() {
                evidence.push(format!(
                    "the last one failed {} ago",
                    short_duration(context.now_ms.saturating_sub(at) / 1000)
                ));
            }
            for job in jobs.iter().take(3) {
                evidence.push(format!(
                    "job {}: {}",
                    job.id,
                    truncate(job.reason.lines().next().unwrap_or_default(), 240)
                ));
            }
            if jobs.len() > 3 {
                evidence.push(format!("… and {} more", jobs.len() - 3));
            }
            Finding::warning(format!("jobs-failed:{}", cause.id()), summary, fix).with_evidence(evidence)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_read_from_the_workers_wording() {
        let key =
            "every prompt failed; prompt 1: gemini refused the request (400 INVALID_ARGUMENT): API key not valid. \
                   Please pass a valid API key.";
        assert_eq!(cause_of(key), Cause::GeminiKey);
        assert_eq!(cause_of("gemini refused the request (403 PERMISSION_DENIED): denied"), Cause::GeminiKey);
        let quota = "gemini still failing after 4 attempts: gemini refused the request (429 RESOURCE_EXHAUSTED): quota";
        assert_eq!(cause_of(quota), Cause::GeminiRateLimit, "a rate limit wins over `still failing`");
        assert_eq!(cause_of("gemini still failing after 4 attempts: 503 UNAVAILABLE"), Cause::GeminiUnavailable);
        assert_eq!(cause_of("execution `x` does not exist"), Cause::Other);
    }

    #[test]
    fn url_passwords_are_decoded_and_userinfo_runs_to_the_last_at() {
        assert_eq!(url_password("redis://:s3cr%40t@redis:6379").as_deref(), Some("s3cr@t"));
        assert_eq!(url_password("redis://user:a@b@redis:6379").as_deref(), Some("a@b"));
        assert_eq!(url_password("redis://redis:6379"), None);
        assert_eq!(variable(&["REDIS_URLX=1".into(), "REDIS_URL=u".into()], "REDIS_URL"), Some("u"));
    }

    #[test]
    fn refused_passwords_are_told_from_other_connection_errors() {
        assert!(refuses_password("WRONGPASS: invalid username-password pair or user is disabled."));
        assert!(refuses_password("NOAUTH Authentication required."));
        assert!(!refuses_password("Connection refused (os error 111)"));
    }
}
