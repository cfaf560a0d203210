//! The volume components, `uploads` and `n8n` (see `crate::backup`): a named volume copied as a
//! tar through the Engine API, and the backup helper the other components borrow.
//!
//! - **Which volume.** `uploads` is `[volumes] uploads` (`<project>_uploads`); `n8n` is the named
//!   volume `[services.n8n]` mounts (`n8n_data`). The snapshot's file (`uploads.tar`, `n8n.tar`)
//!   holds the volume under one folder named after the component (`uploads/…`), with numeric
//!   owners, modes and times: `restic dump … uploads.tar | tar x` gives an operator the folder.
//! - **The helper image** (`helper_image`): `<project>/backup-helper:<12 digits of its inputs
//!   digest>`, made like the local redis image from a host Debian package, `busybox-static` (tar,
//!   find, rm in one static binary), with no registry; built once and reused while the package is
//!   unchanged (`crate::docker::build::busybox_image`).
//! - **Reading goes through the engine's archive endpoint**, not through a process: a throwaway
//!   container is *created* from the helper image with the volume mounted read-only, never started,
//!   and `GET /containers/{id}/archive` streams the tar. Nothing runs, so nothing needs a user,
//!   a capability or a network. Each chunk is written to the sink as it arrives (the volume is
//!   never whole in memory or on disk) and counted on the way (`TarCounter`): `files` (regular
//!   files) and `bytes` (their sizes). `measure` and `drill` read their figures the same way, so
//!   the three are counted by one function.
//! - **n8n's `SQLite` is copied consistently** by pausing the n8n container (the cgroup freezer: no
//!   write happens while it is frozen) for the copy, when it is running. `Paused` unpauses it on
//!   every path: explicitly after the copy (its failure is the error returned, since a paused n8n
//!   is an outage), and from `Drop` when the copy fails or its future is dropped (cancellation),
//!   with a connection and a runtime of its own, so that it works while the caller's runtime shuts
//!   down. A container that was not running, or already paused by someone else, is left as it is.
//! - **Putting back** (`put_back`, the services that mount the volume stopped by the caller): the
//!   volume is emptied by the helper (`find <root> -mindepth 1 -maxdepth 1 -exec rm -rf {} +`, so
//!   files absent from the snapshot do not survive), then the engine unpacks the stream into it
//!   (`PUT /containers/{id}/archive` on a created container), which keeps the tar's numeric owners
//!   and modes, the volume's own folder included: the api and worker (10001) and n8n (1000) can
//!   still write there. Only the engine touches the volume; no host path under /var/lib/docker.
//! - **The drill** unpacks into a scratch volume (`<drill prefix>-<component>`, labelled, recorded in
//!   the `Scratch` before it is created, as is its holder container) and reads the figures back from
//!   that volume, not from the stream: equal figures prove the data came back.
//! - **`run_helper`** runs one busybox command in a throwaway container and removes it, for the
//!   other components (redis removes its AOF folder with it): user root but with every capability
//!   dropped except `CHOWN`, `DAC_OVERRIDE` and `FOWNER` (it must act on files of any owner), no
//!   network, a read-only root filesystem, `no-new-privileges`.
//! - **Throwaway containers** are named `<project>-backup-<what>-<random>`, labelled
//!   `io.masstock.backup-helper=<project>`, and removed on every path (a `Drop` guard like the
//!   pause's), never labelled as part of the compose project.
//! - Uploads and the helper's wait are not bounded by the client's request timeout (a large
//!   volume takes longer than two minutes to unpack).

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::{Component, Figures, Scratch, Target};
use crate::config::Stack;
use crate::docker::build::ImageError;
use crate::docker::{self, DockerError};

/// The label of the throwaway containers, with the project.
pub const HELPER_LABEL: &str = "io.masstock.backup-helper";

/// How long an upload or a helper may take: far beyond the client's two-minute request timeout.
const LONG_REQUEST: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a volume could not be captured, put back, measured or drilled.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a volume component")]
    NotAVolume(Component),
    #[error("service `{0}` mounts no volume of `[volumes]`")]
    NoVolume(String),
    #[error("no volume `{0}` on this Docker host")]
    MissingVolume(String),
    #[error("the backup helper image: {0}")]
    Image(Box<ImageError>),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("failed to read volume `{volume}` through the engine: {message}")]
    Read { volume: String, message: String },
    #[error("the engine's copy of volume `{volume}` is not a tar: {reason}")]
    NotTar { volume: String, reason: String },
    #[error("failed to write the copy of volume `{volume}`: {error}")]
    Sink { volume: String, error: std::io::Error },
    #[error("failed to read the snapshot of volume `{volume}`: {error}")]
    Source { volume: String, error: std::io::Error },
    #[error("the engine did not unpack the snapshot into volume `{volume}`: {message}")]
    Unpack { volume: String, message: String },
    #[error("the backup helper `{command}` failed (exit status {status}): {output}")]
    HelperFailed { command: String, status: i64, output: String },
    #[error("failed to pause `{container}` for the copy: {message}")]
    Pause { container: String, message: String },
    #[error("`{container}` is still paused, unpausing it failed: {message}")]
    Unpause { container: String, message: String },
}

