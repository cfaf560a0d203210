//! `masstockctl status`: what runs, per service: the project's containers as the engine sees them.

use std::collections::BTreeMap;
use std::process::ExitCode;

use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::Docker;
use serde::Serialize;

use crate::commands::GlobalArgs;
use crate::config::Stack;
use crate::docker::{self, labels};
use crate::error::CommandError;
use crate::health::seconds_since;
use crate::ui::short_duration;
use crate::ui::Ui;

/// Show the containers of the stack, per service
///
/// One row per container of the project: each enabled service's (`absent` when it has none), the
/// standby that serves for a few seconds while a rollout replaces a primary, and any container
/// that carries the project's label but belongs to no declared service. Each row gives the
/// container, its state and Docker health, its restarts, how long it has been up (or since when,
/// and with which code, it exited), its image, the image's revision label and its published ports.
///
/// `status` informs and does not judge: it exits 0 whatever the containers' state (1 only when the
/// engine cannot be asked). `masstockctl health` is the command whose exit status says whether the
/// stack works.
///
/// `--json` prints `{"project", "services": [{"service", "declared", "container", "role", "state",
/// "health", "restart_count", "exit_code", "started_at", "finished_at", "uptime_s", "exited_s",
/// "image", "revision", "ports": [{"host_ip", "host_port", "container_port", "protocol"}]}]}`, with
/// `null` where a value does not apply (`container` is `null` for an absent service).
///
/// Example: `masstockctl status --json | jq '.services[] | select(.state != "running")'`
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}

/// One row of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerStatus {
    pub service: String,
    /// Whether deploy.toml declares (and enables) the service.
    pub declared: bool,
    pub container: Option<String>,
    /// `primary` or `standby` (`io.masstock.role`); `null` for containers we did not label.
    pub role: Option<String>,
    /// The engine's state (`running`, `exited`, `restarting`, …), or `absent`.
    pub state: String,
    /// `healthy`, `unhealthy` or `starting`; `null` without a health check.
    pub health: Option<String>,
    pub restart_count: Option<i64>,
    pub exit_code: Option<i64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Seconds since it started, while it runs.
    pub uptime_s: Option<u64>,
    /// Seconds since it stopped, when it does not run.
    pub exited_s: Option<u64>,
    pub image: Option<String>,
    /// `org.opencontainers.image.revision` of the image.
    pub revision: Option<String>,
    pub ports: Vec<PublishedPort>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublishedPort {
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: String,
}

