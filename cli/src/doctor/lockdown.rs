//! Containers locked down as deploy.toml's `[hardening]` declares, and containers the kernel
//! killed for their memory limit.
//!
//! - **`container-unlocked:<service>`** (warning): a running container of the project whose
//!   inspection lacks part of its service's lockdown (`Stack::lockdown_of`): a writable root
//!   filesystem, capabilities kept or added, no `no-new-privileges`, no (or another) memory, swap,
//!   CPU or pids limit, no log rotation. The judgement is [`missing_lockdown`], one
//!   evidence line per missing setting. The fix is `deploy <service>`, which recreates it as
//!   declared (a container made by hand or by an older masstockctl has none of it). A service
//!   whose deploy.toml opts out of a setting (`read_only = false`) is not blamed for it.
//! - **`container-oom:<service>`** (warning): the kernel's OOM killer killed a process of the
//!   service's container within the last 24 hours. `State.OOMKilled` alone cannot say it: the
//!   engine resets it when the restart policy starts the container again, which is exactly when
//!   nobody looks. So the source is the engine's own `oom` events (`GET /events` with `since`
//!   24 hours ago, `until` now, filtered on `type=container`, `event=oom` and the project's
//!   label), plus `State.OOMKilled` for a container that is down right now. The evidence gives the
//!   memory limit the container runs with, how many times and when it was killed, and whether it
//!   restarted since (its start time and restart count). The engine keeps its last 256 events in
//!   memory, not across its own restarts: an older kill, or one before a restart of dockerd, is
//!   not seen. The fix is to raise the service's `memory` in deploy.toml, or to look for a leak.

use std::collections::BTreeMap;

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, EventMessage, HostConfig};
use bollard::query_parameters::EventsOptions;
use futures_util::future::join_all;
use futures_util::StreamExt as _;

use super::{Context, Finding, Inspected};
use crate::config::Lockdown;
use crate::docker::labels;

/// How far back the engine's events are searched for OOM kills.
const OOM_WINDOW_S: u64 = 24 * 60 * 60;

pub async fn examine(context: &Context<'_>) -> Vec<Finding> {
    let Some(docker) = context.docker() else { return Vec::new() };
    let stack = context.stack;
    let services = stack.start_order();
    let (inspected, kills) = tokio::join!(
        join_all(services.iter().map(|service| async move { context.inspect(&stack.container_name(service)).await })),
        oom_kills(context, docker),
    );
    let mut findings = Vec::new();
    for (service, inspected) in services.iter().zip(&inspected) {
        let Inspected::Found(container) = inspected else { continue };
        let times = kills.get(*service).map_or(&[][..], Vec::as_slice);
        if let Some(finding) = oom_finding(context, service, container, times) {
            findings.push(finding);
        }
        if !is_running(container) {
            continue;
        }
        let missing = missing_lockdown(&stack.lockdown_of(service), container);
        if !missing.is_empty() {
            findings.push(
                Finding::warning(
                    format!("container-unlocked:{service}"),
                    format!(
                        "`{}` runs without the lockdown deploy.toml declares: a compromise or a leak in it reaches \
                         further than it should",
                        stack.container_name(service)
                    ),
                    format!("{} recreates it as declared", context.command(&format!("deploy {service}"))),
                )
                .with_evidence(missing),
            );
        }
    }
    findings
}

fn is_running(container: &ContainerInspectResponse) -> bool {
    matches!(
        container.state.as_ref().and_then(|state| state.status),
        Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::RESTARTING)
    )
}