impl Error {
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Image(error) => error.hints(),
            Self::Docker(error) => error.hint().map(str::to_owned).into_iter().collect(),
            Self::MissingVolume(_) => vec!["`masstockctl deploy` creates it".to_owned()],
            Self::NoVolume(service) => {
                vec![format!(
                    "give `[services.{service}]` a `volumes` entry whose `source` names a volume of `[volumes]`"
                )]
            }
            Self::Unpause { container, .. } => vec![format!("unpause it now: `docker unpause {container}`")],
            _ => Vec::new(),
        }
    }
}

/// What a volume component acts on.
struct Subject {
    /// The Docker volume.
    volume: String,
    /// The folder it is mounted at in throwaway containers, and the tar's top folder.
    root: &'static str,
    /// The container to pause during the copy (n8n's).
    pause: Option<String>,
}

fn subject(component: Component, stack: &Stack) -> Result<Subject, Error> {
    match component {
        Component::Uploads => Ok(Subject { volume: stack.volume_name("uploads"), root: "uploads", pause: None }),
        Component::N8n => {
            let service = stack.config.services.get("n8n").ok_or_else(|| Error::NoVolume("n8n".to_owned()))?;
            let source = service
                .volumes
                .iter()
                .map(|mount| mount.source.as_str())
                .find(|source| stack.config.volumes.contains_key(*source))
                .ok_or_else(|| Error::NoVolume("n8n".to_owned()))?;
            let pause = service.enabled.then(|| stack.container_name("n8n"));
            Ok(Subject { volume: stack.volume_name(source), root: "n8n", pause })
        }
        other => Err(Error::NotAVolume(other)),
    }
}

/// The helper image's reference, built from the host's `busybox-static` the first time.
pub async fn helper_image(target: &Target<'_>) -> Result<String, Error> {
    let repository = format!("{}/backup-helper", target.stack.config.project.name);
    docker::build::busybox_image(target.docker, &repository, target.reporter)
        .await
        .map(|image| image.reference)
        .map_err(|error| Error::Image(Box::new(error)))
}

/// Runs `command` (a busybox applet and its arguments) in a throwaway container of the helper
/// image with each `(volume, path)` of `mounts` mounted read-write, and removes the container
/// whatever happens. Fails with the command's last output lines when it exits non-zero.
pub async fn run_helper(target: &Target<'_>, mounts: &[(&str, &str)], command: &[&str]) -> Result<(), Error> {
    let image = helper_image(target).await?;
    let project = &target.stack.config.project.name;
    run_in_helper(target.docker, &image, project, mounts, command).await
}

