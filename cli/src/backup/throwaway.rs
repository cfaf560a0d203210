//! The backup components' throwaway containers (and the volumes they fill): one locked-down body,
//! creation with a guard that removes the container on every path, starting, running to the
//! end, `exec` output, removal.
//!
//! - **Locked down** ([`body`]): a read-only root filesystem, every capability dropped (a caller
//!   adds back only what it must, as the volume helper does), `no-new-privileges`, no health
//!   check, the network the caller names (`none` for none), and the mounts it gives: a throwaway
//!   writes only to its volumes.
//! - **Removed on every path** ([`Throwaway`]): armed before the create request (a create
//!   cancelled halfway may still have made it), disarmed when the engine answered that it made
//!   nothing (a name taken by someone else must not be removed); [`Throwaway::remove_after`]
//!   removes it and answers the work's result (or the removal's failure when the work succeeded:
//!   a container left behind is a fault too), and `Drop` removes it when that was never reached
//!   (a failure, or the future dropped). A container registered in a drill's `Scratch` is made
//!   with [`create`] instead: `Scratch::remove_all` removes it.
//! - **`Drop` works on a thread of its own** ([`on_own_runtime`]), with its own runtime and engine
//!   connection, since it cannot await and may run while the caller's runtime shuts down.
//! - **Long requests** ([`LONG_REQUEST`]): uploads, and waits for a container to end, are not
//!   bounded by the client's two-minute request timeout.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt as _;

use crate::docker::{self, DockerError};

/// How long an upload or a throwaway's run may take: far beyond the client's two-minute request
/// timeout.
pub const LONG_REQUEST: Duration = Duration::from_secs(24 * 60 * 60);

/// A locked-down container body: `image` running `command` as `user` (the image's when `None`),
/// with `mounts`, on `network` (`none` for none).
#[must_use]
#[allow(clippy::implicit_hasher)] // bollard's body takes this very map
pub fn body(
    image: &str,
    command: &[&str],
    user: Option<String>,
    mounts: Vec<Mount>,
    network: &str,
    labels: HashMap<String, String>,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(command.iter().map(|word| (*word).to_owned()).collect()),
        user,
        labels: Some(labels),
        healthcheck: Some(bollard::models::HealthConfig { test: Some(vec!["NONE".to_owned()]), ..Default::default() }),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            network_mode: Some(network.to_owned()),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// `volume` mounted at `path`.
#[must_use]
pub fn mount(volume: &str, path: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(path.to_owned()),
        source: Some(volume.to_owned()),
        typ: Some(MountType::VOLUME),
        read_only: Some(read_only),
        ..Mount::default()
    }
}

/// Creates the container `name`, for a caller that removes it some other way (a drill's
/// `Scratch`).
pub async fn create(docker: &Docker, name: &str, body: ContainerCreateBody) -> Result<(), DockerError> {
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    docker
        .create_container(Some(options), body)
        .await
        .map_err(|error| docker::api_error(format!("failed to create container `{name}`"), &error))?;
    Ok(())
}

/// Creates the volume `name` with `labels`.
#[allow(clippy::implicit_hasher)] // bollard's request takes this very map
pub async fn create_volume(docker: &Docker, name: &str, labels: HashMap<String, String>) -> Result<(), DockerError> {
    let request =
        VolumeCreateRequest { name: Some(name.to_owned()), labels: Some(labels), ..VolumeCreateRequest::default() };
    docker
        .create_volume(request)
        .await
        .map_err(|error| docker::api_error(format!("failed to create volume `{name}`"), &error))?;
    Ok(())
}