/// The times (Unix nanoseconds) of the engine's `oom` events of the project's containers in the
/// last [`OOM_WINDOW_S`], by service; empty when the engine does not answer in time.
async fn oom_kills(context: &Context<'_>, docker: &bollard::Docker) -> BTreeMap<String, Vec<i64>> {
    let until = context.now_ms / 1000;
    let options = EventsOptions {
        since: Some(until.saturating_sub(OOM_WINDOW_S).to_string()),
        until: Some(until.to_string()),
        filters: Some(
            [
                ("type".to_owned(), vec!["container".to_owned()]),
                ("event".to_owned(), vec!["oom".to_owned()]),
                ("label".to_owned(), vec![format!("{}={}", labels::PROJECT, context.stack.config.project.name)]),
            ]
            .into(),
        ),
    };
    let events = docker.events(Some(options)).take_while(|event| std::future::ready(event.is_ok()));
    let events: Vec<EventMessage> =
        match tokio::time::timeout(context.timeout, events.filter_map(|event| async { event.ok() }).collect()).await {
            Ok(events) => events,
            Err(_) => return BTreeMap::new(),
        };
    let mut kills: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for event in events {
        let service = event
            .actor
            .as_ref()
            .and_then(|actor| actor.attributes.as_ref())
            .and_then(|attributes| attributes.get(labels::SERVICE))
            .cloned();
        let time = event.time_nano.or_else(|| event.time.map(|seconds| seconds.saturating_mul(1_000_000_000)));
        if let (Some(service), Some(time)) = (service, time) {
            kills.entry(service).or_default().push(time);
        }
    }
    kills
}

/// A container killed for its memory: by the engine's events (`kills`, Unix nanoseconds), or by its
/// state when it is down right now.
fn oom_finding(
    context: &Context<'_>,
    service: &str,
    container: &ContainerInspectResponse,
    kills: &[i64],
) -> Option<Finding> {
    let state = container.state.clone().unwrap_or_default();
    let down_for_memory = state.oom_killed == Some(true);
    if kills.is_empty() && !down_for_memory {
        return None;
    }
    let limit = container.host_config.as_ref().and_then(|host| host.memory).filter(|bytes| *bytes > 0);
    let mut evidence = vec![match limit {
        Some(bytes) => format!("memory limit {}", mebibytes(bytes)),
        None => "no memory limit: the host itself ran out".to_owned(),
    }];
    if let (Some(first), Some(last)) = (kills.iter().min(), kills.iter().max()) {
        let when = |time: i64| chrono::DateTime::from_timestamp_nanos(time).to_rfc3339();
        evidence.push(if kills.len() == 1 {
            format!("killed by the kernel's OOM killer at {}", when(*last))
        } else {
            format!("killed by the kernel's OOM killer {} times, from {} to {}", kills.len(), when(*first), when(*last))
        });
    }
    let restarts = container.restart_count.unwrap_or(0);
    let started = state.started_at.clone().unwrap_or_default();
    let restarted = state.status == Some(ContainerStateStatusEnum::RUNNING)
        && kills.iter().max().is_some_and(|last| started_after(&started, *last));
    evidence.push(if restarted {
        format!("restarted: running again since {started} (restart count {restarts})")
    } else if down_for_memory {
        format!(
            "not restarted: {} since {}",
            state.status.map(|status| status.to_string()).unwrap_or_default(),
            state.finished_at.unwrap_or_default()
        )
    } else {
        format!("{} (restart count {restarts})", state.status.map(|status| status.to_string()).unwrap_or_default())
    });
    Some(
        Finding::warning(
            format!("container-oom:{service}"),
            format!(
                "`{}` was killed for running out of memory: the work it was doing was cut short",
                context.stack.container_name(service)
            ),
            format!(
                "raise `memory` under `[services.{service}.hardening]` in deploy.toml (the host must have it), then {}; \
                 if it grows without bound, look for a leak in {}",
                context.command(&format!("deploy {service}")),
                context.command(&format!("logs {service}"))
            ),
        )
        .with_evidence(evidence),
    )
}

/// Whether the RFC 3339 `started` is after Unix nanosecond `time`.
fn started_after(started: &str, time: i64) -> bool {
    chrono::DateTime::parse_from_rfc3339(started)
        .ok()
        .and_then(|started| started.timestamp_nanos_opt())
        .is_some_and(|started| started > time)
}

