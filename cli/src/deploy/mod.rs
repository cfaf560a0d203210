//! `deploy`'s engine: the plan (what each service needs, from the configuration hashes stored in
//! its container's labels) and its application (health-gated, start-first where traffic must not
//! stop). `rollback`, `restart` and `down` reuse its pieces; `rollout` is the flow `deploy` and
//! `rollback` share.
//!
//! Kamal and Dokku are the models: a health-gated cutover, a rollback to a kept image, a lock, and a
//! failure that says why. `docker compose up` is the baseline: the same objects, so compose tools
//! still see the stack.
//!
//! # The plan
//!
//! Each service resolves into a `ServiceSpec` (`spec.rs`): the container's Engine API body (image,
//! command, environment with each secret as `NAME_FILE`, ports on `edge.upstream_host`, named volumes
//! `<project>_<volume>` and the secret files' folder at `/run/secrets`, health check, restart
//! policy, `extra_hosts`, stop timeout, network alias = the service name) and three sha256 hashes, stored as labels: `io.masstock.hash.image` (the image
//! ID), `…hash.settings` (everything but the environment) and `…hash.env` (the resolved
//! environment), plus `io.masstock.config-hash` over the three. The plan compares them with the
//! running container's labels: equal → `keep` (or `start` when stopped), different → `recreate`
//! with the parts that changed (`image`, `config`, `env`), absent → `create`; a container of the
//! project that deploy.toml no longer declares → `remove` (only in a deploy of every service). A
//! container without our labels (made by docker-compose) is recreated once, "not created by
//! masstockctl". The env hash covers the secrets through their files' version (a hash of their
//! content, `secret_files.rs`), so a rotated secret recreates exactly the services that read it
//! (reason `env`); no label and no environment value holds a secret. `--plan` stops there and
//! changes nothing.
//!
//! The API's `TRUSTED_PROXIES` is derived, not declared: loopback and the project network's own
//! gateway(s), read from the engine (`spec::trusted_proxies`), since the host nginx's connections
//! to published ports come from there and Docker may pick the subnet from 172.16/12 or 192.168/16.
//! When the network does not exist yet, `apply` creates it first and resolves the specs again on
//! it (`Plan::on_created_network`), so the second deploy plans no change.
//!
//! # The objects
//!
//! Network `project.network`, volumes `<project>_<volume>` (compose's own naming, so the volumes the
//! reference's `docker-compose up` created are the ones deploy keeps using; the rendered compose
//! file names them the same way), containers `<project>_<service>`, each with the compose labels
//! (`project`, `service`, `container-number`, `oneoff`, `version`, and `network`/`volume` on those),
//! so `docker-compose -p masstock ps` lists the stack.
//!
//! # Order and readiness
//!
//! Services are applied in `start_order`; before each, its `depends_on` conditions are waited for
//! (`healthy` or `started`). Every created or replaced container must be ready before the next
//! service: running, and its own health test passing (`wait.rs`: our own probe every 500 ms, since
//! Docker's first probe comes after `interval` and API 1.41 has no `start_interval`). A container
//! that exits or restarts fails at once. `--timeout` (120 s) bounds the wait. A failure prints
//! `Unready`: the reason, state, exit code, `OOMKilled`, restart count, our last probe's output,
//! Docker's health log, and the last 20 log lines.
//!
//! # Replacing a container (`apply.rs`)
//!
//! - *start-first* (default for a service behind an enabled site with a health check and ports:
//!   api, app, vitrine): a standby `<container>_standby` starts from the new spec on ports Docker
//!   picks (`127.0.0.1:0`), becomes ready, and nginx's upstream for the service is pointed at it
//!   (rendered site, `nginx -t`, graceful reload). After a 2 s drain the old container gets SIGTERM
//!   (our servers finish in-flight requests) and is removed; the new primary starts on the declared
//!   ports, becomes ready, nginx is pointed back, and after another drain the standby is removed.
//!   Two switches instead of one, so the declared ports (`127.0.0.1:3000`) stay the contract
//!   between deploys: the reference's `curl localhost:3000`, `ports` and the compose file keep
//!   meaning what they say. nginx's graceful reload is what makes it lossless: old workers finish
//!   the requests they hold, new ones take the new upstream.
//! - *stop-first* (worker, redis, n8n; `rollout = "stop-first"` because two n8n on one `SQLite`
//!   volume would corrupt it): the old container gets SIGTERM and its `stop_grace_period` (the
//!   worker hands its jobs back to the queue), is renamed `<container>_replaced`, and the new one
//!   starts. If the new one is not ready, it is removed and the old one renamed back and started.
//! - A failure stops the deploy: the services after it are untouched, and the command exits 1.
//!
//! # Release command
//!
//! `release_command` (the api: `masstock-api migrate`) runs in a one-off container of the new image
//! with the service's environment before a container is created or replaced (Kamal's pre-deploy
//! hook, Heroku's release phase). Non-zero exit → the deploy stops with its output, the running
//! container untouched. Migrations must therefore stay compatible with the previous release, which
//! serves meanwhile.
//!
//! # Rollback
//!
//! Every container records the image it replaced (`io.masstock.previous-image`, set only when the
//! image changed). `rollback [SERVICE]` deploys that image with today's configuration through the
//! same path, so it is health-gated and start-first too, and the new container records the image
//! it replaced: rolling back twice returns. masstockctl never prunes images, and builds tag each
//! revision (`<repo>:<rev>`), so the previous image stays.
//!
//! # The edge (`edge.rs`)
//!
//! `deploy` renders the site and installs it only when its bytes differ: atomic write, the
//! `sites-enabled` link when configured, `test_command` (`nginx -t`), and only then
//! `reload_command`. A refused test puts the previous file back (or removes the new one and the
//! link it created) and nginx is not reloaded. `[edge] start_command` (the local environment's own
//! nginx) is run when a reload fails; a production nginx is systemd's business. The edge commands
//! run from deploy.toml's folder, since its relative paths are relative to it.
//!
//! # The lock (`lock.rs`)
//!
//! `deploy`, `rollback`, `restart` and `down` take `<state_dir>/<project>.deploy.lock`, created
//! with `O_EXCL`, holding user, host, pid, command and time. It is removed when the command ends,
//! failed or not. A killed command leaves it, on purpose: the stack may be half-changed, so the
//! next deploy refuses and says who held it since when and whether that pid still runs;
//! `lock release` removes it (and refuses while the holder still runs, without `--force`).
//!
//! # `down`
//!
//! `down` stops containers in reverse start order, each with its grace period, removes them and
//! the network; volumes only with `--volumes`; images are kept; the nginx site is left (it answers
//! 502 until the next deploy, which an operator reads as "stack down").
//!
//! # The local environment
//!
//! `script/local-up` (the README's main command) gives the local environment what a VPS already
//! has: a database (PostgreSQL on the host, reached through `host.docker.internal:host-gateway`;
//! bootstrap makes it listen to Docker's networks), certificates (a first one from a local CA so
//! that nginx can start, then `certs issue` from the bootstrap's Pebble over HTTP-01 through that
//! nginx, as production gets them from Let's Encrypt; `[edge] ca_bundle` holds both roots for
//! `health`), an nginx of its own (a main `nginx.conf` in `.masstock/local/nginx`), and Gemini (the
//! fake server on port 8089).
//!
//! Tests: `tests/it/deploy.rs` deploys the local environment on the real engine as a project of
//! its own and walks one stack through every case above (see that file).

