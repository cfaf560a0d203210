//! Applying a plan: network and volumes first, then each service in start order, health-gated.
//!
//! - **create / start**: the container starts and must become ready before its dependents start.
//! - **stop-first recreate** (worker, redis): the old container gets SIGTERM and its
//!   `stop_grace_period`, is renamed aside, and the new one starts. If the new one is not ready,
//!   it is removed and the old one is renamed back and started: the service is as it was.
//! - **start-first recreate** (api, app, vitrine: behind the edge, with a health check): a
//!   standby container starts on ports Docker picks, becomes ready, and nginx is pointed at it
//!   (test, graceful reload); the old container is drained and stopped, the new primary starts on
//!   the declared ports, becomes ready, nginx is pointed back, and the standby is drained and
//!   removed. nginx's graceful reload lets its old workers finish their requests, so no request
//!   fails; the declared ports (`127.0.0.1:3000`) stay the contract between two deploys.
//!
//! Before a service's container is created, replaced or started, its secret files are installed
//! (`secret_files.rs`); after the plan, whether it succeeded or not, the versions no container of
//! the project mounts any more are removed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use serde_json::{json, Value};

use crate::config::{DependencyCondition, Rollout, Stack};
use crate::deploy::secret_files::{self, SecretFilesError};
use crate::deploy::spec::{project_labels, Role, ServiceSpec};
use crate::deploy::wait::{self, Unready};
use crate::deploy::{edge, Action, Existing, Plan, Step};
use crate::docker::DockerError;
use crate::docker::{self, labels};
use crate::render::RenderError;
use crate::report::Reporter;

/// How long nginx's old workers get to finish the requests they hold after a reload, before the
/// container they talk to is stopped. Each container also drains on SIGTERM.
const DRAIN: Duration = Duration::from_secs(2);

/// Settings of one application.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How long a new container gets to become ready.
    pub ready_timeout: Duration,
}

/// What happened to one service.
#[derive(Debug, Clone)]
pub struct ServiceOutcome {
    pub service: String,
    pub action: String,
    pub ok: bool,
    pub seconds: f64,
    pub detail: String,
    pub unready: Option<Unready>,
}

/// What applying the plan did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub services: Vec<ServiceOutcome>,
    pub edge: Option<String>,
    pub failed: bool,
}

