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
//!   never whole in memory or on disk) and counted on the way (`archive::download`, the backup
//!   modules' one tar parser): `files` (regular files) and `bytes` (their sizes). `measure` and
//!   `drill` read their figures the same way, so the three are counted by one function.
//! - **n8n's `SQLite` is copied consistently** by pausing the n8n container (the cgroup freezer: no
//!   write happens while it is frozen) for the copy, when it is running. `Paused` unpauses it on
//!   every path: explicitly after the copy (its failure is the error returned, since a paused n8n
//!   is an outage), and from `Drop` when the copy fails or its future is dropped (cancellation),
//!   with a connection and a runtime of its own, so that it works while the caller's runtime shuts
//!   down. A container that was not running, or already paused by someone else, is left as it is.
//! - **Putting back** (`put_back`, the services that mount the volume stopped by the caller): the
//!   volume is emptied by the helper (`find <root> -mindepth 1 -maxdepth 1 -exec rm -rf {} +`, so
//!   files absent from the snapshot do not survive), then the engine unpacks the stream into it
//!   (`PUT /containers/{id}/archive` on a created container, `archive::upload`), which keeps the
//!   tar's numeric owners and modes, the volume's own folder included: the api and worker (10001) and n8n (1000) can
//!   still write there. Only the engine touches the volume; no host path under /var/lib/docker.
//! - **The drill** unpacks into a scratch volume (`<drill prefix>-<component>`, labelled, recorded in
//!   the `Scratch` before it is created, as is its holder container) and reads the figures back from
//!   that volume, not from the stream: equal figures prove the data came back.
//! - **`run_helper`** runs one busybox command in a throwaway container and removes it, for the
//!   other components (none calls it yet; `put_back` empties the volume with it): user root but with every capability
//!   dropped except `CHOWN`, `DAC_OVERRIDE` and `FOWNER` (it must act on files of any owner), no
//!   network, a read-only root filesystem, `no-new-privileges`.
//! - **Throwaway containers** are named `<project>-backup-<what>-<random>`, labelled
//!   `io.masstock.backup-helper=<project>`, and removed on every path (a `Drop` guard like the
//!   pause's, `throwaway::Throwaway`), never labelled as part of the compose project; their
//!   bodies are `throwaway::body`'s locked-down one, but a holder keeps a writable root: the
//!   engine refuses to unpack at `/` of a read-only one, even when every entry lands in the
//!   volume (a holder never runs, so nothing writes there).
//! - Uploads and the helper's wait are not bounded by the client's request timeout (a large
//!   volume takes longer than two minutes to unpack): `throwaway::LONG_REQUEST`.

use std::collections::HashMap;

use bollard::models::ContainerCreateBody;
use bollard::Docker;
use tokio::io::{AsyncRead, AsyncWrite};

use super::throwaway::{self, Throwaway};
use super::{archive, Component, Figures, Scratch, Target};
use crate::config::Stack;
use crate::docker::build::ImageError;
use crate::docker::{self, DockerError};

/// The label of the throwaway containers, with the project.
pub const HELPER_LABEL: &str = "io.masstock.backup-helper";

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
    let holder = holder(target.docker, &image, project, "measure", &subject.volume, subject.root, true).await?;
    let result =
        read_archive(target.docker, holder.name(), &subject.volume, subject.root, &mut tokio::io::sink()).await;
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
    throwaway::create_volume(docker, volume, labels.clone()).await?;
    throwaway::create(docker, holder, holder_body(image, labels, volume, root, false)).await?;
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
    let holder = holder(docker, image, project, "capture", &subject.volume, subject.root, true).await?;
    let paused = match &subject.pause {
        Some(container) => Paused::pause_if_running(docker, container).await,
        None => Ok(None),
    };
    let paused = match paused {
        Ok(paused) => paused,
        Err(error) => return holder.remove_after(Err(error)).await,
    };
    let result = read_archive(docker, holder.name(), &subject.volume, subject.root, sink).await;
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
    let holder = holder(docker, image, project, "restore", &subject.volume, subject.root, false).await?;
    let result = unpack(docker, holder.name(), &subject.volume, source).await;
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
    match archive::download(docker, container, &path, archive::Copy::Whole, sink, None).await {
        Ok(counted) => Ok(counted.figures()),
        Err(archive::ReadError::Engine(error)) => {
            Err(Error::Read { volume: volume.to_owned(), message: docker::engine_message(&error) })
        }
        Err(archive::ReadError::NotTar(reason)) => Err(Error::NotTar { volume: volume.to_owned(), reason }),
        Err(archive::ReadError::Sink(error)) => Err(Error::Sink { volume: volume.to_owned(), error }),
    }
}