pub mod apply;
pub mod edge;
pub mod lock;
pub mod rollout;
pub mod secret_files;
pub mod spec;
pub mod wait;

use std::collections::{BTreeMap, HashMap};

use bollard::models::ContainerSummary;
use bollard::Docker;
use serde_json::{json, Value};

use crate::config::Stack;
use crate::docker::build::ImageError;
use crate::docker::{self, labels, DockerError};
use crate::render::RenderError;
use spec::{Hashes, ImageChoice, ServiceSpec, SpecError};

/// Why a deploy's plan cannot be computed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The caller prepared no image for a selected service.
    #[error("no image was prepared for service `{0}`")]
    NoImage(String),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// What a deploy does to one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No container yet.
    Create,
    /// The container differs from deploy.toml: why (`image`, `config`, `env`, or a condition).
    Recreate(Vec<String>),
    /// Up to date but not running.
    Start,
    Keep,
    /// A container of the project that deploy.toml no longer declares (or a standby left by an
    /// interrupted rollout).
    Remove,
}

impl Action {
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Recreate(_) => "recreate",
            Self::Start => "start",
            Self::Keep => "keep",
            Self::Remove => "remove",
        }
    }

    #[must_use]
    pub fn changes_anything(&self) -> bool {
        !matches!(self, Self::Keep)
    }
}

/// A container as the plan sees it.
#[derive(Debug, Clone)]
pub struct Existing {
    pub id: String,
    pub name: String,
    pub running: bool,
    pub image_id: String,
    pub labels: HashMap<String, String>,
}

impl Existing {
    #[must_use]
    pub fn from_summary(summary: &ContainerSummary) -> Self {
        Self {
            id: summary.id.clone().unwrap_or_default(),
            name: docker::name_of(summary),
            running: summary.state.as_ref().is_some_and(|state| state.to_string() == "running"),
            image_id: summary.image_id.clone().unwrap_or_default(),
            labels: summary.labels.clone().unwrap_or_default(),
        }
    }
}

