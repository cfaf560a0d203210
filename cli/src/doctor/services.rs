//! The reference's "a service will not start" scenario: for every enabled service, its container
//! (missing, exited, restarting, unhealthy, with its exit code, restarts and last log lines), the
//! secrets it needs from the env file, its image, its declared host ports, and its dependencies.
//!
//! - Not running (`container-down`): state, exit code, since when, `OOMKilled`, the engine's own
//!   error such as "address already in use", restarts, the last 10 log lines.
//! - Crash-looping (`container-restarting`): an error when the engine says `restarting`, or when it
//!   has 3 restarts or more and its last exit is under 2 minutes old, since between two crashes it
//!   is `running`; a warning when it has them but has run since then, its last start under 10
//!   minutes ago.
//! - Unhealthy (`container-unhealthy`), with Docker's last health outputs.
//! - Ports come from `ports`' `rows_for`, the same judgement as `masstockctl ports` (when the
//!   engine cannot list published ports, only the edge's are judged: a service's would look held
//!   by a bare `docker-proxy`). A port held by another process names its command and PID and
//!   proposes `kill <pid>` once `ps` shows it is not needed, or the deploy.toml key to change, and
//!   a down container whose own port is taken says to free it first.
//! - PostgreSQL, the one dependency outside the engine, is `health`'s `SELECT 1` with the API's
//!   `DATABASE_URL` (`postgres-unreachable`).
//! - Secrets (`env-missing:<service>`), images (`image-missing:<service>`) and dependencies
//!   (`dependency-down:<service>:<dependency>`) follow the rules of the module above.

use bollard::models::{ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, HealthStatusEnum};
use bollard::Docker;
use futures_util::future::join_all;

use super::{truncate, Context, Finding, Inspected, Severity};
use crate::config::{DependencyCondition, Stack};
use crate::deploy::wait::last_log_lines;
use crate::docker::is_not_found;
use crate::health::age_since;
use crate::ports::{self, Claimant, PortRow};
use crate::secrets;

/// Log lines quoted with a container that is down or failing.
const LOG_LINES: usize = 10;
/// Restarts above which a running container is crash-looping, when the last one is recent.
const CRASH_LOOP_RESTARTS: i64 = 3;
/// How recent that last start must be, in seconds.
const CRASH_LOOP_WINDOW_S: u64 = 10 * 60;
/// A running container with those restarts whose last exit is this recent (seconds) is still
/// looping, only between two crashes: Docker's back-off between restarts stays under a minute.
const CRASH_LOOP_ACTIVE_S: u64 = 2 * 60;

/// How a container stands, reduced to what the checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Missing,
    Unknown,
    /// Not running: created, exited, dead, paused, removing.
    Down,
    Restarting,
    Unhealthy,
    /// Running; its health check (if any) has not passed yet.
    Starting,
    /// Running, and healthy or without a health check.
    Up,
}

/// What a container's restarts say, beside its standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crashes {
    /// Nothing worth a finding.
    Quiet,
    /// The engine is between a crash and the next start.
    Restarting,
    /// Running, between two crashes of a loop that goes on.
    Looping,
    /// Running again after crashes that have stopped.
    Recovered,
}

/// Judges the restarts of a container that stands so: restarted `restarts` times, started
/// `started_s` seconds ago, its last exit `exited_s` seconds ago (`None`: never).
fn crashes(standing: Standing, restarts: i64, started_s: Option<u64>, exited_s: Option<u64>) -> Crashes {
    match standing {
        Standing::Restarting => Crashes::Restarting,
        Standing::Up | Standing::Starting if restarts >= CRASH_LOOP_RESTARTS => {
            if exited_s.is_some_and(|age| age < CRASH_LOOP_ACTIVE_S) {
                Crashes::Looping
            } else if started_s.is_some_and(|age| age < CRASH_LOOP_WINDOW_S) {
                Crashes::Recovered
            } else {
                Crashes::Quiet
            }
        }
        _ => Crashes::Quiet,
    }
}

