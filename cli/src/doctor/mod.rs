//! `masstockctl doctor`'s diagnoses: the reference's troubleshooting guide (a service that will
//! not start, CORS, a worker that does not process jobs, certificates, disk) as checks that read
//! the evidence and name the cause and its fix. Each group lives in its own module and returns
//! [`Finding`]s; [`examine`] runs every group at once.
//!
//! A finding never holds a secret: [`examine`] passes every string through [`health::scrub`]
//! with the env file's values. No check changes anything: a fix is a command for the operator.
//!
//! `health` says whether the stack works; `doctor` says why it does not and what to run, in the
//! spirit of `brew doctor` and Dokku's `ps:report`: every check at once ([`examine`] joins the seven
//! groups; each group joins its own requests), each request bounded by `--timeout`, and one
//! [`Finding`] per problem: `id` (the kind, then `:` and its subject: `container-down:worker`),
//! `severity`, `summary`, `evidence` (one fact per line) and `fix`. [`Context::inspect`] asks the
//! engine about each container once per run, whichever groups read it.
//!
//! - **Nothing is changed, and a fix is a command.** doctor only reads: the engine (inspect, list,
//!   logs), `/proc`, Redis (the read-only `Inspector` of `queue ls`), HTTPS through the edge, the
//!   certificate store, `statvfs`. Fixes are written as the operator would type them, with the
//!   `--config`/`--env` they gave ([`Context::command`]), paths shell-quoted. None touches volumes,
//!   images in use or containers; the only one that throws anything away is `truncate -s 0` of a
//!   named log (never of a compressed or rotated one), and the disk group says so.
//! - **A hung check cannot hang doctor.** Each request has `--timeout`; blocking work (`statvfs`, a
//!   TLS handshake, reading the store) runs on `spawn_blocking` under the same timeout, and
//!   `runtime::block_on` shuts its runtime down without waiting for what was given up on (a
//!   `statvfs` on a dead NFS mount never returns).
//! - **Secrets never show.** Every string of every finding (its id too) goes through the scrub.
//!   Checks that compare secrets (the Redis password a client container runs with against
//!   redis's) compare them and say only that they differ.
//! - **The env file is read, not validated.** `doctor` loads deploy.toml without the env-file check
//!   and reads the file itself, so a missing secret is a finding (`env-missing:<service>`,
//!   `env-file-missing`, `env-file-unreadable`) instead of exit 2 before anything else is looked
//!   at.
//! - **One cause, one finding.** Nothing deployed at all is `stack-missing`, not one finding per
//!   container and dependency. A missing container gets no `dependency-down` (deploy creates it
//!   with its dependencies, in order); a container that is down, crash-looping (between two
//!   crashes it is `running` or `starting`) or unhealthy does (one that runs again after crashes, a
//!   warning, does not), when a `depends_on` condition is not met
//!   (`dependency-down:<service>:<dependency>`), so the root cause is named next to its symptom. A
//!   dependency whose health check is still `starting` is not blamed: Docker's first probe comes
//!   after `interval` (30 s) while the service may long serve. Redis whose container does not exist
//!   is the services group's; an edge that does not answer is one finding, not one per check that
//!   goes through it. Our images are not reported missing: deploy builds them; a third-party image
//!   is (`image-missing:<service>`: pull, or `docker load`).
//! - **Fast enough to run at 3 a.m. and in a loop.** On the healthy local stack it answers in about
//!   0.1 s (`bench/doctor.sh`): the engine's inspects, `/proc`, one Redis and one PostgreSQL
//!   connection, a handful of HTTPS requests and handshakes, all concurrent. Log lines,
//!   `/system/df` and log walks are read only for a finding.
//!
//! The groups, one module each (`examine(&Context) -> Vec<Finding>`): `services`, `lockdown`
//! (containers without deploy.toml's `[hardening]`, and OOM kills), `cors`, `worker`, `certs`,
//! `disk`, `backup` (no recent successful backup or drill, when `[backup]` is declared); each
//! module's docs give its rules.
//!
//! Tests (`tests/it/doctor.rs`) deploy the local stack as a project of their own and cause each
//! fault for real, then read `doctor --json`: a healthy stack gives no finding; a stopped worker
//! with a job waiting, a Gemini key the fake refuses, a queue left paused, deploy.toml's
//! `[cors] origins` changed without a deploy, a port held by the test process, Redis's password
//! changed under it (`CONFIG SET requirepass`), the env file's Redis password changed without a
//! deploy, Redis stopped and the worker's process killed from the host so that it crash-loops on
//! start-up (named with its restarts and its own error, the stopped Redis as its
//! `dependency-down`), a secret emptied in the env file, n8n enabled with an image the engine does
//! not have, a full 4 MiB tmpfs as `edge.log_dir`, a certificate replaced on disk without a reload,
//! then `edge.ca_bundle` without that certificate's CA, the timer unit removed, and an 8-second
//! Pebble certificate left to expire must each be named with its fix, and several fixes are run to
//! see the finding go.

pub mod backup;
pub mod certs;
pub mod cors;
pub mod disk;
pub mod lockdown;
pub mod services;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use bollard::Docker;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::config::Stack;
use crate::docker::{self, engine_message, is_not_found};
use crate::health;
pub use crate::health::now_ms;

/// How bad a finding is. Both make `doctor` exit 1; the order says what to look at first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something is broken now: a service down, requests refused, a certificate expired.
    Error,
    /// Something will break, or is degrading: a certificate expiring, a disk filling up.
    Warning,
}

impl Severity {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }
}