impl Outcome {
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "ok": !self.failed,
            "edge": self.edge,
            "services": self.services.iter().map(|outcome| json!({
                "service": outcome.service,
                "action": outcome.action,
                "ok": outcome.ok,
                "seconds": (outcome.seconds * 10.0).round() / 10.0,
                "detail": outcome.detail,
                "failure": outcome.unready.as_ref().map(Unready::to_json),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Applies `plan`. Stops at the first service that fails, which is put back as it was; the
/// services after it are not touched.
pub async fn apply(
    docker: &Docker,
    stack: &Stack,
    plan: &Plan,
    options: &ApplyOptions,
    reporter: &dyn Reporter,
) -> Outcome {
    let mut outcome = Outcome::default();
    let prepared = match prepare(docker, stack, plan).await {
        Ok(prepared) => prepared,
        Err(error) => {
            outcome.failed = true;
            outcome.services.push(failed_outcome("network", "create", 0.0, &error));
            return outcome;
        }
    };
    let plan = prepared.as_ref().unwrap_or(plan);
    if plan.site_changed {
        match edge::install_site(stack, &plan.site) {
            Ok(change) => {
                reporter.step(&format!("edge: nginx site {}", change.as_str()));
                outcome.edge = Some(change.as_str().to_owned());
            }
            Err(error) => {
                outcome.failed = true;
                outcome.edge = Some(format!("failed: {}", crate::error::chain(&error).join(": ")));
                return outcome;
            }
        }
    }
    for step in &plan.steps {
        if !step.action.changes_anything() {
            continue;
        }
        if let Some(spec) = &step.spec {
            if let Err(error) = dependencies_ready(docker, stack, &spec.service, options.ready_timeout).await {
                outcome.failed = true;
                outcome.services.push(failed_outcome(&step.service, step.action.name(), 0.0, &error));
                break;
            }
        }
        let started = Instant::now();
        reporter.step(&format!("{}: {}…", step.service, describe(step)));
        let result = apply_step(docker, stack, step, options, reporter).await;
        let seconds = started.elapsed().as_secs_f64();
        let ok = result.is_ok();
        let (detail, unready) = match result {
            Ok(detail) => {
                let shown = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
                reporter.step(&format!("{}: {} done in {seconds:.1}s{shown}", step.service, step.action.name()));
                (detail, None)
            }
            Err(StepError::Unready { unready, detail }) => (detail, Some(*unready)),
            Err(StepError::Failed(error)) => (crate::error::chain(&error).join(": "), None),
        };
        outcome.services.push(ServiceOutcome {
            service: step.service.clone(),
            action: step.action.name().to_owned(),
            ok,
            seconds,
            detail,
            unready,
        });
        if !ok {
            outcome.failed = true;
            break;
        }
    }
    remove_unused_secret_files(docker, stack, reporter).await;
    outcome
}

/// Removes the secret files no container of the project mounts any more; a failure is reported
/// and the deploy's outcome stands (the next deploy tries again).
async fn remove_unused_secret_files(docker: &Docker, stack: &Stack, reporter: &dyn Reporter) {
    let containers = match docker::project_containers(docker, &stack.config.project.name).await {
        Ok(containers) => containers,
        Err(error) => {
            reporter.detail(&format!("secret files kept: {}", crate::error::chain(&error).join(": ")));
            return;
        }
    };
    let mounted = containers
        .iter()
        .flat_map(|container| container.mounts.iter().flatten())
        .filter_map(|mount| mount.source.as_ref().map(std::path::PathBuf::from))
        .collect();
    match secret_files::remove_unused(stack, &mounted) {
        Ok(removed) => {
            for folder in removed {
                reporter.detail(&format!("secret files removed: {}", folder.display()));
            }
        }
        Err(error) => reporter.detail(&format!("secret files kept: {}", crate::error::chain(&error).join(": "))),
    }
}

fn describe(step: &Step) -> String {
    match (&step.action, step.spec.as_ref().map(|spec| spec.rollout)) {
        (Action::Recreate(reasons), Some(Rollout::StartFirst)) => {
            format!("recreate, start-first ({} changed)", reasons.join(", "))
        }
        (Action::Recreate(reasons), _) => format!("recreate, stop-first ({} changed)", reasons.join(", ")),
        (action, _) => action.name().to_owned(),
    }
}

fn failed_outcome(service: &str, action: &str, seconds: f64, error: &ApplyError) -> ServiceOutcome {
    ServiceOutcome {
        service: service.to_owned(),
        action: action.to_owned(),
        ok: false,
        seconds,
        detail: crate::error::chain(error).join(": "),
        unready: None,
    }
}

/// Why a step failed.
#[derive(Debug)]
pub enum StepError {
    /// A new container did not become ready; `detail` says what was done about it.
    Unready {
        unready: Box<Unready>,
        detail: String,
    },
    Failed(ApplyError),
}

impl<E: Into<ApplyError>> From<E> for StepError {
    fn from(error: E) -> Self {
        Self::Failed(error.into())
    }
}

/// Why a step could not be carried out (a container that is not ready is `StepError::Unready`).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The new container could not start; a taken port is the usual reason.
    #[error(transparent)]
    NotStarted(DockerError),
    #[error(transparent)]
    Edge(#[from] edge::EdgeError),
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Resolving the specs again on a network just created (it resolved when planned).
    #[error(transparent)]
    Spec(#[from] crate::deploy::spec::SpecError),
    #[error(transparent)]
    SecretFiles(#[from] SecretFilesError),
    #[error("{standby} has no host port for {port}/tcp")]
    NoStandbyPort { standby: String, port: u16 },
    /// `reason`: it exited non-zero, did not finish in time, could not start.
    #[error(
        "the release command `{command}` of `{service}` {reason}; the running container was left as it is:\n    {logs}"
    )]
    ReleaseFailed { command: String, service: String, reason: String, logs: String },
    #[error("`{service}` needs `{dependency}` {condition}, which it is not:\n{evidence}")]
    DependencyNotReady { service: String, dependency: String, condition: &'static str, evidence: String },
}

async fn apply_step(
    docker: &Docker,
    stack: &Stack,
    step: &Step,
    options: &ApplyOptions,
    reporter: &dyn Reporter,
) -> Result<String, StepError> {
    if let (Action::Create | Action::Recreate(_) | Action::Start, Some(files)) =
        (&step.action, step.spec.as_ref().and_then(|spec| spec.secrets.as_ref()))
    {
        files.install(&step.service)?;
    }
    if let (Action::Create | Action::Recreate(_), Some(spec)) = (&step.action, &step.spec) {
        run_release_command(docker, stack, spec, options.ready_timeout, reporter).await?;
    }
    match (&step.action, &step.spec, &step.existing) {
        (Action::Remove, _, Some(existing)) => {
            stop(docker, &existing.name, 10).await?;
            remove(docker, &existing.name).await?;
            Ok(String::new())
        }
        (Action::Start, Some(spec), Some(existing)) => {
            docker
                .start_container(&existing.name, None)
                .await
                .map_err(|error| docker::api_error(format!("failed to start {}", existing.name), &error))?;
            ready_or_explain(docker, &existing.name, spec, options, reporter)
                .await
                .map_err(|unready| StepError::Unready { unready, detail: "it was left as it is".to_owned() })?;
            Ok(String::new())
        }
        (Action::Create, Some(spec), _) => {
            create_and_start(docker, stack, spec, Role::Primary, None).await?;
            if let Err(unready) = ready_or_explain(docker, &spec.container, spec, options, reporter).await {
                remove(docker, &spec.container).await?;
                return Err(StepError::Unready { unready, detail: "the new container was removed".to_owned() });
            }
            Ok(String::new())
        }
        (Action::Recreate(_), Some(spec), Some(existing)) => {
            let start_first = spec.rollout == Rollout::StartFirst && existing.running;
            if start_first {
                start_first_replace(docker, stack, spec, existing, options, reporter).await
            } else {
                stop_first_replace(docker, stack, spec, existing, options, reporter).await
            }
        }
        _ => Ok(String::new()),
    }
}

/// Runs the service's `release_command` in a one-off container of the new image; fails with its
/// output when it exits non-zero.
async fn run_release_command(
    docker: &Docker,
    stack: &Stack,
    spec: &ServiceSpec,
    timeout: Duration,
    reporter: &dyn Reporter,
) -> Result<(), ApplyError> {
    let command = &stack.config.services[&spec.service].release_command;
    if command.is_empty() {
        return Ok(());
    }
    let name = format!("{}_release", spec.container);
    remove(docker, &name).await?;
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    docker
        .create_container(Some(options), spec.one_off_body(stack, command))
        .await
        .map_err(|error| docker::api_error(format!("failed to create {name}"), &error))?;
    reporter.step(&format!("{}: release command `{}`…", spec.service, command.join(" ")));
    let result = async {
        docker
            .start_container(&name, None)
            .await
            .map_err(|error| format!("could not start: {}", docker::engine_message(&error)))?;
        let mut waiting = docker.wait_container(&name, None::<bollard::query_parameters::WaitContainerOptions>);
        let waited = tokio::time::timeout(timeout, futures_util::StreamExt::next(&mut waiting)).await;
        let code = match waited {
            Err(_) => return Err(format!("did not finish within {}s", timeout.as_secs())),
            Ok(Some(Ok(response))) => response.status_code,
            // bollard reports a non-zero exit as an error carrying the code.
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
            Ok(Some(Err(error))) => return Err(docker::engine_message(&error)),
            Ok(None) => return Err("the engine ended the wait without a status".to_owned()),
        };
        if code == 0 {
            Ok(())
        } else {
            Err(format!("exited with code {code}"))
        }
    }
    .await;
    let outcome = match result {
        Ok(()) => Ok(()),
        Err(reason) => {
            let logs = wait::last_log_lines(docker, &name, 20).await;
            Err(ApplyError::ReleaseFailed {
                command: command.join(" "),
                service: spec.service.clone(),
                reason,
                logs: logs.join("\n    "),
            })
        }
    };
    remove(docker, &name).await?;
    outcome
}

/// Replaces a container while the old one serves until the new one is ready.
pub async fn start_first_replace(
    docker: &Docker,
    stack: &Stack,
    spec: &ServiceSpec,
    existing: &Existing,
    options: &ApplyOptions,
    reporter: &dyn Reporter,
) -> Result<String, StepError> {
    let standby = spec.container_name(Role::Standby);
    remove(docker, &standby).await?;
    let previous_image = Some(existing.image_id.as_str());
    create_and_start(docker, stack, spec, Role::Standby, previous_image).await?;
    if let Err(unready) = ready_or_explain(docker, &standby, spec, options, reporter).await {
        remove(docker, &standby).await?;
        return Err(StepError::Unready {
            unready,
            detail: format!("the new container was removed; {} keeps serving", existing.name),
        });
    }
    let port = standby_port(docker, stack, spec, &standby).await?;
    reporter.detail(&format!("{}: standby ready on port {port}; switching nginx to it", spec.service));
    switch_upstream(stack, &BTreeMap::from([(spec.service.clone(), port)]))?;
    tokio::time::sleep(DRAIN).await;
    stop(docker, &existing.name, spec.stop_timeout).await?;
    remove(docker, &existing.name).await?;
    create_and_start(docker, stack, spec, Role::Primary, previous_image).await?;
    if let Err(unready) = ready_or_explain(docker, &spec.container, spec, options, reporter).await {
        remove(docker, &spec.container).await?;
        return Err(StepError::Unready {
            unready,
            detail: format!("the new primary was removed; the standby {standby} (same image and settings) serves on port {port}: deploy again"),
        });
    }
    switch_upstream(stack, &BTreeMap::new())?;
    tokio::time::sleep(DRAIN).await;
    stop(docker, &standby, spec.stop_timeout).await?;
    remove(docker, &standby).await?;
    Ok("start-first: the new container served before the old one stopped".to_owned())
}

/// Replaces a container by stopping it first; puts it back when the new one is not ready.
async fn stop_first_replace(
    docker: &Docker,
    stack: &Stack,
    spec: &ServiceSpec,
    existing: &Existing,
    options: &ApplyOptions,
    reporter: &dyn Reporter,
) -> Result<String, StepError> {
    let aside = format!("{}_replaced", spec.container);
    remove(docker, &aside).await?;
    stop(docker, &existing.name, spec.stop_timeout).await?;
    rename(docker, &existing.name, &aside).await?;
    let previous_image = Some(existing.image_id.as_str());
    let created = create_and_start(docker, stack, spec, Role::Primary, previous_image).await;
    let unready = match created {
        Ok(()) => match ready_or_explain(docker, &spec.container, spec, options, reporter).await {
            Ok(()) => {
                remove(docker, &aside).await?;
                return Ok(format!("the old container had {}s to stop", spec.stop_timeout));
            }
            Err(unready) => unready,
        },
        Err(error) => {
            restore(docker, &spec.container, &aside, &existing.name, existing.running).await?;
            return Err(error.into());
        }
    };
    restore(docker, &spec.container, &aside, &existing.name, existing.running).await?;
    Err(StepError::Unready {
        unready,
        detail: format!("the new container was removed and the previous one restarted as {}", existing.name),
    })
}

/// Removes the failed new container and puts the previous one back under its name.
async fn restore(
    docker: &Docker,
    failed: &str,
    aside: &str,
    original: &str,
    was_running: bool,
) -> Result<(), ApplyError> {
    remove(docker, failed).await?;
    rename(docker, aside, original).await?;
    if was_running {
        docker
            .start_container(original, None)
            .await
            .map_err(|error| docker::api_error(format!("failed to restart {original}"), &error))?;
    }
    Ok(())
}

/// Points the edge's upstreams for some services at other ports (or back, with none).
fn switch_upstream(stack: &Stack, overrides: &BTreeMap<String, u16>) -> Result<(), ApplyError> {
    let site = crate::render::render_edge_site(stack, overrides)?;
    edge::install_site(stack, &site)?;
    Ok(())
}

/// The host port a standby got for the container port the edge sends traffic to.
async fn standby_port(docker: &Docker, stack: &Stack, spec: &ServiceSpec, standby: &str) -> Result<u16, ApplyError> {
    let service = &stack.config.services[&spec.service];
    let container_port = stack
        .sites()
        .find(|(_, site)| site.service == spec.service)
        .and_then(|(_, site)| site.port)
        .or_else(|| service.ports.first().map(|port| port.container))
        .unwrap_or_default();
    let inspected = docker
        .inspect_container(standby, None)
        .await
        .map_err(|error| docker::api_error(format!("failed to inspect {standby}"), &error))?;
    inspected
        .network_settings
        .and_then(|settings| settings.ports)
        .and_then(|ports| ports.get(&format!("{container_port}/tcp")).cloned().flatten())
        .and_then(|bindings| bindings.into_iter().find_map(|binding| binding.host_port?.parse().ok()))
        .ok_or_else(|| ApplyError::NoStandbyPort { standby: standby.to_owned(), port: container_port })
}

/// Creates the project's network and volumes when missing. A network it creates has a gateway
/// the plan could not know: the plan resolved again on it is returned (the API's
/// `TRUSTED_PROXIES`).
async fn prepare(docker: &Docker, stack: &Stack, plan: &Plan) -> Result<Option<Plan>, ApplyError> {
    let project = &stack.config.project;
    if plan.network_missing {
        let mut network_labels = project_labels(stack, "");
        network_labels.remove(labels::SERVICE);
        network_labels.insert(labels::NETWORK.to_owned(), project.network.clone());
        let request = NetworkCreateRequest {
            name: project.network.clone(),
            driver: Some("bridge".to_owned()),
            labels: Some(network_labels),
            ..NetworkCreateRequest::default()
        };
        docker
            .create_network(request)
            .await
            .map_err(|error| docker::api_error(format!("failed to create network `{}`", project.network), &error))?;
    }
    let replanned = if plan.network_missing {
        let network = docker
            .inspect_network(&project.network, None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
            .map_err(|error| docker::api_error(format!("failed to inspect network `{}`", project.network), &error))?;
        Some(plan.on_created_network(stack, &crate::deploy::spec::gateways_of(&network))?)
    } else {
        None
    };
    for volume in &plan.volumes_missing {
        let mut volume_labels = project_labels(stack, "");
        volume_labels.remove(labels::SERVICE);
        let short = volume.strip_prefix(&format!("{}_", project.name)).unwrap_or(volume);
        volume_labels.insert(labels::VOLUME.to_owned(), short.to_owned());
        let request = VolumeCreateRequest {
            name: Some(volume.clone()),
            labels: Some(volume_labels),
            ..VolumeCreateRequest::default()
        };
        docker
            .create_volume(request)
            .await
            .map_err(|error| docker::api_error(format!("failed to create volume `{volume}`"), &error))?;
    }
    Ok(replanned)
}

/// Waits until each dependency of `service` meets its declared condition.
async fn dependencies_ready(
    docker: &Docker,
    stack: &Stack,
    service: &str,
    timeout: Duration,
) -> Result<(), ApplyError> {
    for (dependency, condition) in &stack.config.services[service].depends_on {
        let container = stack.container_name(dependency);
        let readiness = match condition {
            DependencyCondition::Started => wait::Readiness { probe: None, probe_timeout: timeout },
            DependencyCondition::Healthy => crate::deploy::spec::readiness_of(&stack.config.services[dependency]),
        };
        wait::until_ready(docker, &container, &readiness, timeout).await.map_err(|unready| {
            let condition = match condition {
                DependencyCondition::Started => "started",
                DependencyCondition::Healthy => "healthy",
            };
            ApplyError::DependencyNotReady {
                service: service.to_owned(),
                dependency: dependency.clone(),
                condition,
                evidence: unready.to_text(),
            }
        })?;
    }
    Ok(())
}

/// Waits until `container` is ready, the reporter showing the wait (a spinner on a terminal).
async fn ready_or_explain(
    docker: &Docker,
    container: &str,
    spec: &ServiceSpec,
    options: &ApplyOptions,
    reporter: &dyn Reporter,
) -> Result<(), Box<Unready>> {
    let waiting = reporter.waiting(container);
    let ready = wait::until_ready(docker, container, &spec.readiness(), options.ready_timeout).await;
    waiting.finish();
    ready
}

/// Creates and starts a container of `spec` in `role`.
pub async fn create_and_start(
    docker: &Docker,
    stack: &Stack,
    spec: &ServiceSpec,
    role: Role,
    previous_image: Option<&str>,
) -> Result<(), ApplyError> {
    let name = spec.container_name(role);
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    docker
        .create_container(Some(options), spec.create_body(stack, role, previous_image))
        .await
        .map_err(|error| docker::api_error(format!("failed to create {name}"), &error))?;
    if let Err(error) = docker.start_container(&name, None).await {
        let _ = remove(docker, &name).await;
        return Err(ApplyError::NotStarted(docker::api_error(format!("failed to start {name}"), &error)));
    }
    Ok(())
}

/// Stops a container, giving it `grace_secs` after SIGTERM.
pub async fn stop(docker: &Docker, name: &str, grace_secs: i64) -> Result<(), DockerError> {
    let options = StopContainerOptionsBuilder::default().t(i32::try_from(grace_secs).unwrap_or(i32::MAX)).build();
    match docker.stop_container(name, Some(options)).await {
        // 304: already stopped.
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
        Err(error) if docker::is_not_found(&error) => Ok(()),
        Err(error) => Err(docker::api_error(format!("failed to stop {name}"), &error)),
    }
}

/// Removes a container (stopping it hard if it still runs) and its anonymous volumes.
pub async fn remove(docker: &Docker, name: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(error) if docker::is_not_found(&error) => Ok(()),
        Err(error) => Err(docker::api_error(format!("failed to remove {name}"), &error)),
    }
}

async fn rename(docker: &Docker, from: &str, to: &str) -> Result<(), DockerError> {
    let options = RenameContainerOptionsBuilder::default().name(to).build();
    docker
        .rename_container(from, options)
        .await
        .map_err(|error| docker::api_error(format!("failed to rename {from} to {to}"), &error))
}