impl Inspected {
    fn standing(&self) -> Standing {
        let Self::Found(inspected) = self else {
            return if matches!(self, Self::Missing) { Standing::Missing } else { Standing::Unknown };
        };
        let state = inspected.state.clone().unwrap_or_default();
        match state.status.unwrap_or(ContainerStateStatusEnum::EMPTY) {
            ContainerStateStatusEnum::RUNNING => match state.health.and_then(|health| health.status) {
                Some(HealthStatusEnum::UNHEALTHY) => Standing::Unhealthy,
                Some(HealthStatusEnum::STARTING) => Standing::Starting,
                _ => Standing::Up,
            },
            ContainerStateStatusEnum::RESTARTING => Standing::Restarting,
            _ => Standing::Down,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Missing => "missing".to_owned(),
            Self::Unknown(reason) => format!("unknown ({reason})"),
            Self::Found(inspected) => {
                let state = inspected.state.clone().unwrap_or_default();
                let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY).to_string();
                match state.health.and_then(|health| health.status) {
                    Some(health) if status == "running" && health != HealthStatusEnum::NONE => {
                        format!("running, {health}")
                    }
                    _ => status,
                }
            }
        }
    }
}

pub async fn examine(context: &Context<'_>) -> Vec<Finding> {
    let (mut findings, database) = tokio::join!(containers(context), database(context));
    findings.extend(database);
    findings
}

/// PostgreSQL, the external dependency of the api and the worker, with the `DATABASE_URL` they
/// get (its host named `host:port/database`, never with its credentials).
async fn database(context: &Context<'_>) -> Option<Finding> {
    let stack = context.stack;
    let (service, declared) = ["api", "worker"].into_iter().find_map(|service| {
        stack.services().any(|(name, _)| name == service).then_some(())?;
        Some((service, stack.environment_of(service).get("DATABASE_URL")?.clone()))
    })?;
    // A secret missing from the env file is `env-missing`.
    let url = secrets::splice_in(stack, &declared).ok()?;
    let reason = match tokio::time::timeout(context.timeout, crate::health::postgres(&url)).await {
        Ok(Ok(_)) => return None,
        Ok(Err(reason)) => reason,
        Err(_) => format!("no answer within {}s", context.timeout.as_secs_f64()),
    };
    Some(
        Finding::error(
            "postgres-unreachable",
            format!("PostgreSQL does not let `{service}` in: every request that needs the database fails"),
            format!(
                "check that the database runs and that `DATABASE_URL` in `{}` is right, then {}",
                stack.config.project.env_file.display(),
                context.command("deploy api worker")
            ),
        )
        .with_evidence([reason]),
    )
}

async fn containers(context: &Context<'_>) -> Vec<Finding> {
    let stack = context.stack;
    let mut findings = env_missing(context);
    let docker = match &context.docker {
        Ok(docker) => docker,
        Err(reason) => {
            findings.insert(
                0,
                Finding::error(
                    "engine-unreachable",
                    "the Docker engine does not answer: no container can be inspected, started or deployed",
                    "start it (`systemctl start docker`, or `dockerd` in the background on a host without systemd), \
                     then run doctor again",
                )
                .with_evidence([reason.clone()]),
            );
            return findings;
        }
    };
    let services = stack.start_order();
    let (observed, publications) = tokio::join!(
        join_all(services.iter().map(|service| async move { context.inspect(&stack.container_name(service)).await })),
        tokio::time::timeout(context.timeout, ports::running_publications(docker)),
    );
    // Without the engine's list of published ports, a service's port looks held by a bare
    // `docker-proxy`: only the edge's ports can be judged then.
    let publications = publications.ok().and_then(Result::ok);
    let judged_all = publications.is_some();
    let port_rows: Vec<PortRow> = tokio::task::spawn_blocking({
        let stack = stack.clone();
        move || ports::rows_for(&stack, &publications.unwrap_or_default())
    })
    .await
    .unwrap_or_default()
    .into_iter()
    .filter(|row| judged_all || service_of_port(stack, row.port).is_none())
    .collect();

    if !observed.is_empty() && observed.iter().all(|observed| matches!(observed, Inspected::Missing)) {
        let containers: Vec<String> = services.iter().map(|service| stack.container_name(service)).collect();
        findings.push(
            Finding::error(
                "stack-missing",
                format!("nothing of project `{}` is deployed on this engine", stack.config.project.name),
                context.command("deploy"),
            )
            .with_evidence([format!("no container {}", containers.join(", "))]),
        );
        findings.extend(
            join_all(services.iter().map(|service| missing_image(context, docker, service)))
                .await
                .into_iter()
                .flatten(),
        );
        for row in port_rows.iter().filter(|row| row.conflict.is_some()) {
            findings.push(port_taken(context, row));
        }
        return findings;
    }
    for row in port_rows.iter().filter(|row| row.conflict.is_some()) {
        findings.push(port_taken(context, row));
    }
    let standings: Vec<(&str, Standing, String)> = services
        .iter()
        .zip(&observed)
        .map(|(service, observed)| (*service, observed.standing(), observed.describe()))
        .collect();
    let per_service = services
        .iter()
        .zip(&observed)
        .map(|(service, observed)| container_findings(context, docker, service, observed, &standings, &port_rows));
    for service_findings in join_all(per_service).await {
        findings.extend(service_findings);
    }
    findings
}