fn mebibytes(bytes: i64) -> String {
    if bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// What of `lockdown` the container runs without, one line each; empty when it has it all.
#[must_use]
pub fn missing_lockdown(lockdown: &Lockdown, container: &ContainerInspectResponse) -> Vec<String> {
    let host = container.host_config.clone().unwrap_or_default();
    let mut missing = Vec::new();
    if lockdown.read_only && host.readonly_rootfs != Some(true) {
        missing.push("writable root filesystem (deploy.toml: `read_only = true`)".to_owned());
    }
    capabilities(lockdown, &host, &mut missing);
    let no_new_privileges = host.security_opt.iter().flatten().any(|option| {
        matches!(option.as_str(), "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true")
    });
    if lockdown.no_new_privileges && !no_new_privileges {
        missing.push("no `no-new-privileges`: a setuid binary could raise its rights".to_owned());
    }
    let wanted_memory = lockdown.memory.as_i64();
    match host.memory.unwrap_or(0) {
        0 => missing.push(format!("no memory limit (deploy.toml: `{}`)", lockdown.memory)),
        memory if memory != wanted_memory => {
            missing.push(format!("memory limit {}, deploy.toml says `{}`", mebibytes(memory), lockdown.memory));
        }
        memory if host.memory_swap.unwrap_or(0) != memory => {
            missing.push("swap allowed beyond the memory limit (deploy.toml: none)".to_owned());
        }
        _ => {}
    }
    match host.nano_cpus.unwrap_or(0) {
        0 => missing.push(format!("no CPU limit (deploy.toml: `cpus = {}`)", lockdown.cpus)),
        nanos if nanos != lockdown.nano_cpus() => {
            #[allow(clippy::cast_precision_loss, reason = "a CPU count for a message")]
            let cpus = nanos as f64 / 1e9;
            missing.push(format!("CPU limit {cpus}, deploy.toml says `cpus = {}`", lockdown.cpus));
        }
        _ => {}
    }
    match host.pids_limit.unwrap_or(0) {
        pids if pids <= 0 => {
            missing.push(format!("no pids limit (deploy.toml: `pids_limit = {}`)", lockdown.pids_limit));
        }
        pids if pids != i64::from(lockdown.pids_limit) => {
            missing.push(format!("pids limit {pids}, deploy.toml says `pids_limit = {}`", lockdown.pids_limit));
        }
        _ => {}
    }
    let log = host.log_config.unwrap_or_default();
    let driver = log.typ.unwrap_or_default();
    let options = log.config.unwrap_or_default();
    let rotated = match driver.as_str() {
        // `local` rotates by itself (20 MiB × 5 unless told otherwise).
        "local" => true,
        "json-file" => options.contains_key("max-size"),
        _ => false,
    };
    if !rotated {
        let driver = if driver.is_empty() { "the engine's default" } else { driver.as_str() };
        missing.push(format!(
            "no log rotation: driver {driver} without `max-size` (deploy.toml: {} with `max_size = \"{}\"`)",
            lockdown.log_driver.as_str(),
            lockdown.log_max_size
        ));
    }
    missing
}

/// Capabilities deploy.toml drops that the container keeps, and ones it adds that deploy.toml
/// does not.
fn capabilities(lockdown: &Lockdown, host: &HostConfig, missing: &mut Vec<String>) {
    let name = |capability: &String| capability.strip_prefix("CAP_").unwrap_or(capability).to_ascii_uppercase();
    let dropped: Vec<String> = host.cap_drop.iter().flatten().map(name).collect();
    let kept: Vec<String> = lockdown.cap_drop.iter().map(name).filter(|wanted| !dropped.contains(wanted)).collect();
    if kept.iter().any(|capability| capability == "ALL") {
        missing.push("capabilities kept: Docker's default set (deploy.toml: `cap_drop = [\"ALL\"]`)".to_owned());
    } else if !kept.is_empty() {
        missing.push(format!("capabilities kept: {} (deploy.toml drops them)", kept.join(", ")));
    }
    let allowed: Vec<String> = lockdown.cap_add.iter().map(name).collect();
    let added: Vec<String> =
        host.cap_add.iter().flatten().map(name).filter(|capability| !allowed.contains(capability)).collect();
    if !added.is_empty() {
        missing.push(format!("capabilities added that deploy.toml does not give: {}", added.join(", ")));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::HostConfigLogConfig;

    use super::*;
    use crate::config::Hardening;

    fn lockdown() -> Lockdown {
        Lockdown::resolve(&[&Hardening::default()])
    }

    /// A container as deploy creates it for [`lockdown`].
    fn locked(lockdown: &Lockdown) -> ContainerInspectResponse {
        ContainerInspectResponse {
            host_config: Some(HostConfig {
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".to_owned()]),
                cap_add: Some(Vec::new()),
                security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
                memory: Some(lockdown.memory.as_i64()),
                memory_swap: Some(lockdown.memory.as_i64()),
                nano_cpus: Some(lockdown.nano_cpus()),
                pids_limit: Some(i64::from(lockdown.pids_limit)),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".to_owned()),
                    config: Some(HashMap::from([("max-size".to_owned(), "10m".to_owned())])),
                }),
                ..HostConfig::default()
            }),
            ..ContainerInspectResponse::default()
        }
    }

    #[test]
    fn a_container_deploy_made_lacks_nothing() {
        let lockdown = lockdown();
        assert_eq!(missing_lockdown(&lockdown, &locked(&lockdown)), Vec::<String>::new());
    }

    #[test]
    fn a_container_with_docker_s_defaults_lacks_everything_one_line_each() {
        let bare = ContainerInspectResponse {
            host_config: Some(HostConfig {
                log_config: Some(HostConfigLogConfig { typ: Some("json-file".to_owned()), config: None }),
                ..HostConfig::default()
            }),
            ..ContainerInspectResponse::default()
        };
        let missing = missing_lockdown(&lockdown(), &bare);
        let starts: Vec<&str> = missing.iter().map(|line| line.split([' ', ':']).next().unwrap()).collect();
        assert_eq!(missing.len(), 7, "{missing:#?}");
        for expected in [
            "writable root",
            "capabilities kept: Docker's default",
            "no `no-new-privileges`",
            "no memory limit",
            "no CPU limit",
            "no pids limit",
            "no log rotation",
        ] {
            assert!(missing.iter().any(|line| line.starts_with(expected)), "`{expected}` in {missing:#?} ({starts:?})");
        }
    }

    #[test]
    fn each_difference_is_named_and_a_declared_exception_is_not_blamed() {
        let lockdown = lockdown();
        let mut container = locked(&lockdown);
        let host = container.host_config.as_mut().unwrap();
        host.cap_add = Some(vec!["CAP_NET_RAW".to_owned()]);
        host.memory_swap = Some(-1);
        host.pids_limit = Some(-1);
        host.log_config = Some(HostConfigLogConfig { typ: Some("local".to_owned()), config: None });
        let missing = missing_lockdown(&lockdown, &container);
        assert_eq!(
            missing,
            [
                "capabilities added that deploy.toml does not give: NET_RAW",
                "swap allowed beyond the memory limit (deploy.toml: none)",
                "no pids limit (deploy.toml: `pids_limit = 256`)",
            ],
            "`local` rotates by itself"
        );
        let writable = Lockdown::resolve(&[&Hardening { read_only: Some(false), ..Hardening::default() }]);
        let mut container = locked(&writable);
        container.host_config.as_mut().unwrap().readonly_rootfs = Some(false);
        assert!(missing_lockdown(&writable, &container).is_empty(), "deploy.toml opted out of `read_only`");
    }

    #[test]
    fn a_restart_after_the_kill_is_recognised() {
        let kill = 1_796_623_200_500_000_000; // 2026-12-07T06:00:00.5Z
        assert!(started_after("2026-12-07T06:00:00.853588445Z", kill));
        assert!(!started_after("2026-12-07T06:00:00.1Z", kill), "same second, before the kill");
        assert!(!started_after("0001-01-01T00:00:00Z", kill));
        assert_eq!(mebibytes(48 << 20), "48 MiB");
    }
}