pub async fn start(docker: &Docker, name: &str) -> Result<(), DockerError> {
    docker
        .start_container(name, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(|error| docker::api_error(format!("failed to start `{name}`"), &error))
}

/// Removes a container and its anonymous volumes, gone already or not.
pub async fn remove(docker: &Docker, name: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    match docker.remove_container(name, Some(options)).await {
        Err(error) if !docker::is_not_found(&error) => {
            Err(docker::api_error(format!("failed to remove container `{name}`"), &error))
        }
        _ => Ok(()),
    }
}

pub async fn is_running(docker: &Docker, name: &str) -> Result<bool, DockerError> {
    let inspected = docker
        .inspect_container(name, None)
        .await
        .map_err(|error| docker::api_error(format!("failed to inspect `{name}`"), &error))?;
    Ok(inspected.state.and_then(|state| state.running) == Some(true))
}

/// Waits until the container stops: its exit status, or `None` when it still ran after `limit`.
pub async fn wait_exit(docker: &Docker, name: &str, limit: Duration) -> Result<Option<i64>, DockerError> {
    let long = docker.clone().with_timeout(LONG_REQUEST);
    let options = WaitContainerOptionsBuilder::default().condition("not-running").build();
    let mut waited = long.wait_container(name, Some(options));
    match tokio::time::timeout(limit, waited.next()).await {
        Ok(Some(Ok(response))) => Ok(Some(response.status_code)),
        // bollard reports a non-zero exit as an error that carries the code.
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => Ok(Some(code)),
        Ok(Some(Err(error))) => Err(docker::api_error(format!("failed to wait for `{name}`"), &error)),
        Ok(None) => {
            Err(DockerError::Api { doing: format!("failed to wait for `{name}`"), message: "no answer".to_owned() })
        }
        Err(_) => Ok(None),
    }
}

/// Runs `command` in `container` and answers what it printed (stdout and stderr), or `None` when
/// it had not ended after `limit`.
pub async fn exec_output(
    docker: &Docker,
    container: &str,
    command: &[String],
    limit: Duration,
) -> Result<Option<String>, DockerError> {
    match tokio::time::timeout(limit, docker::exec(docker, container, command)).await {
        Ok(Ok((said, _))) => Ok(Some(said)),
        Ok(Err(error)) => {
            Err(docker::api_error(format!("failed to run `{}` in `{container}`", command.join(" ")), &error))
        }
        Err(_) => Ok(None),
    }
}

/// A throwaway container, removed by `remove_after`, or on drop when that was never reached.
#[derive(Debug)]
pub struct Throwaway {
    docker: Docker,
    name: String,
    armed: bool,
}

impl Throwaway {
    pub async fn create(docker: &Docker, name: &str, body: ContainerCreateBody) -> Result<Self, DockerError> {
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        // Armed before the request: a create cancelled halfway may still have made it.
        let mut throwaway = Self { docker: docker.clone(), name: name.to_owned(), armed: true };
        match docker.create_container(Some(options), body).await {
            Ok(_) => Ok(throwaway),
            Err(error) => {
                // The engine answered that it made nothing: there is nothing of ours to remove
                // (and a name taken by someone else must not be removed).
                throwaway.armed = !engine_answered(&error);
                Err(docker::api_error(format!("failed to create container `{name}`"), &error))
            }
        }
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Removes the container, then answers `result` (or the removal's failure when `result` is
    /// a success: a container left behind is a fault too).
    pub async fn remove_after<T, E: From<DockerError>>(mut self, result: Result<T, E>) -> Result<T, E> {
        self.armed = false;
        let removed = remove(&self.docker, &self.name).await;
        let value = result?;
        removed?;
        Ok(value)
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if self.armed {
            let name = self.name.clone();
            on_own_runtime(false, move |docker| {
                let name = name.clone();
                async move { remove(&docker, &name).await.is_ok() }
            });
        }
    }
}

/// Whether the engine answered the request (with an error status): then it did not do it. Other
/// errors (a timeout, a broken connection) leave it unknown.
#[must_use]
pub fn engine_answered(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { .. })
}

/// Runs `work` on a thread with its own runtime and engine connection, for `Drop`, which cannot
/// await and may run while the caller's runtime shuts down; `wait`: whether to wait for it. Waiting
/// blocks the caller's runtime meanwhile, which an unpause can afford (it is quick and needs
/// nothing of that runtime), but not a removal: the engine only lets a container go once the
/// dropped archive connection is closed, and closing it is the caller's runtime's work. It is
/// tried three times; what it could not do stays undone (the labels still say whose it is).
pub fn on_own_runtime<F, Fut>(wait: bool, work: F)
where
    F: Fn(Docker) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool>,
{
    let thread = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            for _ in 0..3 {
                let Ok(docker) = Docker::connect_with_defaults() else { return };
                let docker = docker.with_timeout(Duration::from_secs(20));
                if work(docker).await {
                    return;
                }
            }
        });
    });
    if wait {
        let _ = thread.join();
    }
}