/// Secrets a service refers to that the env file lacks or leaves empty. Names only, never values.
fn env_missing(context: &Context<'_>) -> Vec<Finding> {
    let stack = context.stack;
    let env_file = &stack.config.project.env_file;
    let mut findings = Vec::new();
    if let Some(error) = &context.env_file_error {
        return vec![Finding::error(
            "env-file-unreadable",
            format!("the env file `{}` cannot be read: the services' secrets are unknown", env_file.display()),
            format!(
                "run doctor as a user who may read it (it is mode 0600, its owner's), or repair the line it names; \
                 {} shows the same",
                context.command("config check")
            ),
        )
        .with_evidence([error.clone()])];
    }
    if stack.secrets.env_file.is_none() && !stack.secrets.references.is_empty() {
        let names: Vec<&str> = stack.secrets.names().into_iter().collect();
        return vec![Finding::error(
            "env-file-missing",
            format!("the env file `{}` does not exist: no service gets its secrets", env_file.display()),
            format!(
                "{} writes it (mode 0600) with the secrets it can generate; then fill in the others and {}",
                context.command("secrets generate"),
                context.command("deploy")
            ),
        )
        .with_evidence([format!("deploy.toml refers to {}", quote_list(&names))])];
    }
    for service in stack.start_order() {
        let mut problems = Vec::new();
        for (variable, declared) in stack.environment_of(service) {
            for name in secrets::references_in(&declared).unwrap_or_default() {
                let value = stack.secrets.env_file.as_ref().and_then(|file| file.get(&name));
                let what =
                    if variable == name { format!("`{name}`") } else { format!("`{variable}` needs `{name}`, which") };
                let problem = match value {
                    None => format!("{what} is not in `{}`", env_file.display()),
                    Some("") => format!("{what} is empty in `{}`", env_file.display()),
                    Some(_) => continue,
                };
                problems.push((name, problem));
            }
        }
        if problems.is_empty() {
            continue;
        }
        let names: Vec<&str> = problems
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        findings.push(
            Finding::error(
                format!("env-missing:{service}"),
                format!(
                    "`{service}` lacks {} from the env file: it cannot start, or starts broken",
                    quote_list(&names)
                ),
                format!(
                    "set {} in `{}` ({} fills the ones masstockctl can generate, keeping existing values), then {}",
                    quote_list(&names),
                    env_file.display(),
                    context.command("secrets generate"),
                    context.command(&format!("deploy {service}"))
                ),
            )
            .with_evidence(problems.into_iter().map(|(_, problem)| problem)),
        );
    }
    findings
}

fn quote_list(names: &[&str]) -> String {
    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
}

/// The service whose container deploy.toml gives host port `port`; `None` for the edge's.
fn service_of_port(stack: &Stack, port: u16) -> Option<String> {
    ports::declared_ports(stack).into_iter().find(|declared| declared.port == port).and_then(|declared| match declared
        .claimant
    {
        Claimant::Service { service, .. } => Some(service),
        Claimant::Edge { .. } => None,
    })
}