/// One problem: what is wrong, the evidence that shows it, and the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier: the kind of problem, then `:` and its subject when there is one
    /// (`container-down:worker`, `port-taken:3000`, `cors-preflight`).
    pub id: String,
    pub severity: Severity,
    /// One sentence: what is wrong.
    pub summary: String,
    /// What shows it: numbers, log lines, the failing request, one item per line.
    pub evidence: Vec<String>,
    /// What to run or change. Never run by `doctor` itself.
    pub fix: String,
}

impl Finding {
    #[must_use]
    pub fn error(id: impl Into<String>, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            severity: Severity::Error,
            summary: summary.into(),
            evidence: Vec::new(),
            fix: fix.into(),
        }
    }

    #[must_use]
    pub fn warning(id: impl Into<String>, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, ..Self::error(id, summary, fix) }
    }

    #[must_use]
    pub fn with_evidence(mut self, evidence: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.evidence.extend(evidence.into_iter().map(Into::into));
        self
    }

    fn scrubbed(self, secrets: &[String]) -> Self {
        Self {
            id: health::scrub(&self.id, secrets),
            summary: health::scrub(&self.summary, secrets),
            evidence: self.evidence.iter().map(|line| health::scrub(line, secrets)).collect(),
            fix: health::scrub(&self.fix, secrets),
            ..self
        }
    }
}

/// What every check may use: the stack, the engine (when it answers), each request's deadline.
#[derive(Debug)]
pub struct Context<'a> {
    pub stack: &'a Stack,
    /// `Err` holds why the engine is unreachable; the services group reports it once.
    pub docker: Result<Docker, String>,
    /// How long one request (HTTP, Redis, a TLS handshake, an Engine API call) may take.
    pub timeout: Duration,
    pub now_ms: u64,
    /// How the operator ran masstockctl (`masstockctl --env local`), for the fixes' commands.
    pub invocation: String,
    /// Why the env file could not be read, when it exists but cannot be (its secrets are then
    /// unknown, not missing).
    pub env_file_error: Option<String>,
    /// Each container's inspection, asked once per run whichever groups need it.
    pub inspections: Mutex<HashMap<String, Arc<OnceCell<Inspected>>>>,
}

/// A container as the engine described it.
#[derive(Debug, Clone)]
pub enum Inspected {
    Found(Arc<ContainerInspectResponse>),
    Missing,
    /// The engine answered another error, or not in time, or does not answer at all.
    Unknown(String),
}

impl Inspected {
    /// Its `NAME=value` environment; empty when it was not found.
    #[must_use]
    pub fn environment(&self) -> &[String] {
        match self {
            Self::Found(inspected) => {
                inspected.config.as_ref().and_then(|config| config.env.as_deref()).unwrap_or_default()
            }
            Self::Missing | Self::Unknown(_) => &[],
        }
    }
}

impl<'a> Context<'a> {
    pub async fn new(stack: &'a Stack, timeout: Duration, invocation: String) -> Self {
        let docker = docker::connect().await.map_err(|error| error.chain().join(": "));
        Self {
            stack,
            docker,
            timeout,
            now_ms: now_ms(),
            invocation,
            env_file_error: None,
            inspections: Mutex::default(),
        }
    }

    /// `docker inspect` of `container`, asked of the engine once per run, within the timeout.
    pub async fn inspect(&self, container: &str) -> Inspected {
        let docker = match &self.docker {
            Ok(docker) => docker,
            Err(reason) => return Inspected::Unknown(reason.clone()),
        };
        let cell = {
            let mut inspections = self.inspections.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(inspections.entry(container.to_owned()).or_default())
        };
        cell.get_or_init(|| async {
            match tokio::time::timeout(self.timeout, docker.inspect_container(container, None)).await {
                Err(_) => Inspected::Unknown("the engine did not answer in time".to_owned()),
                Ok(Err(error)) if is_not_found(&error) => Inspected::Missing,
                Ok(Err(error)) => Inspected::Unknown(engine_message(&error)),
                Ok(Ok(inspected)) => Inspected::Found(Arc::new(inspected)),
            }
        })
        .await
        .clone()
    }

    /// A masstockctl command as the operator would type it, in backticks:
    /// `` `masstockctl --env local restart worker` ``.
    #[must_use]
    pub fn command(&self, arguments: &str) -> String {
        format!("`{} {arguments}`", self.invocation)
    }

    /// The engine, when it answers.
    #[must_use]
    pub fn docker(&self) -> Option<&Docker> {
        self.docker.as_ref().ok()
    }
}

/// Runs every group of checks at once; their findings, errors first, each group's in its order,
/// with every secret value of the env file replaced by `***`.
pub async fn examine(context: &Context<'_>) -> Vec<Finding> {
    let (services, lockdown, cors, worker, certs, disk, backup) = tokio::join!(
        services::examine(context),
        lockdown::examine(context),
        cors::examine(context),
        worker::examine(context),
        certs::examine(context),
        disk::examine(context),
        backup::examine(context),
    );
    let secrets = health::secret_values(context.stack);
    let mut findings: Vec<Finding> = [services, lockdown, cors, worker, certs, disk, backup]
        .into_iter()
        .flatten()
        .map(|finding| finding.scrubbed(&secrets))
        .collect();
    // Stable: within a severity, the groups' order (the troubleshooting guide's) is kept.
    findings.sort_by_key(|finding| finding.severity);
    findings
}

/// `text` cut to its first `chars` characters, with `…` when something was cut: evidence quotes
/// logs and job errors, never whole.
fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() > chars {
        format!("{}…", text.chars().take(chars).collect::<String>())
    } else {
        text.to_owned()
    }
}