/// Writes a copy of the component's volume into `sink` as a tar and returns its figures; n8n is
/// paused for the copy when it runs.
pub async fn capture(
    component: Component,
    target: &Target<'_>,
    sink: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<Figures, Error> {
    let subject = subject(component, target.stack)?;
    require_volume(target.docker, &subject.volume).await?;
    let image = helper_image(target).await?;
    let project = &target.stack.config.project.name;
    capture_volume(target.docker, &image, project, &subject, sink).await
}

/// Replaces the volume's content with the tar `source` (as `capture` wrote it).
pub async fn put_back(
    component: Component,
    target: &Target<'_>,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<(), Error> {
    let subject = subject(component, target.stack)?;
    require_volume(target.docker, &subject.volume).await?;
    let image = helper_image(target).await?;
    let project = &target.stack.config.project.name;
    put_back_volume(target.docker, &image, project, &subject, source).await
}

/// The figures of the live volume.
pub async fn measure(component: Component, target: &Target<'_>) -> Result<Figures, Error> {
    let subject = subject(component, target.stack)?;
    require_volume(target.docker, &subject.volume).await?;
    let image = helper_image(target).await?;
    let project = &target.stack.config.project.name;
    let holder =
        Throwaway::create(target.docker, &image, project, "measure", &subject.volume, subject.root, true).await?;
    let result = read_archive(target.docker, &holder.name, &subject.volume, subject.root, &mut tokio::io::sink()).await;
    holder.remove_after(result).await
}

/// Unpacks `source` into a scratch volume and returns the figures read back from that volume.
pub async fn drill(
    component: Component,
    target: &Target<'_>,
    scratch: &mut Scratch,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<Figures, Error> {
    let subject = subject(component, target.stack)?;
    let image = helper_image(target).await?;
    let volume = scratch.name(component.as_str());
    let holder = scratch.name(&format!("{component}-holder"));
    scratch.add_volume(volume.clone());
    scratch.add_container(holder.clone());
    drill_volume(target.docker, &image, &volume, &holder, scratch.labels(), subject.root, source).await
}

async fn drill_volume(
    docker: &Docker,
    image: &str,
    volume: &str,
    holder: &str,
    labels: HashMap<String, String>,
    root: &str,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<Figures, Error> {
    let request = bollard::models::VolumeCreateRequest {
        name: Some(volume.to_owned()),
        labels: Some(labels.clone()),
        ..bollard::models::VolumeCreateRequest::default()
    };
    docker
        .create_volume(request)
        .await
        .map_err(|error| docker::api_error(format!("failed to create volume `{volume}`"), &error))?;
    create_holder(docker, image, holder, labels, volume, root, false).await?;
    unpack(docker, holder, volume, source).await?;
    read_archive(docker, holder, volume, root, &mut tokio::io::sink()).await
}

async fn require_volume(docker: &Docker, volume: &str) -> Result<(), Error> {
    match docker.inspect_volume(volume).await {
        Ok(_) => Ok(()),
        Err(error) if docker::is_not_found(&error) => Err(Error::MissingVolume(volume.to_owned())),
        Err(error) => Err(docker::api_error(format!("failed to inspect volume `{volume}`"), &error).into()),
    }
}

async fn capture_volume(
    docker: &Docker,
    image: &str,
    project: &str,
    subject: &Subject,
    sink: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<Figures, Error> {
    let holder = Throwaway::create(docker, image, project, "capture", &subject.volume, subject.root, true).await?;
    let paused = match &subject.pause {
        Some(container) => Paused::pause_if_running(docker, container).await,
        None => Ok(None),
    };
    let paused = match paused {
        Ok(paused) => paused,
        Err(error) => return holder.remove_after(Err(error)).await,
    };
    let result = read_archive(docker, &holder.name, &subject.volume, subject.root, sink).await;
    let unpaused = match paused {
        Some(paused) => paused.unpause().await,
        None => Ok(()),
    };
    // A container left paused is an outage: that error goes first.
    let result = unpaused.and(result);
    holder.remove_after(result).await
}

async fn put_back_volume(
    docker: &Docker,
    image: &str,
    project: &str,
    subject: &Subject,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<(), Error> {
    let root = format!("/{}", subject.root);
    run_in_helper(
        docker,
        image,
        project,
        &[(&subject.volume, &root)],
        &["find", &root, "-mindepth", "1", "-maxdepth", "1", "-exec", "/bin/busybox", "rm", "-rf", "{}", "+"],
    )
    .await?;
    let holder = Throwaway::create(docker, image, project, "restore", &subject.volume, subject.root, false).await?;
    let result = unpack(docker, &holder.name, &subject.volume, source).await;
    holder.remove_after(result).await
}

/// Streams the archive of `/<root>` of the (created, not started) `container` into `sink`,
/// counting it on the way.
async fn read_archive(
    docker: &Docker,
    container: &str,
    volume: &str,
    root: &str,
    sink: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<Figures, Error> {
    let path = format!("/{root}");
    let options = DownloadFromContainerOptionsBuilder::default().path(&path).build();
    let mut stream = docker.download_from_container(container, Some(options));
    let mut counter = TarCounter::default();
    let not_tar = |reason: String| Error::NotTar { volume: volume.to_owned(), reason };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|error| Error::Read { volume: volume.to_owned(), message: docker::engine_message(&error) })?;
        counter.feed(&chunk).map_err(not_tar)?;
        sink.write_all(&chunk).await.map_err(|error| Error::Sink { volume: volume.to_owned(), error })?;
    }
    counter.finish().map_err(not_tar)?;
    sink.flush().await.map_err(|error| Error::Sink { volume: volume.to_owned(), error })?;
    Ok(counter.figures())
}

/// Has the engine unpack the tar `source` at `/` of the (created, not started) `container`, as it
/// arrives. A failed read of `source` fails the call even when the engine accepted what came.
async fn unpack(
    docker: &Docker,
    container: &str,
    volume: &str,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<(), Error> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let docker = docker.clone().with_timeout(LONG_REQUEST);
    let options = UploadToContainerOptionsBuilder::default().path("/").build();
    let upload = docker.upload_to_container(container, Some(options), bollard::body_try_stream(body));
    let pump = async move {
        let mut buffer = vec![0_u8; 256 * 1024];
        loop {
            match source.read(&mut buffer).await {
                Ok(0) => return Ok(()),
                Ok(read) => {
                    if sender.send(Ok(Bytes::copy_from_slice(&buffer[..read]))).await.is_err() {
                        // The engine stopped reading: the upload's own error says why.
                        return Ok(());
                    }
                }
                Err(error) => {
                    // The request fails too, so the engine does not take a truncated tar for a
                    // whole one.
                    let _ = sender.send(Err(std::io::Error::new(error.kind(), "the snapshot could not be read"))).await;
                    return Err(error);
                }
            }
        }
    };
    let (uploaded, pumped): (Result<(), bollard::errors::Error>, std::io::Result<()>) = tokio::join!(upload, pump);
    pumped.map_err(|error| Error::Source { volume: volume.to_owned(), error })?;
    uploaded.map_err(|error| Error::Unpack { volume: volume.to_owned(), message: docker::engine_message(&error) })
}

async fn run_in_helper(
    docker: &Docker,
    image: &str,
    project: &str,
    mounts: &[(&str, &str)],
    command: &[&str],
) -> Result<(), Error> {
    let name = format!("{project}-backup-helper-{}", super::random_hex());
    let host_config = HostConfig {
        mounts: Some(mounts.iter().map(|(volume, path)| volume_mount(volume, path, false)).collect()),
        network_mode: Some("none".to_owned()),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".to_owned()]),
        cap_add: Some(vec!["CHOWN".to_owned(), "DAC_OVERRIDE".to_owned(), "FOWNER".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        ..HostConfig::default()
    };
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(command.iter().map(|part| (*part).to_owned()).collect()),
        user: Some("0:0".to_owned()),
        labels: Some(HashMap::from([(HELPER_LABEL.to_owned(), project.to_owned())])),
        host_config: Some(host_config),
        ..ContainerCreateBody::default()
    };
    let container = Throwaway::create_with(docker, &name, body).await?;
    let result = run_to_end(docker, &name, command).await;
    container.remove_after(result).await
}

async fn run_to_end(docker: &Docker, name: &str, command: &[&str]) -> Result<(), Error> {
    docker
        .start_container(name, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(|error| docker::api_error(format!("failed to start `{name}`"), &error))?;
    let long = docker.clone().with_timeout(LONG_REQUEST);
    let options = WaitContainerOptionsBuilder::default().condition("not-running").build();
    let mut wait = long.wait_container(name, Some(options));
    let status = match wait.next().await {
        Some(Ok(response)) => response.status_code,
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
        Some(Err(error)) => {
            return Err(docker::api_error(format!("failed to wait for `{name}`"), &error).into());
        }
        None => {
            return Err(DockerError::Api {
                doing: format!("failed to wait for `{name}`"),
                message: "no answer".to_owned(),
            }
            .into())
        }
    };
    if status == 0 {
        return Ok(());
    }
    let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail("5").build();
    let mut output = String::new();
    let mut logs = docker.logs(name, Some(options));
    while let Some(Ok(line)) = logs.next().await {
        output.push_str(&String::from_utf8_lossy(&line.into_bytes()));
    }
    let output = output.trim().lines().collect::<Vec<_>>().join(" | ");
    Err(Error::HelperFailed { command: command.join(" "), status, output })
}

fn volume_mount(volume: &str, path: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(path.to_owned()),
        source: Some(volume.to_owned()),
        typ: Some(MountType::VOLUME),
        read_only: Some(read_only),
        ..Mount::default()
    }
}

/// A container created (and never started) only to reach a volume through the archive endpoint.
async fn create_holder(
    docker: &Docker,
    image: &str,
    name: &str,
    labels: HashMap<String, String>,
    volume: &str,
    root: &str,
    read_only: bool,
) -> Result<(), Error> {
    let body = holder_body(image, labels, volume, root, read_only);
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    docker
        .create_container(Some(options), body)
        .await
        .map_err(|error| docker::api_error(format!("failed to create container `{name}`"), &error))?;
    Ok(())
}

fn holder_body(
    image: &str,
    labels: HashMap<String, String>,
    volume: &str,
    root: &str,
    read_only: bool,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(vec!["true".to_owned()]),
        labels: Some(labels),
        host_config: Some(HostConfig {
            mounts: Some(vec![volume_mount(volume, &format!("/{root}"), read_only)]),
            network_mode: Some("none".to_owned()),
            cap_drop: Some(vec!["ALL".to_owned()]),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// A throwaway container, removed by `remove_after`, or on drop when that was never reached.
struct Throwaway {
    docker: Docker,
    name: String,
    armed: bool,
}

impl Throwaway {
    async fn create(
        docker: &Docker,
        image: &str,
        project: &str,
        what: &str,
        volume: &str,
        root: &str,
        read_only: bool,
    ) -> Result<Self, Error> {
        let name = format!("{project}-backup-{what}-{}", super::random_hex());
        let labels = HashMap::from([(HELPER_LABEL.to_owned(), project.to_owned())]);
        Self::create_with(docker, &name, holder_body(image, labels, volume, root, read_only)).await
    }

    async fn create_with(docker: &Docker, name: &str, body: ContainerCreateBody) -> Result<Self, Error> {
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        // Armed before the request: a create cancelled halfway may still have made it.
        let mut throwaway = Self { docker: docker.clone(), name: name.to_owned(), armed: true };
        match docker.create_container(Some(options), body).await {
            Ok(_) => Ok(throwaway),
            Err(error) => {
                // The engine answered that it made nothing: there is nothing of ours to remove
                // (and a name taken by someone else must not be removed).
                throwaway.armed = !engine_answered(&error);
                Err(docker::api_error(format!("failed to create container `{name}`"), &error).into())
            }
        }
    }

    /// Removes the container, then answers `result` (or the removal's failure when `result` is
    /// a success: a container left behind is a fault too).
    async fn remove_after<T>(mut self, result: Result<T, Error>) -> Result<T, Error> {
        self.armed = false;
        let removed = remove_container(&self.docker, &self.name).await;
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
                async move { remove_container(&docker, &name).await.is_ok() }
            });
        }
    }
}

async fn remove_container(docker: &Docker, name: &str) -> Result<(), Error> {
    let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    match docker.remove_container(name, Some(options)).await {
        Err(error) if !docker::is_not_found(&error) => {
            Err(docker::api_error(format!("failed to remove container `{name}`"), &error).into())
        }
        _ => Ok(()),
    }
}

/// A container this module paused: unpaused by `unpause`, or on drop when that was never reached.
#[derive(Debug)]
struct Paused {
    docker: Docker,
    container: String,
    armed: bool,
}

impl Paused {
    /// Pauses `container` when it is running and not paused; `None` when there was nothing to do.
    async fn pause_if_running(docker: &Docker, container: &str) -> Result<Option<Self>, Error> {
        let pause_error = |message: String| Error::Pause { container: container.to_owned(), message };
        let state = match docker.inspect_container(container, None).await {
            Ok(inspect) => inspect.state.unwrap_or_default(),
            Err(error) if docker::is_not_found(&error) => return Ok(None),
            Err(error) => return Err(pause_error(docker::engine_message(&error))),
        };
        if state.running != Some(true) || state.paused == Some(true) {
            return Ok(None);
        }
        // Armed before the request: a pause cancelled halfway may still have frozen it.
        let mut paused = Self { docker: docker.clone(), container: container.to_owned(), armed: true };
        match docker.pause_container(container).await {
            Ok(()) => Ok(Some(paused)),
            Err(error) => {
                paused.armed = !engine_answered(&error);
                Err(pause_error(docker::engine_message(&error)))
            }
        }
    }

    async fn unpause(mut self) -> Result<(), Error> {
        self.armed = false;
        unpause_container(&self.docker, &self.container)
            .await
            .map_err(|message| Error::Unpause { container: self.container.clone(), message })
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if self.armed {
            let container = self.container.clone();
            on_own_runtime(true, move |docker| {
                let container = container.clone();
                async move { unpause_container(&docker, &container).await.is_ok() }
            });
        }
    }
}

/// Whether the engine answered the request (with an error status): then it did not do it. Other
/// errors (a timeout, a broken connection) leave it unknown.
fn engine_answered(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { .. })
}

/// Unpauses `container`; one that is not paused (or gone) is not a failure.
async fn unpause_container(docker: &Docker, container: &str) -> Result<(), String> {
    match docker.unpause_container(container).await {
        Ok(()) => Ok(()),
        Err(error) if docker::is_not_found(&error) => Ok(()),
        Err(error) => {
            let still_paused = docker
                .inspect_container(container, None)
                .await
                .map_or(true, |inspect| inspect.state.and_then(|state| state.paused).unwrap_or(false));
            if still_paused {
                Err(docker::engine_message(&error))
            } else {
                Ok(())
            }
        }
    }
}

/// Runs `work` on a thread with its own runtime and engine connection, for `Drop`, which cannot
/// await and may run while the caller's runtime shuts down; `wait`: whether to wait for it. Waiting
/// blocks the caller's runtime meanwhile, which an unpause can afford (it is quick and needs
/// nothing of that runtime), but not a removal: the engine only lets a container go once the
/// dropped archive connection is closed, and closing it is the caller's runtime's work. It is
/// tried three times; what it could not do stays undone (the labels still say whose it is).
fn on_own_runtime<F, Fut>(wait: bool, work: F)
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

// ---------------------------------------------------------------------------------------------
// Counting a tar stream
// ---------------------------------------------------------------------------------------------

const BLOCK: u64 = 512;
const BLOCK_BYTES: usize = 512;
/// The largest pax extended header kept in memory (a real one is a few hundred bytes).
const PAX_LIMIT: u64 = 1024 * 1024;

/// Counts the regular files of a tar stream and their bytes, chunk by chunk, holding at most one
/// header (and one pax header's records) in memory. Understands ustar, GNU (long names,
/// base-256 sizes) and pax (`size` records); checks each header's checksum.
#[derive(Debug, Default)]
struct TarCounter {
    header: Vec<u8>,
    data_left: u64,
    padding_left: u64,
    pax: Option<Vec<u8>>,
    next_size: Option<u64>,
    files: u64,
    bytes: u64,
}

impl TarCounter {
    fn feed(&mut self, mut chunk: &[u8]) -> Result<(), String> {
        while !chunk.is_empty() {
            if self.data_left > 0 {
                let take = usize::try_from(self.data_left).unwrap_or(usize::MAX).min(chunk.len());
                if let Some(pax) = &mut self.pax {
                    pax.extend_from_slice(&chunk[..take]);
                }
                self.data_left -= take as u64;
                chunk = &chunk[take..];
                if self.data_left == 0 {
                    if let Some(pax) = self.pax.take() {
                        self.next_size = pax_size(&pax)?.or(self.next_size);
                    }
                }
                continue;
            }
            if self.padding_left > 0 {
                let take = usize::try_from(self.padding_left).unwrap_or(usize::MAX).min(chunk.len());
                self.padding_left -= take as u64;
                chunk = &chunk[take..];
                continue;
            }
            let take = (BLOCK_BYTES - self.header.len()).min(chunk.len());
            self.header.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.header.len() == BLOCK_BYTES {
                let header = std::mem::take(&mut self.header);
                self.entry(&header)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, header: &[u8]) -> Result<(), String> {
        if header.iter().all(|byte| *byte == 0) {
            return Ok(());
        }
        let recorded = number(&header[148..156]).ok_or("a header has no checksum")?;
        let unsigned: u64 = header
            .iter()
            .enumerate()
            .map(|(index, byte)| if (148..156).contains(&index) { 32 } else { u64::from(*byte) })
            .sum();
        #[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
        let signed: i64 = header
            .iter()
            .enumerate()
            .map(|(index, byte)| if (148..156).contains(&index) { 32 } else { i64::from(*byte as i8) })
            .sum();
        #[allow(clippy::cast_sign_loss)]
        if recorded != unsigned && recorded != signed as u64 {
            return Err("a header's checksum does not match".to_owned());
        }
        let size = number(&header[124..136]).ok_or("a header has no size")?;
        let kind = header[156];
        let size = match kind {
            b'x' | b'g' | b'L' | b'K' => size,
            _ => self.next_size.take().unwrap_or(size),
        };
        match kind {
            b'0' | 0 | b'7' => {
                self.files += 1;
                self.bytes += size;
            }
            b'x' => {
                if size > PAX_LIMIT {
                    return Err(format!("a pax header of {size} bytes"));
                }
                self.pax = Some(Vec::new());
            }
            _ => {}
        }
        self.data_left = size;
        self.padding_left = (BLOCK - size % BLOCK) % BLOCK;
        if size == 0 {
            if let Some(pax) = self.pax.take() {
                self.next_size = pax_size(&pax)?;
            }
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), String> {
        if self.header.is_empty() && self.data_left == 0 && self.padding_left == 0 {
            Ok(())
        } else {
            Err("it ends in the middle of an entry".to_owned())
        }
    }

    fn figures(&self) -> Figures {
        Figures::from([("files".to_owned(), self.files), ("bytes".to_owned(), self.bytes)])
    }
}

/// A numeric header field: octal digits (NUL- or space-terminated), or GNU's base-256.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|byte| byte & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for byte in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(*byte))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|character: char| character == '\0' || character == ' ');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// The `size` record of a pax extended header (`<length> size=<decimal>\n` records).
fn pax_size(records: &[u8]) -> Result<Option<u64>, String> {
    let malformed = || "a malformed pax header".to_owned();
    let mut rest = records;
    let mut size = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|byte| *byte == b' ').ok_or_else(malformed)?;
        let length: usize =
            std::str::from_utf8(&rest[..space]).ok().and_then(|text| text.parse().ok()).ok_or_else(malformed)?;
        if length <= space || length > rest.len() {
            return Err(malformed());
        }
        let record = &rest[space + 1..length];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"size=") {
            size = Some(std::str::from_utf8(value).ok().and_then(|text| text.parse().ok()).ok_or_else(malformed)?);
        }
        rest = &rest[length..];
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELPER_REPOSITORY: &str = "masstock-test/backup-helper";
    /// 5 MiB of random bytes, an empty file and `hello\n` in a file whose name has a space.
    const FILES: u64 = 3;
    const BYTES: u64 = 5 * 1024 * 1024 + 6;
    const POPULATE: &str = "mkdir -p /v/a/b/c && : > /v/a/empty && echo hello > '/v/a/b/with space.txt' \
        && head -c 5242880 /dev/urandom > /v/a/b/c/big.bin && chown -R 10001:10001 /v && chmod 750 /v \
        && chmod 600 '/v/a/b/with space.txt'";

    /// Removes what a test made, whether it passed or not.
    struct Cleanup {
        containers: Vec<String>,
        volumes: Vec<String>,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let containers = self.containers.clone();
            let volumes = self.volumes.clone();
            on_own_runtime(true, move |docker| {
                let (containers, volumes) = (containers.clone(), volumes.clone());
                async move {
                    for container in &containers {
                        let _ = remove_container(&docker, container).await;
                    }
                    for volume in &volumes {
                        let options =
                            bollard::query_parameters::RemoveVolumeOptionsBuilder::default().force(true).build();
                        let _ = docker.remove_volume(volume, Some(options)).await;
                    }
                    true
                }
            });
        }
    }

    async fn setup() -> (Docker, String, String, Cleanup) {
        let docker = docker::connect().await.expect("the Docker engine runs (run `script/bootstrap`)");
        let image = docker::build::busybox_image(&docker, HELPER_REPOSITORY, &crate::report::Silent)
            .await
            .expect("the helper image builds (`busybox-static` comes from `script/bootstrap`)");
        let project = format!("mstv{}", crate::backup::random_hex());
        (docker, image.reference, project, Cleanup { containers: Vec::new(), volumes: Vec::new() })
    }

    async fn volume(docker: &Docker, cleanup: &mut Cleanup, name: String) -> String {
        cleanup.volumes.push(name.clone());
        let request = bollard::models::VolumeCreateRequest {
            name: Some(name.clone()),
            ..bollard::models::VolumeCreateRequest::default()
        };
        docker.create_volume(request).await.unwrap();
        name
    }

    async fn check(docker: &Docker, image: &str, project: &str, volume: &str, script: &str) -> Result<(), Error> {
        run_in_helper(docker, image, project, &[(volume, "/v")], &["sh", "-c", script]).await
    }

    async fn leftovers(docker: &Docker, project: &str) -> usize {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{HELPER_LABEL}={project}")])]);
        let options =
            bollard::query_parameters::ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        docker.list_containers(Some(options)).await.unwrap().len()
    }

    #[tokio::test]
    async fn a_volume_comes_back_whole_with_its_owners_and_nothing_else() {
        let (docker, image, project, mut cleanup) = setup().await;
        let source = volume(&docker, &mut cleanup, format!("{project}-source")).await;
        check(&docker, &image, &project, &source, POPULATE).await.unwrap();
        let subject = Subject { volume: source.clone(), root: "uploads", pause: None };

        let mut copy = Vec::new();
        let figures = capture_volume(&docker, &image, &project, &subject, &mut copy).await.unwrap();
        let expected = Figures::from([("files".to_owned(), FILES), ("bytes".to_owned(), BYTES)]);
        assert_eq!(figures, expected);
        let mut archive = tar::Archive::new(copy.as_slice());
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            assert_eq!(entry.header().uid().unwrap(), 10001, "{:?}", entry.path());
            names.push(entry.path().unwrap().display().to_string());
        }
        assert!(names.contains(&"uploads/a/b/with space.txt".to_owned()), "{names:?}");

        // Into a volume holding other files: they go, the snapshot's owners and modes come.
        let live = volume(&docker, &mut cleanup, format!("{project}-live")).await;
        check(&docker, &image, &project, &live, "mkdir /v/old && echo stale > /v/old/stale && echo x > /v/a")
            .await
            .unwrap();
        let subject = Subject { volume: live.clone(), root: "uploads", pause: None };
        put_back_volume(&docker, &image, &project, &subject, &mut copy.as_slice()).await.unwrap();
        let holder = Throwaway::create(&docker, &image, &project, "measure", &live, "uploads", true).await.unwrap();
        let result = read_archive(&docker, &holder.name, &live, "uploads", &mut tokio::io::sink()).await;
        assert_eq!(holder.remove_after(result).await.unwrap(), expected);
        let owners = "test ! -e /v/old && [ \"$(stat -c %u:%a /v)\" = 10001:750 ] \
            && [ \"$(stat -c %u:%a '/v/a/b/with space.txt')\" = 10001:600 ] \
            && [ \"$(stat -c %u /v/a/b/c/big.bin)\" = 10001 ]";
        check(&docker, &image, &project, &live, owners).await.unwrap();

        // A drill reads its figures back from the scratch volume.
        let (scratch, holder) = (format!("{project}-scratch"), format!("{project}-holder"));
        cleanup.volumes.push(scratch.clone());
        cleanup.containers.push(holder.clone());
        let labels = HashMap::from([(HELPER_LABEL.to_owned(), project.clone())]);
        let drilled =
            drill_volume(&docker, &image, &scratch, &holder, labels, "uploads", &mut copy.as_slice()).await.unwrap();
        assert_eq!(drilled, expected);

        // A snapshot cut short is refused, not taken for a smaller volume.
        let cut = &copy[..copy.len() / 2];
        let drilled = drill_volume(
            &docker,
            &image,
            &format!("{project}-scratch2"),
            &format!("{project}-holder2"),
            HashMap::from([(HELPER_LABEL.to_owned(), project.clone())]),
            "uploads",
            &mut &cut[..],
        )
        .await;
        cleanup.volumes.push(format!("{project}-scratch2"));
        cleanup.containers.push(format!("{project}-holder2"));
        assert!(matches!(drilled, Err(Error::Unpack { .. })), "{drilled:?}");

        remove_container(&docker, &holder).await.unwrap();
        remove_container(&docker, &format!("{project}-holder2")).await.unwrap();
        assert_eq!(leftovers(&docker, &project).await, 0, "every throwaway container is removed");
    }

    async fn running_unpaused(docker: &Docker, container: &str) -> bool {
        let state = docker.inspect_container(container, None).await.unwrap().state.unwrap();
        state.running == Some(true) && state.paused != Some(true)
    }

    #[tokio::test]
    async fn the_container_is_paused_for_the_copy_and_running_again_whatever_happens() {
        let (docker, image, project, mut cleanup) = setup().await;
        let data = volume(&docker, &mut cleanup, format!("{project}-n8n")).await;
        check(&docker, &image, &project, &data, POPULATE).await.unwrap();
        let app = format!("{project}-app");
        cleanup.containers.push(app.clone());
        let mut body = holder_body(&image, HashMap::new(), &data, "data", false);
        body.cmd = Some(vec!["sleep".to_owned(), "600".to_owned()]);
        let options = CreateContainerOptionsBuilder::default().name(&app).build();
        docker.create_container(Some(options), body).await.unwrap();
        docker.start_container(&app, None::<bollard::query_parameters::StartContainerOptions>).await.unwrap();
        let subject = Subject { volume: data.clone(), root: "n8n", pause: Some(app.clone()) };

        // Paused while the copy streams, running afterwards.
        let (mut sink, mut reader) = tokio::io::duplex(64 * 1024);
        let read = async {
            let mut first = vec![0_u8; 1024];
            let count = reader.read(&mut first).await.unwrap();
            assert!(count > 0);
            let state = docker.inspect_container(&app, None).await.unwrap().state.unwrap();
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).await.unwrap();
            state.paused
        };
        let capture = async {
            let figures = capture_volume(&docker, &image, &project, &subject, &mut sink).await;
            drop(sink);
            figures
        };
        let (figures, paused_during) = tokio::join!(capture, read);
        assert_eq!(paused_during, Some(true), "paused during the copy");
        assert_eq!(figures.unwrap()["files"], FILES);
        assert!(running_unpaused(&docker, &app).await);

        // The sink fails midway.
        let (mut sink, mut reader) = tokio::io::duplex(64 * 1024);
        let read = async move {
            let mut first = vec![0_u8; 1024];
            assert!(reader.read(&mut first).await.unwrap() > 0);
            drop(reader);
        };
        let (failed, ()) = tokio::join!(capture_volume(&docker, &image, &project, &subject, &mut sink), read);
        assert!(matches!(failed, Err(Error::Sink { .. })), "{failed:?}");
        assert!(running_unpaused(&docker, &app).await, "running again after a failed sink");

        // The copy is cancelled (its future dropped) while the container is paused.
        let (mut sink, _reader) = tokio::io::duplex(64 * 1024);
        let cancelled = tokio::time::timeout(
            Duration::from_secs(3),
            capture_volume(&docker, &image, &project, &subject, &mut sink),
        )
        .await;
        assert!(cancelled.is_err(), "the copy was still waiting on its sink");
        assert!(running_unpaused(&docker, &app).await, "running again after a cancelled copy");
        // The cancelled copy's container goes once the runtime has closed its connection.
        let mut left = usize::MAX;
        for _ in 0..50 {
            left = leftovers(&docker, &project).await;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(left, 0, "every throwaway container is removed");
    }

    #[tokio::test]
    async fn a_failing_helper_says_its_status_and_last_words() {
        let (docker, image, project, mut cleanup) = setup().await;
        let data = volume(&docker, &mut cleanup, format!("{project}-v")).await;
        let failed = check(&docker, &image, &project, &data, "echo boom >&2; exit 3").await;
        match failed {
            Err(Error::HelperFailed { status: 3, output, .. }) => assert_eq!(output, "boom"),
            other => panic!("{other:?}"),
        }
        assert_eq!(leftovers(&docker, &project).await, 0);
    }

    #[test]
    fn the_components_name_their_volume_and_n8n_is_paused_only_when_enabled() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml");
        let mut stack = Stack::load(&path, "production").expect("the shipped deploy.toml is valid");
        let project = stack.config.project.name.clone();
        let uploads = subject(Component::Uploads, &stack).unwrap();
        assert_eq!((uploads.volume, uploads.root, uploads.pause), (format!("{project}_uploads"), "uploads", None));
        let n8n = subject(Component::N8n, &stack).unwrap();
        assert_eq!(
            (n8n.volume, n8n.root, n8n.pause),
            (format!("{project}_n8n_data"), "n8n", Some(format!("{project}_n8n")))
        );
        assert!(matches!(subject(Component::Redis, &stack), Err(Error::NotAVolume(Component::Redis))));
        stack.config.services.get_mut("n8n").unwrap().enabled = false;
        assert_eq!(subject(Component::N8n, &stack).unwrap().pause, None);
        stack.config.services.get_mut("n8n").unwrap().volumes.clear();
        let error = subject(Component::N8n, &stack).err().unwrap();
        assert_eq!(error.to_string(), "service `n8n` mounts no volume of `[volumes]`");
    }

    #[test]
    fn the_counter_reads_gnu_and_pax_archives_in_any_chunks() {
        let mut builder = tar::Builder::new(Vec::new());
        let long = format!("uploads/{}/file", "x".repeat(150));
        for (format, name, size) in
            [("gnu", long.as_str(), 700_usize), ("ustar", "uploads/small", 3), ("gnu", "uploads/empty", 0)]
        {
            let mut header = if format == "gnu" { tar::Header::new_gnu() } else { tar::Header::new_ustar() };
            header.set_size(size as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, vec![7_u8; size].as_slice()).unwrap();
        }
        builder.append_pax_extensions([("size", b"5".as_slice()), ("comment", b"a pax header".as_slice())]).unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_size(5);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, "uploads/pax", b"12345".as_slice()).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        builder.append_data(&mut header, "uploads/folder", std::io::empty()).unwrap();
        let archive = builder.into_inner().unwrap();
        for chunk in [1, 7, 512, 100_000] {
            let mut counter = TarCounter::default();
            for piece in archive.chunks(chunk) {
                counter.feed(piece).unwrap();
            }
            counter.finish().unwrap();
            assert_eq!(counter.figures(), Figures::from([("files".to_owned(), 4), ("bytes".to_owned(), 708)]));
        }
        let mut counter = TarCounter::default();
        counter.feed(&archive[..archive.len() - 2000]).unwrap();
        assert!(counter.finish().is_err(), "a stream cut in an entry is refused");
        let mut garbage = archive.clone();
        garbage[10] ^= 1;
        assert!(TarCounter::default().feed(&garbage).is_err(), "a corrupt header is refused");
    }
}