/// A declared host port held by something else than its owner.
fn port_taken(context: &Context<'_>, row: &PortRow) -> Finding {
    let owner = &row.owner;
    let holder = match (&owner.container, &owner.name, owner.pid) {
        (Some(container), _, _) => format!("container `{container}`"),
        (None, Some(name), Some(pid)) => format!("`{name}` (pid {pid})"),
        _ => "a process masstockctl may not name (run doctor as root to see which)".to_owned(),
    };
    let stop = match (&owner.container, owner.pid) {
        (Some(container), _) => format!("`docker stop {container}`"),
        (None, Some(pid)) => format!("`kill {pid}` once `ps -o pid,user,args -p {pid}` shows it is not needed"),
        _ => "stop it".to_owned(),
    };
    let then = if row.expected == "nginx" {
        // nginx could not bind that port: it is down, not waiting for a reload.
        format!(
            "{}, or change `{}` in deploy.toml and {}",
            super::certs::edge_start_fix(&context.stack.config.edge),
            row.declared_by,
            context.command("deploy")
        )
    } else {
        let service = service_of_port(context.stack, row.port).unwrap_or_default();
        format!(
            "{}, or change `{}` in deploy.toml and {}",
            context.command(&format!("restart {service}")),
            row.declared_by,
            context.command(&format!("deploy {service}"))
        )
    };
    Finding::error(
        format!("port-taken:{}", row.port),
        format!("port {} is taken by {holder}, so {} cannot listen there", row.port, row.expected),
        format!("{stop}, then {then}"),
    )
    .with_evidence([
        format!("{}:{} is declared by `{}` for `{}`", row.address, row.port, row.declared_by, row.expected),
        format!("held by {holder}"),
    ])
}

/// What is wrong with one service's container, if anything: how the container stands, then
/// which of its dependencies explains its trouble.
async fn container_findings(
    context: &Context<'_>,
    docker: &Docker,
    service: &str,
    observed: &Inspected,
    standings: &[(&str, Standing, String)],
    port_rows: &[PortRow],
) -> Vec<Finding> {
    let container = context.stack.container_name(service);
    let dependents = dependents_of(context.stack, service);
    let mut findings = Vec::new();
    // Whether this service is down, crashing or unhealthy: then a dependency may explain it.
    let mut troubled = false;
    match observed {
        Inspected::Missing => {
            findings.extend(missing_container(context, docker, service, &container, &dependents).await);
        }
        Inspected::Unknown(reason) => findings.push(unknown_container(service, &container, reason)),
        Inspected::Found(inspected) => {
            let found = Found { service, container: &container, inspected, standing: observed.standing() };
            if let Some(finding) = found_container(context, &found, &dependents, port_rows) {
                // A container that runs again after its crashes is a warning: nothing to blame.
                troubled = finding.severity == Severity::Error;
                findings.push(with_last_logs(docker, &container, finding).await);
            }
        }
    }
    // A dependency explains a service that is not up, or keeps crashing (a crash-looping container
    // is `running` or `starting` between its crashes). A missing container is deployed with its
    // dependencies, in order: nothing to add.
    if troubled {
        findings.extend(dependency_findings(context, service, standings));
    }
    findings
}

/// `container-missing`, after the finding on its missing image if there is one.
async fn missing_container(
    context: &Context<'_>,
    docker: &Docker,
    service: &str,
    container: &str,
    dependents: &[String],
) -> Vec<Finding> {
    let stack = context.stack;
    let mut findings = Vec::new();
    let mut finding = Finding::error(
        format!("container-missing:{service}"),
        format!("`{container}` does not exist"),
        context.command(&format!("deploy {service}")),
    );
    if let Some(image) = missing_image(context, docker, service).await {
        findings.push(image);
    }
    if stack.config.services[service].build.is_some() && !image_exists(context, docker, service).await {
        finding
            .evidence
            .push(format!("its image `{}` is not built yet: deploy builds it", stack.image_reference(service)));
    }
    if !dependents.is_empty() {
        finding.evidence.push(format!("needed by {}", dependents.join(", ")));
    }
    findings.push(finding);
    findings
}

/// `container-unknown`: the engine could not say.
fn unknown_container(service: &str, container: &str, reason: &str) -> Finding {
    Finding::error(
        format!("container-unknown:{service}"),
        format!("the engine cannot say how `{container}` is"),
        "look at the engine's own log (`journalctl -u docker`, or dockerd's output)",
    )
    .with_evidence([reason.to_owned()])
}