/// One line of the plan.
#[derive(Debug, Clone)]
pub struct Step {
    pub service: String,
    pub action: Action,
    /// What the service must be; `None` for removals.
    pub spec: Option<ServiceSpec>,
    pub existing: Option<Existing>,
}

/// What a deploy will do, in the order it does it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub environment: String,
    pub steps: Vec<Step>,
    pub network_missing: bool,
    pub volumes_missing: Vec<String>,
    /// The nginx site as deploy.toml renders it.
    pub site: String,
    pub site_changed: bool,
}

impl Plan {
    /// Computes the plan for `services` (every enabled one when empty) running `images`.
    pub async fn compute(
        docker: &Docker,
        stack: &Stack,
        images: &BTreeMap<String, ImageChoice>,
        services: &[String],
    ) -> Result<Self, PlanError> {
        let containers = docker::project_containers(docker, &stack.config.project.name).await?;
        // The network's gateway makes the API's `TRUSTED_PROXIES`; a network that does not exist
        // yet is created by `apply`, which then resolves the specs again (`on_created_network`).
        let (network_missing, gateways) = match docker
            .inspect_network(&stack.config.project.network, None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
        {
            Ok(network) => (false, spec::gateways_of(&network)),
            Err(error) if docker::is_not_found(&error) => (true, Vec::new()),
            Err(error) => return Err(docker::api_error("failed to inspect the project's network", &error).into()),
        };
        let selected = |service: &str| services.is_empty() || services.iter().any(|name| name == service);
        let mut steps = Vec::new();
        for name in stack.start_order() {
            if !selected(name) {
                continue;
            }
            let mut image = images.get(name).cloned().ok_or_else(|| PlanError::NoImage(name.to_owned()))?;
            if image.user.is_none() {
                image.user = Some(image_user(docker, &image.id).await?);
            }
            let spec = ServiceSpec::resolve_on(stack, name, image, &gateways)?;
            let primary = containers.iter().find(|container| docker::name_of(container) == spec.container);
            let existing = primary.map(Existing::from_summary);
            let action = match &existing {
                None => Action::Create,
                Some(existing) => match Hashes::from_labels(&existing.labels) {
                    None => Action::Recreate(vec!["not created by masstockctl".to_owned()]),
                    Some(current) => {
                        let reasons = current.differences(&spec.hashes);
                        if !reasons.is_empty() {
                            Action::Recreate(reasons.into_iter().map(str::to_owned).collect())
                        } else if existing.running {
                            Action::Keep
                        } else {
                            Action::Start
                        }
                    }
                },
            };
            steps.push(Step { service: name.to_owned(), action, spec: Some(spec), existing });
        }
        if services.is_empty() {
            for container in &containers {
                let name = docker::name_of(container);
                let service = docker::service_of(container).unwrap_or_default().to_owned();
                let declared =
                    stack.services().any(|(declared, _)| declared == service && stack.container_name(declared) == name);
                if !declared {
                    steps.push(Step {
                        service,
                        action: Action::Remove,
                        spec: None,
                        existing: Some(Existing::from_summary(container)),
                    });
                }
            }
        }
        let mut volumes_missing = Vec::new();
        for volume in used_volumes(stack, services) {
            match docker.inspect_volume(&volume).await {
                Ok(_) => {}
                Err(error) if docker::is_not_found(&error) => volumes_missing.push(volume),
                Err(error) => {
                    return Err(docker::api_error(format!("failed to inspect volume `{volume}`"), &error).into())
                }
            }
        }
        let site = crate::render::render_edge_site(stack, &BTreeMap::new())?;
        let site_changed = fs_err::read_to_string(&stack.config.edge.site_file).ok().as_deref() != Some(site.as_str());
        Ok(Self { environment: stack.environment.clone(), steps, network_missing, volumes_missing, site, site_changed })
    }

    /// The plan with its specs resolved again on the network `apply` has just created, whose
    /// `gateways` were unknown when it was computed. The actions stay: a container left from
    /// before the network was removed keeps its action, and the next deploy recreates it for its
    /// new `TRUSTED_PROXIES` (reason `env`).
    pub fn on_created_network(&self, stack: &Stack, gateways: &[std::net::IpAddr]) -> Result<Self, SpecError> {
        let mut plan = self.clone();
        for step in &mut plan.steps {
            if let Some(spec) = &mut step.spec {
                *spec = ServiceSpec::resolve_on(stack, &step.service, spec.image.clone(), gateways)?;
            }
        }
        Ok(plan)
    }

    /// Whether applying the plan changes anything.
    #[must_use]
    pub fn changes_anything(&self) -> bool {
        self.network_missing
            || !self.volumes_missing.is_empty()
            || self.site_changed
            || self.steps.iter().any(|step| step.action.changes_anything())
    }

    /// The plan as `--json` gives it.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "environment": self.environment,
            "changes": self.changes_anything(),
            "network": if self.network_missing { "create" } else { "keep" },
            "volumes": self.volumes_missing.iter().map(|volume| json!({ "name": volume, "action": "create" })).collect::<Vec<_>>(),
            "edge": if self.site_changed { "install" } else { "keep" },
            "services": self.steps.iter().map(|step| json!({
                "service": step.service,
                "action": step.action.name(),
                "reasons": match &step.action { Action::Recreate(reasons) => reasons.clone(), _ => Vec::new() },
                "container": step.spec.as_ref().map_or_else(|| step.existing.as_ref().map(|existing| existing.name.clone()).unwrap_or_default(), |spec| spec.container.clone()),
                "image": step.spec.as_ref().map(|spec| spec.image.reference.clone()),
                "rollout": step.spec.as_ref().map(|spec| match spec.rollout { crate::config::Rollout::StartFirst => "start-first", crate::config::Rollout::StopFirst => "stop-first" }),
            })).collect::<Vec<_>>(),
        })
    }

    /// The plan as a table for the operator.
    #[must_use]
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::new();
        let _ = writeln!(text, "Plan for environment `{}`:", self.environment);
        if self.network_missing {
            let _ = writeln!(text, "  network   create");
        }
        for volume in &self.volumes_missing {
            let _ = writeln!(text, "  volume    create {volume}");
        }
        for step in &self.steps {
            let detail = match &step.action {
                Action::Recreate(reasons) => format!(" ({} changed)", reasons.join(", ")),
                Action::Remove => " (no longer declared)".to_owned(),
                _ => String::new(),
            };
            let image = step.spec.as_ref().map(|spec| format!("  {}", spec.image.reference)).unwrap_or_default();
            let _ = writeln!(text, "  {:<9} {:<9}{image}{detail}", step.service, step.action.name());
        }
        let _ = writeln!(text, "  {:<9} {}", "edge", if self.site_changed { "install the nginx site" } else { "keep" });
        if !self.changes_anything() {
            let _ = writeln!(text, "Nothing to do: the stack matches deploy.toml.");
        }
        text
    }
}

