//! The Docker Engine API, through bollard: connecting (with version negotiation, the engine here
//! speaks API 1.41), the labels that make our objects a compose project, and finding them again.
//!
//! Only masstockctl talks to Docker, and only through this module and its callers: never the
//! `docker` CLI.

pub mod build;
pub mod logs;

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ContainerSummary;
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;

/// What went wrong talking to the engine.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker engine at {socket}: {error}")]
    Unreachable { socket: String, error: bollard::errors::Error },
    /// A request failed: `doing` says what we were doing, `message` is the engine's word.
    #[error("{doing}: {message}")]
    Api { doing: String, message: String },
}

impl DockerError {
    /// What the operator can do about it.
    #[must_use]
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Unreachable { .. } => Some(
                "start it (`systemctl start docker`, or `dockerd &` on a machine without systemd; script/bootstrap does it here), or set DOCKER_HOST",
            ),
            Self::Api { .. } => None,
        }
    }

    /// The error and its causes, outermost first: for callers that fold it into a finding.
    #[must_use]
    pub fn chain(&self) -> Vec<String> {
        crate::error::chain(self)
    }
}

/// Labels every object we create carries. The `com.docker.compose.*` ones make
/// `docker-compose -p <project> ps` (1.29 and v2) list the stack as its own.
pub mod labels {
    pub const PROJECT: &str = "com.docker.compose.project";
    pub const SERVICE: &str = "com.docker.compose.service";
    pub const CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
    pub const ONEOFF: &str = "com.docker.compose.oneoff";
    pub const NETWORK: &str = "com.docker.compose.network";
    pub const VOLUME: &str = "com.docker.compose.volume";
    pub const COMPOSE_VERSION: &str = "com.docker.compose.version";
    /// sha256 of the service's resolved configuration (image, settings, environment): a deploy
    /// recreates a container when it differs.
    pub const CONFIG_HASH: &str = "io.masstock.config-hash";
    /// The parts of that hash, so the plan can say why it recreates.
    pub const IMAGE_HASH: &str = "io.masstock.hash.image";
    pub const SETTINGS_HASH: &str = "io.masstock.hash.settings";
    pub const ENV_HASH: &str = "io.masstock.hash.env";
    /// The image the service ran before this container's image: what `rollback` returns to.
    pub const PREVIOUS_IMAGE: &str = "io.masstock.previous-image";
    /// The git revision an image was built from (`<commit>`, or `<commit>-dirty` when the tree had
    /// changes not committed).
    pub const REVISION: &str = "org.opencontainers.image.revision";
    /// sha256 of what an image was built from (its repository and build context): an image with
    /// the same digest is reused instead of built again.
    pub const INPUTS_DIGEST: &str = "io.masstock.inputs-digest";
    /// The Debian packages (`name=version`, comma-separated) a host-package image was made from.
    pub const HOST_PACKAGES: &str = "io.masstock.host-packages";
    /// `primary`, or `standby` for the container that serves while the primary is replaced.
    pub const ROLE: &str = "io.masstock.role";
    pub const ENVIRONMENT: &str = "io.masstock.environment";
}

/// The compose version our labels imitate (the oldest docker-compose that reads them is 1.29).
pub const COMPOSE_VERSION: &str = "1.29.2";

/// How long one Engine API request may take (image builds stream, and are not bounded by it).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Connects to the engine (`DOCKER_HOST`, else the local socket) and agrees on an API version.
pub async fn connect() -> Result<Docker, DockerError> {
    let unreachable = |error: bollard::errors::Error| {
        let socket = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
        DockerError::Unreachable { socket, error }
    };
    let docker =
        Docker::connect_with_defaults().map_err(unreachable)?.with_timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS));
    let docker = docker.negotiate_version().await.map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    Ok(docker)
}

/// An Engine API error, said with what we were doing.
pub fn api_error(doing: impl std::fmt::Display, error: &bollard::errors::Error) -> DockerError {
    DockerError::Api { doing: doing.to_string(), message: engine_message(error) }
}

/// The engine's own message when it gave one (`No such container: …`), else bollard's.
#[must_use]
pub fn engine_message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            format!("{message} (HTTP {status_code})")
        }
        other => other.to_string(),
    }
}

/// Whether the engine answered 404 (no such container, image, network or volume).
#[must_use]
pub fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// Every container of the project, running or not, with its labels.
pub async fn project_containers(docker: &Docker, project: &str) -> Result<Vec<ContainerSummary>, DockerError> {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{}={project}", labels::PROJECT)])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    docker
        .list_containers(Some(options))
        .await
        .map_err(|error| api_error("failed to list the project's containers", &error))
}

/// Why a container's address on a network cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("no container `{0}`: `masstockctl deploy` creates it")]
    NoContainer(String),
    /// The engine refused the inspection: its own message.
    #[error("cannot inspect `{container}`: {message}")]
    Inspect { container: String, message: String },
    #[error("`{container}` has no address on network `{network}` (is it running?)")]
    NoAddress { container: String, network: String },
}

/// Runs `command` in the running `container`: what it printed (stdout and stderr, in order) and
/// its exit code (`None` when the engine did not say). Health probes and the backup throwaways
/// both run theirs this way.
pub async fn exec(
    docker: &Docker,
    container: &str,
    command: &[String],
) -> Result<(String, Option<i64>), bollard::errors::Error> {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use futures_util::StreamExt as _;
    let options = CreateExecOptions {
        cmd: Some(command.to_vec()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..CreateExecOptions::default()
    };
    let exec = docker.create_exec(container, options).await?;
    let mut said = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await? {
        while let Some(Ok(chunk)) = output.next().await {
            said.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
    }
    let inspected = docker.inspect_exec(&exec.id).await?;
    Ok((said, inspected.exit_code))
}

/// A running container's address on `network` (the host reaches bridge addresses on Linux).
pub async fn container_address(docker: &Docker, container: &str, network: &str) -> Result<String, AddressError> {
    let inspected = docker.inspect_container(container, None).await.map_err(|error| {
        if is_not_found(&error) {
            AddressError::NoContainer(container.to_owned())
        } else {
            AddressError::Inspect { container: container.to_owned(), message: engine_message(&error) }
        }
    })?;
    inspected
        .network_settings
        .and_then(|settings| settings.networks)
        .and_then(|networks| networks.get(network).and_then(|endpoint| endpoint.ip_address.clone()))
        .filter(|address| !address.is_empty())
        .ok_or_else(|| AddressError::NoAddress { container: container.to_owned(), network: network.to_owned() })
}

/// The service a container belongs to, from its labels.
#[must_use]
pub fn service_of(container: &ContainerSummary) -> Option<&str> {
    container.labels.as_ref()?.get(labels::SERVICE).map(String::as_str)
}

/// The container's name without Docker's leading `/`.
#[must_use]
pub fn name_of(container: &ContainerSummary) -> String {
    container
        .names
        .as_ref()
        .and_then(|names| names.first())
        .map(|name| name.trim_start_matches('/').to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_failure_names_the_container() {
        assert_eq!(
            AddressError::NoContainer("masstock_redis".into()).to_string(),
            "no container `masstock_redis`: `masstockctl deploy` creates it"
        );
        let none = AddressError::NoAddress { container: "masstock_redis".into(), network: "masstock".into() };
        assert_eq!(none.to_string(), "`masstock_redis` has no address on network `masstock` (is it running?)");
    }
}