/// A container the engine knows, and how it stands.
struct Found<'a> {
    service: &'a str,
    container: &'a str,
    inspected: &'a ContainerInspectResponse,
    standing: Standing,
}

/// The finding on a container that exists, if it is down, crashing or unhealthy; its evidence
/// starts with the container's state.
fn found_container(
    context: &Context<'_>,
    found: &Found<'_>,
    dependents: &[String],
    port_rows: &[PortRow],
) -> Option<Finding> {
    let Found { service, container, inspected, standing } = *found;
    let state = inspected.state.clone().unwrap_or_default();
    let restarts = inspected.restart_count.unwrap_or(0);
    let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
    // The engine resets the exit code to 0 at each start: it only means something once stopped.
    let exit = state
        .exit_code
        .filter(|_| status != ContainerStateStatusEnum::RUNNING)
        .map(|code| format!(", exit code {code}"))
        .unwrap_or_default();
    let mut evidence = state_evidence(&state, status, &exit, restarts, dependents);
    let own_port_taken = port_rows
        .iter()
        .find(|row| row.conflict.is_some() && service_of_port(context.stack, row.port).as_deref() == Some(service));
    let restart = context.command(&format!("restart {service}"));
    let logs = context.command(&format!("logs {service} --tail 100"));
    let started = state.started_at.as_deref().and_then(crate::health::seconds_since);
    let last_exit = state.finished_at.as_deref().and_then(crate::health::seconds_since);
    let crashed = crashes(standing, restarts, started, last_exit);
    let crashing = format!("{logs} shows why it exits; fix that cause, then {restart}");
    let finding = match standing {
        Standing::Down => Finding::error(
            format!("container-down:{service}"),
            format!("`{container}` is not running ({status}{exit})"),
            match own_port_taken {
                Some(row) => {
                    format!("free port {} first (finding `port-taken:{}`), then {restart}", row.port, row.port)
                }
                None => format!("{restart}; {logs} shows why it stopped"),
            },
        ),
        Standing::Restarting => Finding::error(
            format!("container-restarting:{service}"),
            if restarts >= CRASH_LOOP_RESTARTS {
                format!("`{container}` keeps crashing: Docker has restarted it {restarts} times")
            } else {
                format!("`{container}` exited, and Docker is restarting it")
            },
            crashing,
        ),
        // Between two crashes, a crash-looping container is `running` (`starting` with a health
        // check).
        Standing::Up | Standing::Starting if crashed == Crashes::Looping => {
            let ago = last_exit.map(crate::ui::short_duration).unwrap_or_default();
            evidence.push(format!("its last exit was {ago} ago"));
            Finding::error(
                format!("container-restarting:{service}"),
                format!("`{container}` keeps crashing: Docker has restarted it {restarts} times"),
                crashing,
            )
        }
        Standing::Up | Standing::Starting if crashed == Crashes::Recovered => Finding::warning(
            format!("container-restarting:{service}"),
            format!("`{container}` runs again, but has crashed {restarts} times"),
            format!("{logs} shows why it exited"),
        ),
        Standing::Unhealthy => {
            evidence.extend(health_check_evidence(&state));
            Finding::error(
                format!("container-unhealthy:{service}"),
                format!("`{container}` runs but fails its health check"),
                format!("{logs} and the health check output above show why; then {restart}"),
            )
        }
        Standing::Up | Standing::Starting | Standing::Missing | Standing::Unknown => return None,
    };
    Some(finding.with_evidence(evidence))
}

/// How a container stands, as evidence: state, exit code and age, restarts, why it stopped, who
/// needs it.
fn state_evidence(
    state: &ContainerState,
    status: ContainerStateStatusEnum,
    exit: &str,
    restarts: i64,
    dependents: &[String],
) -> Vec<String> {
    let mut evidence = Vec::new();
    let since = state
        .finished_at
        .as_deref()
        .and_then(age_since)
        .filter(|_| status != ContainerStateStatusEnum::RUNNING)
        .map(|age| format!(" {age} ago"))
        .unwrap_or_default();
    evidence.push(format!("state {status}{exit}{since}, {restarts} restart(s)"));
    if status != ContainerStateStatusEnum::RUNNING && matches!(state.exit_code, Some(0 | 143)) {
        evidence.push("it stopped when asked to (`docker stop`, a reboot): it did not crash".to_owned());
    }
    if state.oom_killed == Some(true) {
        evidence.push("killed for lack of memory (OOMKilled)".to_owned());
    }
    if let Some(error) = state.error.as_deref().filter(|error| !error.is_empty()) {
        evidence.push(format!("engine: {error}"));
    }
    if !dependents.is_empty() {
        evidence.push(format!("needed by {}", dependents.join(", ")));
    }
    evidence
}