/// The Docker names of the volumes the selected services mount.
fn used_volumes(stack: &Stack, services: &[String]) -> Vec<String> {
    let mut volumes: Vec<String> = stack
        .services()
        .filter(|(name, _)| services.is_empty() || services.iter().any(|selected| selected == name))
        .flat_map(|(_, service)| service.volumes.iter())
        .filter(|mount| stack.config.volumes.contains_key(&mount.source))
        .map(|mount| stack.volume_name(&mount.source))
        .collect();
    volumes.sort();
    volumes.dedup();
    volumes
}

/// The images the stack's services run, as tagged on the engine now (no build, no pull): what
/// `deploy --no-build`, `restart` and `down` use.
pub async fn local_images(
    docker: &Docker,
    stack: &Stack,
    services: &[String],
) -> Result<BTreeMap<String, ImageChoice>, ImageError> {
    let mut images = BTreeMap::new();
    for (name, _) in stack.services() {
        if !services.is_empty() && !services.iter().any(|selected| selected == name) {
            continue;
        }
        let reference = stack.image_reference(name);
        let image = docker.inspect_image(&reference).await.map_err(|error| {
            if docker::is_not_found(&error) {
                ImageError::NotTagged { service: name.to_owned(), reference: reference.clone() }
            } else {
                docker::api_error(format!("failed to inspect image `{reference}`"), &error).into()
            }
        })?;
        let user = image.config.and_then(|config| config.user).unwrap_or_default();
        images.insert(name.to_owned(), ImageChoice { reference, id: image.id.unwrap_or_default(), user: Some(user) });
    }
    Ok(images)
}

/// An image's `Config.User` (empty: root), which owns the secret files of its containers.
async fn image_user(docker: &Docker, id: &str) -> Result<String, DockerError> {
    let image = docker
        .inspect_image(id)
        .await
        .map_err(|error| docker::api_error(format!("failed to inspect image `{id}`"), &error))?;
    Ok(image.config.and_then(|config| config.user).unwrap_or_default())
}

/// The label of a container, if set.
#[must_use]
pub fn label<'a>(existing: &'a Existing, key: &str) -> Option<&'a str> {
    existing.labels.get(key).map(String::as_str)
}

/// The previous image recorded on a container (what `rollback` returns to).
#[must_use]
pub fn previous_image(existing: &Existing) -> Option<&str> {
    label(existing, labels::PREVIOUS_IMAGE)
}