pub fn cmd_status(global: &GlobalArgs, ui: &Ui, _args: &StatusArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack_without_env_file()?;
    let rows = crate::runtime::block_on(async {
        let docker = docker::connect().await?;
        collect(&docker, &stack).await
    })??;
    if ui.json {
        ui.json_document(&serde_json::json!({ "project": stack.config.project.name, "services": rows }));
    } else {
        ui.data(&render(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// The rows: declared services in start order (each primary first), then undeclared ones by name.
pub async fn collect(docker: &Docker, stack: &Stack) -> Result<Vec<ContainerStatus>, CommandError> {
    let project = &stack.config.project.name;
    let containers = docker::project_containers(docker, project).await?;
    let mut by_service: BTreeMap<String, Vec<ContainerSummary>> = BTreeMap::new();
    for container in containers {
        let service = docker::service_of(&container).unwrap_or("").to_owned();
        by_service.entry(service).or_default().push(container);
    }
    let mut rows = Vec::new();
    for service in stack.start_order() {
        let mut containers = by_service.remove(service).unwrap_or_default();
        if containers.is_empty() {
            rows.push(absent(service));
            continue;
        }
        let primary = stack.container_name(service);
        containers.sort_by_key(|container| (docker::name_of(container) != primary, docker::name_of(container)));
        for container in containers {
            rows.push(describe(docker, service, true, &container).await?);
        }
    }
    for (service, containers) in by_service {
        for container in containers {
            rows.push(describe(docker, &service, false, &container).await?);
        }
    }
    Ok(rows)
}

fn absent(service: &str) -> ContainerStatus {
    ContainerStatus {
        service: service.to_owned(),
        declared: true,
        container: None,
        role: None,
        state: "absent".to_owned(),
        health: None,
        restart_count: None,
        exit_code: None,
        started_at: None,
        finished_at: None,
        uptime_s: None,
        exited_s: None,
        image: None,
        revision: None,
        ports: Vec::new(),
    }
}

async fn describe(
    docker: &Docker,
    service: &str,
    declared: bool,
    summary: &ContainerSummary,
) -> Result<ContainerStatus, CommandError> {
    let name = docker::name_of(summary);
    let id = summary.id.clone().unwrap_or_else(|| name.clone());
    // A container removed between the list and now (a rollout's standby) is skipped as absent.
    let inspected = match docker.inspect_container(&id, None).await {
        Ok(inspected) => inspected,
        Err(error) if docker::is_not_found(&error) => ContainerInspectResponse::default(),
        Err(error) => return Err(docker::api_error(format!("failed to inspect `{name}`"), &error).into()),
    };
    let state = inspected.state.clone().unwrap_or_default();
    let status = state.status.map_or_else(
        || summary.state.map_or_else(|| "unknown".to_owned(), |state| state.to_string()),
        |status| status.to_string(),
    );
    let running = status == "running" || status == "restarting" || status == "paused";
    let revision = match summary.image_id.as_deref().or(inspected.image.as_deref()) {
        Some(image) => image_revision(docker, image).await,
        None => None,
    };
    let mut ports: Vec<PublishedPort> = summary
        .ports
        .iter()
        .flatten()
        .map(|port| PublishedPort {
            host_ip: port.ip.clone(),
            host_port: port.public_port,
            container_port: port.private_port,
            protocol: port.typ.map_or_else(|| "tcp".to_owned(), |typ| typ.to_string()),
        })
        .collect();
    ports.sort_by_key(|port| (port.container_port, port.host_ip.clone(), port.host_port));
    ports.dedup_by_key(|port| (port.container_port, port.host_port, port.protocol.clone(), port.host_ip.clone()));
    let role = summary.labels.as_ref().and_then(|labels| labels.get(labels::ROLE)).cloned();
    Ok(ContainerStatus {
        service: service.to_owned(),
        declared,
        container: Some(name),
        role,
        health: state
            .health
            .and_then(|health| health.status)
            .map(|status| status.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        restart_count: inspected.restart_count,
        exit_code: if running { None } else { state.exit_code },
        uptime_s: if running { state.started_at.as_deref().and_then(seconds_since) } else { None },
        exited_s: if running { None } else { state.finished_at.as_deref().and_then(seconds_since) },
        started_at: state.started_at.filter(|at| seconds_since(at).is_some()),
        finished_at: state.finished_at.filter(|at| seconds_since(at).is_some()),
        state: status,
        image: summary.image.clone(),
        revision,
        ports,
    })
}

/// The image's `org.opencontainers.image.revision` label.
async fn image_revision(docker: &Docker, image: &str) -> Option<String> {
    let inspected = docker.inspect_image(image).await.ok()?;
    inspected.config?.labels?.get(labels::REVISION).cloned().filter(|revision| !revision.is_empty())
}

/// The table operators read.
fn render(rows: &[ContainerStatus]) -> String {
    let headers = ["SERVICE", "CONTAINER", "STATE", "HEALTH", "RESTARTS", "UP / EXITED", "IMAGE", "REVISION", "PORTS"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let service = if row.declared { row.service.clone() } else { format!("{} (undeclared)", row.service) };
            let container = match (&row.container, row.role.as_deref()) {
                (Some(name), Some("standby")) => format!("{name} (standby)"),
                (Some(name), _) => name.clone(),
                (None, _) => "-".to_owned(),
            };
            let since = match (row.uptime_s, row.exited_s, row.exit_code) {
                (Some(up), _, _) => format!("up {}", short_duration(up)),
                (None, Some(ago), Some(code)) => format!("exited {} ago, code {code}", short_duration(ago)),
                (None, None, Some(code)) => format!("code {code}"),
                _ => "-".to_owned(),
            };
            let revision = row.revision.as_deref().map_or_else(|| "-".to_owned(), short_revision);
            let ports = if row.ports.is_empty() {
                "-".to_owned()
            } else {
                row.ports
                    .iter()
                    .map(|port| match port.host_port {
                        Some(host) => format!(
                            "{}:{host}→{}/{}",
                            port.host_ip.as_deref().unwrap_or("0.0.0.0"),
                            port.container_port,
                            port.protocol
                        ),
                        None => format!("{}/{}", port.container_port, port.protocol),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                service,
                container,
                row.state.clone(),
                row.health.clone().unwrap_or_else(|| "-".to_owned()),
                row.restart_count.map_or_else(|| "-".to_owned(), |count| count.to_string()),
                since,
                row.image.clone().unwrap_or_else(|| "-".to_owned()),
                revision,
                ports,
            ]
        })
        .collect();
    crate::ui::table(&headers, &[], &cells)
}

/// A commit's first 12 hex digits, keeping a `-dirty` mark: `28df0e204665-dirty`.
fn short_revision(revision: &str) -> String {
    let (commit, rest) = revision.split_once('-').map_or((revision, ""), |(commit, rest)| (commit, rest));
    if commit.len() > 12 && commit.chars().all(|c| c.is_ascii_hexdigit()) {
        let rest = if rest.is_empty() { String::new() } else { format!("-{rest}") };
        format!("{}{rest}", &commit[..12])
    } else {
        revision.to_owned()
    }
}