/// The failing streak and the last two probes' output of an unhealthy container.
fn health_check_evidence(state: &ContainerState) -> Vec<String> {
    let health = state.health.clone().unwrap_or_default();
    let mut evidence = vec![format!("failing streak: {} health check(s)", health.failing_streak.unwrap_or(0))];
    for probe in health.log.unwrap_or_default().iter().rev().take(2) {
        let output = probe.output.as_deref().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
        evidence.push(format!("health check exit {}: {}", probe.exit_code.unwrap_or(-1), truncate(&output, 200)));
    }
    evidence
}

/// `finding` with the container's last log lines added to its evidence.
async fn with_last_logs(docker: &Docker, container: &str, mut finding: Finding) -> Finding {
    let lines = last_log_lines(docker, container, LOG_LINES).await;
    if !lines.is_empty() {
        finding.evidence.push(format!("last {} log line(s):", lines.len()));
        finding.evidence.extend(lines.iter().map(|line| format!("  {}", truncate(line, 300))));
    }
    finding
}

/// `dependency-down` for each dependency of a troubled `service` that does not stand as its
/// `depends_on` condition asks.
fn dependency_findings(context: &Context<'_>, service: &str, standings: &[(&str, Standing, String)]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (dependency, condition) in &context.stack.config.services[service].depends_on {
        let Some((_, dependency_standing, described)) = standings.iter().find(|(name, _, _)| name == dependency) else {
            continue;
        };
        if !satisfies(*dependency_standing, *condition) {
            let wanted = match condition {
                DependencyCondition::Started => "running",
                DependencyCondition::Healthy => "healthy",
            };
            findings.push(
                Finding::error(
                    format!("dependency-down:{service}:{dependency}"),
                    format!("`{service}` needs `{dependency}` {wanted}, and it is {described}"),
                    format!(
                        "bring `{dependency}` back first (its own finding says how), then {}",
                        context.command(&format!("restart {service}"))
                    ),
                )
                .with_evidence([format!("[services.{service}] depends_on = {{ {dependency} = \"{wanted}\" }}")]),
            );
        }
    }
    findings
}

/// Whether a dependency that stands so is no cause of its dependent's trouble. `started` asks
/// only that it runs. For `healthy`, a health check still `starting` is not held against it:
/// Docker's first probe comes only after `interval` (30 s), while the service may long serve.
fn satisfies(standing: Standing, condition: DependencyCondition) -> bool {
    match condition {
        DependencyCondition::Started => matches!(standing, Standing::Up | Standing::Starting | Standing::Unhealthy),
        DependencyCondition::Healthy => matches!(standing, Standing::Up | Standing::Starting),
    }
}