/// Has the engine unpack the tar `source` at `/` of the (created, not started) `container`, as it
/// arrives.
async fn unpack(
    docker: &Docker,
    container: &str,
    volume: &str,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<(), Error> {
    archive::upload(docker, container, "/", source).await.map_err(|error| match error {
        archive::WriteError::Source(error) => Error::Source { volume: volume.to_owned(), error },
        archive::WriteError::Engine(error) => {
            Error::Unpack { volume: volume.to_owned(), message: docker::engine_message(&error) }
        }
    })
}

async fn run_in_helper(
    docker: &Docker,
    image: &str,
    project: &str,
    mounts: &[(&str, &str)],
    command: &[&str],
) -> Result<(), Error> {
    let name = format!("{project}-backup-helper-{}", super::random_hex());
    let mounts = mounts.iter().map(|(volume, path)| throwaway::mount(volume, path, false)).collect();
    let labels = HashMap::from([(HELPER_LABEL.to_owned(), project.to_owned())]);
    let mut body = throwaway::body(image, command, Some("0:0".to_owned()), mounts, "none", labels);
    if let Some(host_config) = &mut body.host_config {
        // It must act on files of any owner.
        host_config.cap_add = Some(vec!["CHOWN".to_owned(), "DAC_OVERRIDE".to_owned(), "FOWNER".to_owned()]);
    }
    let container = Throwaway::create(docker, &name, body).await?;
    let result = run_to_end(docker, &name, command).await;
    container.remove_after(result).await
}

async fn run_to_end(docker: &Docker, name: &str, command: &[&str]) -> Result<(), Error> {
    throwaway::start(docker, name).await?;
    let Some(status) = throwaway::wait_exit(docker, name, throwaway::LONG_REQUEST).await? else {
        let message = format!("still running after {}s", throwaway::LONG_REQUEST.as_secs());
        return Err(DockerError::Api { doing: format!("failed to wait for `{name}`"), message }.into());
    };
    if status == 0 {
        return Ok(());
    }
    let output = crate::deploy::wait::last_log_lines(docker, name, 5).await;
    let output = output.iter().map(|line| line.trim()).filter(|line| !line.is_empty()).collect::<Vec<_>>();
    Err(Error::HelperFailed { command: command.join(" "), status, output: output.join(" | ") })
}

/// A container created (and never started) only to reach a volume through the archive endpoint.
fn holder_body(
    image: &str,
    labels: HashMap<String, String>,
    volume: &str,
    root: &str,
    read_only: bool,
) -> ContainerCreateBody {
    let mounts = vec![throwaway::mount(volume, &format!("/{root}"), read_only)];
    let mut body = throwaway::body(image, &["true"], None, mounts, "none", labels);
    if let Some(host_config) = &mut body.host_config {
        // The engine unpacks at `/`, which it refuses on a read-only root even when every entry
        // lands in the volume. A holder never runs, so nothing could write there anyway.
        host_config.readonly_rootfs = None;
    }
    body
}

/// A holder (`<project>-backup-<what>-<random>`) that is removed on every path.
async fn holder(
    docker: &Docker,
    image: &str,
    project: &str,
    what: &str,
    volume: &str,
    root: &str,
    read_only: bool,
) -> Result<Throwaway, Error> {
    let name = format!("{project}-backup-{what}-{}", super::random_hex());
    let labels = HashMap::from([(HELPER_LABEL.to_owned(), project.to_owned())]);
    Ok(Throwaway::create(docker, &name, holder_body(image, labels, volume, root, read_only)).await?)
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
                paused.armed = !throwaway::engine_answered(&error);
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
            throwaway::on_own_runtime(true, move |docker| {
                let container = container.clone();
                async move { unpause_container(&docker, &container).await.is_ok() }
            });
        }
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bollard::query_parameters::CreateContainerOptionsBuilder;
    use tokio::io::AsyncReadExt as _;

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
            throwaway::on_own_runtime(true, move |docker| {
                let (containers, volumes) = (containers.clone(), volumes.clone());
                async move {
                    for container in &containers {
                        let _ = throwaway::remove(&docker, container).await;
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
        let holder = holder(&docker, &image, &project, "measure", &live, "uploads", true).await.unwrap();
        let result = read_archive(&docker, holder.name(), &live, "uploads", &mut tokio::io::sink()).await;
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

        throwaway::remove(&docker, &holder).await.unwrap();
        throwaway::remove(&docker, &format!("{project}-holder2")).await.unwrap();
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
}