/// The services that declare `depends_on` this one.
fn dependents_of(stack: &Stack, service: &str) -> Vec<String> {
    stack
        .services()
        .filter(|(_, declared)| declared.depends_on.contains_key(service))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The image a deploy would create `service` from, when the engine does not have it.
/// Only a third-party image can be missing for good: deploy builds ours.
async fn missing_image(context: &Context<'_>, docker: &Docker, service: &str) -> Option<Finding> {
    let stack = context.stack;
    if stack.config.services[service].build.is_some() || image_exists(context, docker, service).await {
        return None;
    }
    let reference = stack.image_reference(service);
    let fix = format!(
        "`docker pull {reference}`, or on a host without registry access `docker load -i <file>` of an image saved \
         with `docker save {reference}` elsewhere; then {}",
        context.command(&format!("deploy {service}"))
    );
    Some(
        Finding::error(
            format!("image-missing:{service}"),
            format!("the image of `{service}`, `{reference}`, is not on this engine"),
            fix,
        )
        .with_evidence([format!("`{reference}`: no such image")]),
    )
}

/// Whether the engine has the image a deploy would use (an engine that does not answer is
/// given the benefit of the doubt).
async fn image_exists(context: &Context<'_>, docker: &Docker, service: &str) -> bool {
    let reference = context.stack.image_reference(service);
    !matches!(
        tokio::time::timeout(context.timeout, docker.inspect_image(&reference)).await,
        Ok(Err(error)) if is_not_found(&error)
    )
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerInspectResponse, ContainerState, Health};

    use super::*;

    fn found(status: ContainerStateStatusEnum, health: Option<HealthStatusEnum>) -> Inspected {
        let state = ContainerState {
            status: Some(status),
            health: health.map(|status| Health { status: Some(status), ..Health::default() }),
            ..ContainerState::default()
        };
        Inspected::Found(std::sync::Arc::new(ContainerInspectResponse {
            state: Some(state),
            ..ContainerInspectResponse::default()
        }))
    }

    #[test]
    fn containers_stand_as_the_engine_says() {
        use ContainerStateStatusEnum as S;
        use HealthStatusEnum as H;
        assert_eq!(found(S::RUNNING, None).standing(), Standing::Up, "no health check: running is up");
        assert_eq!(found(S::RUNNING, Some(H::HEALTHY)).standing(), Standing::Up);
        assert_eq!(found(S::RUNNING, Some(H::STARTING)).standing(), Standing::Starting);
        assert_eq!(found(S::RUNNING, Some(H::UNHEALTHY)).standing(), Standing::Unhealthy);
        assert_eq!(found(S::RESTARTING, None).standing(), Standing::Restarting);
        for down in [S::EXITED, S::CREATED, S::DEAD, S::PAUSED] {
            assert_eq!(found(down, Some(H::HEALTHY)).standing(), Standing::Down, "{down}");
        }
        assert_eq!(Inspected::Missing.standing(), Standing::Missing);
        assert_eq!(found(S::RUNNING, Some(H::UNHEALTHY)).describe(), "running, unhealthy");
    }

    #[test]
    fn restarts_are_a_loop_while_the_last_exit_is_recent() {
        let (up, starting) = (Standing::Up, Standing::Starting);
        assert_eq!(crashes(Standing::Restarting, 1, Some(1), Some(1)), Crashes::Restarting);
        // Between two crashes of a loop, running or (with a health check) starting.
        assert_eq!(crashes(up, 3, Some(1), Some(5)), Crashes::Looping);
        assert_eq!(crashes(starting, 9, Some(0), Some(119)), Crashes::Looping);
        // Crashes that stopped: a warning while the last start is under 10 minutes old.
        assert_eq!(crashes(up, 3, Some(300), Some(301)), Crashes::Recovered);
        assert_eq!(crashes(up, 3, Some(700), Some(701)), Crashes::Quiet);
        // Fewer restarts, or not running: not a loop (a stopped container is `container-down`).
        assert_eq!(crashes(up, 2, Some(1), Some(5)), Crashes::Quiet);
        assert_eq!(crashes(Standing::Down, 5, Some(10), Some(5)), Crashes::Quiet);
        assert_eq!(crashes(Standing::Unhealthy, 5, Some(10), Some(5)), Crashes::Quiet);
        // The engine's zero time (never exited) is no recent exit.
        assert_eq!(crashes(up, 3, Some(5), None), Crashes::Recovered);
    }

    #[test]
    fn dependencies_are_met_as_compose_judges_them() {
        assert!(satisfies(Standing::Up, DependencyCondition::Healthy));
        assert!(satisfies(Standing::Starting, DependencyCondition::Healthy), "Docker's first probe is not due yet");
        assert!(!satisfies(Standing::Unhealthy, DependencyCondition::Healthy));
        assert!(satisfies(Standing::Unhealthy, DependencyCondition::Started), "started asks only that it runs");
        for standing in [Standing::Down, Standing::Restarting, Standing::Missing, Standing::Unknown] {
            assert!(!satisfies(standing, DependencyCondition::Started), "{standing:?}");
        }
    }
}
