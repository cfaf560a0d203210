//! Building the images a deploy runs, engine side: built here for our services (`FROM scratch`,
//! the binary and only the shared libraries it needs) and for the local environment's redis
//! (from the host's Debian package), found locally or pulled for third-party images, tagged, and
//! reused when an image was already built from the same inputs. `prepare_images` does it all
//! before a deploy changes anything.
//!
//! `context` makes what goes into an image (the tar the engine builds from, and its digest);
//! `cargo` gets the binaries and the git revision they were built from.
//!
//! `prepare_images(docker, stack, services, options, reporter)` answers, for each service, the
//! `ResolvedImage` its container is created from (`reference`, `id`, `revision`, `built`, `tags`).
//! `masstockctl build` prints it; `deploy` calls it before it changes anything.
//!
//! - **Third-party images first.** An image without `build` is used when the engine has it, else
//!   pulled; a failed pull (there is no registry here) fails the call, naming the image and saying
//!   to `docker load` it or to point deploy.toml at a local build, before any build starts.
//! - **Our services (`build.binary`)** are built with
//!   `cargo build --profile <P> -p <package> --bin <binary>` in the workspace (the folder of
//!   deploy.toml, the current folder, or an ancestor, whose Cargo.toml has `[workspace]`; packages
//!   come from `cargo metadata --no-deps`), or taken from `--binaries DIR`. The image is
//!   `FROM scratch`: the binary in `/usr/local/bin`, each shared library `ldd` lists (and the
//!   dynamic loader) at the path it is loaded from, the host's CA bundle, `/etc/passwd` and
//!   `/etc/group` with `masstock` (10001), `/app/uploads` and `/app/logs` owned by it (named volumes
//!   copy that ownership at their first mount), `/tmp` 1777, the `build.assets` folder under
//!   `/srv/www`, `USER 10001:10001`, `WORKDIR /app`, `ENV PATH=/usr/local/bin`. **Why scratch:**
//!   there is no registry to pull a base image from, and an image with no shell, package manager or
//!   tools gives an intruder nothing to work with; health checks run the service's own binary
//!   (`<binary> healthcheck`). The binaries link glibc dynamically, so the host's glibc goes in with
//!   them; that is why the libraries come from `ldd`.
//! - **The local redis (`build.host_package`)** comes from the host's Debian package and the
//!   installed packages of the same source it depends on (`redis-server` brings `redis-tools`, so
//!   `redis-cli`): their executables with their libraries, plus `/bin/sh` (dash) and `grep`,
//!   because deploy.toml's command and health check are shell lines. User `redis` (999) owns
//!   `/data`, the working folder. A package that is not installed fails with
//!   `apt-get install <package>`.
//! - **The backup helper (`busybox_image`)** comes from the host's `busybox-static` the same way:
//!   the static `/bin/busybox` as entry point, `/etc/passwd` with root and nobody (its default
//!   user), `/tmp`, nothing else; tagged `<project>/backup-helper:<12 digits of the inputs
//!   digest>` and labelled with the package version. `crate::backup::volume` runs it.
//! - **Builds go through the Engine API** (`/build`, the classic builder, no pull): the context is a
//!   tar made in memory with a Dockerfile, `rootfs/` (copied as root) and `owned/` (copied with
//!   `--chown` to the image's user). Its entries have fixed owners and times, so equal inputs give
//!   equal bytes.
//! - **Reuse.** `io.masstock.inputs-digest` is the sha256 of the image's repository and of its
//!   context. An image carrying the digest is re-tagged instead of built. The digest does not cover
//!   the revision, so a commit that leaves a binary unchanged reuses its image, which keeps the
//!   revision label of the build that made it.
//! - **Tags.** `<repository>:<revision tag>` (the `reference` a deploy creates containers from, and
//!   what a rollback returns to) and `<repository>:latest`, plus the configured tag when
//!   deploy.toml names one. The revision tag is the 12-digit commit for a clean tree;
//!   `<commit>-dirty-<8 digits of the inputs digest>` when tracked files have uncommitted changes,
//!   so two dirty builds never share a tag; `build-<digest>` outside git. Building the same commit
//!   with another cargo profile moves its tag to the new image; the old image keeps its id.
//!   Host-package images are tagged only with the configured reference (`masstock/redis:local`) and
//!   carry `io.masstock.host-packages` (`name=version,…`) instead of a revision.
//! - **The revision** is `org.opencontainers.image.revision`: `git rev-parse HEAD`, with `-dirty`
//!   when `git status --porcelain --untracked-files=no` is not empty (untracked files, such as a
//!   local `.env`, do not make a build dirty).
//! - **Progress**: cargo's own lines on stderr; a spinner (build steps) or a byte bar (pulls) only
//!   when stderr is a terminal and `--no-progress` is not given; plain lines otherwise. A failed
//!   build says the engine's error and its last lines.
//!
//! Tests (`cli/tests/it/build.rs`) build with `--cargo-profile dev` into repositories
//! `masstock-test-<random>/…`, run the images through bollard, and remove what they made on drop.

mod cargo;
mod context;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ListImagesOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt as _;
use serde::Serialize;

use super::{api_error, engine_message, is_not_found, labels, DockerError};
use crate::config::{Service, Stack};
use crate::report::Reporter;
use cargo::{cargo_build, git_revision, prebuilt_binaries, revision_tag, workspace_root};
use context::{binary_context, busybox_context, host_package_context, Context};

/// Why the images are not ready. Nothing of the stack has changed when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no enabled service `{service}` in `{environment}`")]
    UnknownService { service: String, environment: String },
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// `deploy --no-build` found no image under the service's reference.
    #[error("image `{reference}` of service `{service}` is not on this Docker host")]
    NotTagged { service: String, reference: String },
    #[error("image `{reference}` of service `{service}` is not on this host and cannot be pulled: {message}")]
    NotPullable { service: String, reference: String, message: String },
    /// `last_lines`: what the engine printed last, the build's own explanation.
    #[error("building `{tag}` for service `{service}` failed: {message}")]
    BuildFailed { service: String, tag: String, message: String, last_lines: Vec<String> },
    #[error("failed to write the build context: {0}")]
    ContextNotWritten(std::io::Error),
    #[error("no cargo workspace holds `{}` or the current folder, so the binaries cannot be built", deploy_toml.display())]
    NoWorkspace { deploy_toml: PathBuf },
    #[error("`{}` has no binary `{binary}`", folder.display())]
    NoPrebuiltBinary { folder: PathBuf, binary: String },
    #[error("failed to run cargo: {0}")]
    CargoNotRun(std::io::Error),
    #[error("failed to wait for cargo: {0}")]
    CargoNotWaited(std::io::Error),
    #[error("`cargo build --profile {profile}` failed ({status})")]
    CargoFailed { profile: String, status: std::process::ExitStatus },
    #[error("cargo did not say where it put `{0}`")]
    CargoLostBinary(String),
    #[error("failed to run `cargo metadata`: {0}")]
    MetadataNotRun(std::io::Error),
    #[error("`cargo metadata` in `{}` failed: {error}", workspace.display())]
    MetadataUnreadable { workspace: PathBuf, error: serde_json::Error },
    #[error("no package of the workspace `{}` has a binary `{binary}`", workspace.display())]
    NoSuchBinary { workspace: PathBuf, binary: String },
    /// A host file (`fs_err` names it).
    #[error(transparent)]
    Io(std::io::Error),
    /// The `build.assets` folder (`fs_err` names it).
    #[error(transparent)]
    Assets(std::io::Error),
    #[error("the host has no CA bundle at `{0}` to put in the images")]
    NoCaBundle(&'static str),
    #[error("the Debian package `{0}` is not installed on this host, so its image cannot be built")]
    PackageMissing(String),
    #[error("failed to run `dpkg -L {package}`: {error}")]
    DpkgNotRun { package: String, error: std::io::Error },
    #[error("the host has no `{0}` to put in the image")]
    NoHostTool(String),
    #[error("failed to run `ldd {}`: {error}", binary.display())]
    LddNotRun { binary: PathBuf, error: std::io::Error },
    #[error("`{}` needs a library this host does not have: {line}", binary.display())]
    MissingLibrary { binary: PathBuf, line: String },
}

impl ImageError {
    /// Whether deploy.toml or the command line is at fault (exit 2) rather than the build.
    #[must_use]
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::UnknownService { .. } | Self::NoPrebuiltBinary { .. } | Self::NoSuchBinary { .. })
    }

    /// What the operator can do about it.
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        let hint = match self {
            Self::Docker(error) => error.hint().map(str::to_owned),
            Self::NotPullable { service, reference, .. } => {
                return vec![
                    format!("load it on this host: `docker save {reference} > image.tar` where it exists, then `docker load -i image.tar` here"),
                    format!("or point `services.{service}.image` in deploy.toml at an image built here (`build = {{ binary = … }}` or `{{ host_package = … }}`)"),
                ];
            }
            Self::BuildFailed { last_lines, .. } => {
                (!last_lines.is_empty()).then(|| format!("the engine said last: {}", last_lines.join(" | ")))
            }
            Self::NotTagged { .. } => {
                Some("build it with `masstockctl build`, or deploy without `--no-build`".to_owned())
            }
            Self::NoWorkspace { .. } => {
                Some("run masstockctl from the workspace, or pass `--binaries DIR` with prebuilt binaries".to_owned())
            }
            Self::NoPrebuiltBinary { .. } => Some(
                "build it with `cargo build --release`, or leave out `--binaries` to let masstockctl build it"
                    .to_owned(),
            ),
            Self::CargoNotRun(_) => Some("install Rust (rustup.rs)".to_owned()),
            Self::CargoFailed { .. } => Some("cargo's messages are above".to_owned()),
            Self::NoSuchBinary { .. } => {
                Some("`build.binary` in deploy.toml names a `[[bin]]` of the workspace".to_owned())
            }
            Self::Assets(_) => Some("`build.assets` names a folder relative to deploy.toml".to_owned()),
            Self::NoCaBundle(_) => Some("install it: `apt-get install ca-certificates`".to_owned()),
            Self::PackageMissing(package) => Some(format!("install it: `apt-get install {package}`")),
            _ => None,
        };
        hint.into_iter().collect()
    }
}

/// The user our services run as in their images, and the owner of their writable folders.
pub const SERVICE_UID: u32 = 10001;
/// The user the host-package redis image runs as, and the owner of `/data`.
pub const REDIS_UID: u32 = 999;

/// The image a service's container is created from, ready on this engine.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedImage {
    pub service: String,
    /// What the container is created from: `masstock/api:<rev>` for images built from a
    /// binary, the configured reference otherwise (`masstock/redis:local`, `redis:7-alpine`).
    pub reference: String,
    /// The engine's image id, `sha256:…`.
    pub id: String,
    /// The git revision the image was built from (`org.opencontainers.image.revision`), when it
    /// says; `<sha>-dirty` for a tree with uncommitted changes.
    pub revision: Option<String>,
    /// Whether this call built the image (false: reused, or already present, or pulled).
    pub built: bool,
    /// Every tag this call put on the image (empty for third-party images).
    pub tags: Vec<String>,
}

/// How images are built.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The cargo profile binaries are built with (`release`; tests use `dev`).
    pub cargo_profile: String,
    /// A folder of prebuilt binaries (named as in deploy.toml's `build.binary`): cargo is not run.
    pub binaries_dir: Option<PathBuf>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self { cargo_profile: "release".to_owned(), binaries_dir: None }
    }
}

/// Makes sure every named service's image is on the engine, building, re-tagging or pulling as
/// needed, and answers what each container must be created from. An empty `services` means
/// every enabled service. Third-party images are checked first, so that a missing one fails the
/// call before anything is built.
pub async fn prepare_images(
    docker: &Docker,
    stack: &Stack,
    services: &[String],
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<BTreeMap<String, ResolvedImage>, ImageError> {
    let names: Vec<String> = if services.is_empty() {
        stack.services().map(|(name, _)| name.to_owned()).collect()
    } else {
        services.to_vec()
    };
    let mut selected: Vec<(&str, &Service)> = Vec::new();
    for name in &names {
        let service = stack.config.services.get(name).filter(|service| service.enabled).ok_or_else(|| {
            ImageError::UnknownService { service: name.clone(), environment: stack.environment.clone() }
        })?;
        selected.push((name, service));
    }

    let mut resolved = BTreeMap::new();
    for (name, service) in selected.iter().filter(|(_, service)| service.build.is_none()) {
        let image = third_party_image(docker, name, &service.image, reporter).await?;
        resolved.insert((*name).to_owned(), image);
    }

    let binary_services: Vec<(&str, &Service, &str)> = selected
        .iter()
        .filter_map(|(name, service)| {
            let binary = service.build.as_ref()?.binary.as_deref()?;
            Some((*name, *service, binary))
        })
        .collect();
    let package_services: Vec<(&str, &Service, &str)> = selected
        .iter()
        .filter_map(|(name, service)| {
            let package = service.build.as_ref()?.host_package.as_deref()?;
            Some((*name, *service, package))
        })
        .collect();

    // Host packages first: a missing package is found before a long cargo build.
    let mut package_contexts = Vec::new();
    for (name, service, package) in &package_services {
        package_contexts.push((*name, *service, host_package_context(package)?));
    }

    if !binary_services.is_empty() {
        let deploy_folder = stack.path.parent().unwrap_or(Path::new("."));
        let workspace = workspace_root(deploy_folder);
        let wanted: BTreeSet<&str> = binary_services.iter().map(|(_, _, binary)| *binary).collect();
        let binaries = if let Some(folder) = &options.binaries_dir {
            prebuilt_binaries(folder, &wanted)?
        } else {
            let workspace =
                workspace.as_deref().ok_or_else(|| ImageError::NoWorkspace { deploy_toml: stack.path.clone() })?;
            cargo_build(workspace, &options.cargo_profile, &wanted, reporter)?
        };
        let revision = git_revision(workspace.as_deref().unwrap_or(deploy_folder));
        for (name, service, binary) in binary_services {
            let context =
                binary_context(binary, &binaries[binary], service.build.as_ref().and_then(|b| b.assets.as_deref()))?;
            let repository = repository_of(&service.image);
            let digest = context.digest(&repository);
            let tag = revision_tag(revision.as_ref(), &digest);
            let mut tags = vec![format!("{repository}:{tag}"), format!("{repository}:latest")];
            // An image written with its own tag (`masstock/api:stable`) gets that tag too.
            if service.image != repository && !tags.contains(&service.image) {
                tags.push(service.image.clone());
            }
            let mut build_labels = HashMap::from([(labels::INPUTS_DIGEST.to_owned(), digest.clone())]);
            if let Some(revision) = &revision {
                build_labels.insert(labels::REVISION.to_owned(), revision.label());
            }
            let image = build_or_reuse(docker, name, &context, &digest, &tags, build_labels, reporter).await?;
            resolved.insert(name.to_owned(), image);
        }
    }

    for (name, service, context) in package_contexts {
        let reference = stack.image_reference(name);
        let repository = repository_of(&service.image);
        let digest = context.context.digest(&repository);
        let build_labels = HashMap::from([
            (labels::INPUTS_DIGEST.to_owned(), digest.clone()),
            (labels::HOST_PACKAGES.to_owned(), context.versions.clone()),
        ]);
        let image =
            build_or_reuse(docker, name, &context.context, &digest, &[reference], build_labels, reporter).await?;
        resolved.insert(name.to_owned(), image);
    }
    Ok(resolved)
}

// ---------------------------------------------------------------------------------------------
// Third-party images
// ---------------------------------------------------------------------------------------------

async fn third_party_image(
    docker: &Docker,
    service: &str,
    reference: &str,
    reporter: &dyn Reporter,
) -> Result<ResolvedImage, ImageError> {
    let resolved = |inspect: bollard::models::ImageInspect| ResolvedImage {
        service: service.to_owned(),
        reference: reference.to_owned(),
        id: inspect.id.unwrap_or_default(),
        revision: inspect
            .config
            .and_then(|config| config.labels)
            .and_then(|labels| labels.get(labels::REVISION).cloned()),
        built: false,
        tags: Vec::new(),
    };
    match docker.inspect_image(reference).await {
        Ok(inspect) => return Ok(resolved(inspect)),
        Err(error) if is_not_found(&error) => {}
        Err(error) => return Err(api_error(format!("failed to inspect image `{reference}`"), &error).into()),
    }
    reporter.step(&format!("{service}: pulling `{reference}`"));
    let progress = reporter.transfer(&format!("pulling {reference}"), true);
    let options = CreateImageOptionsBuilder::default().from_image(reference).build();
    let mut stream = docker.create_image(Some(options), None, None);
    let mut layers: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut failure = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(detail) = info.error_detail.and_then(|detail| detail.message) {
                    failure = Some(detail);
                    break;
                }
                if let (Some(id), Some(detail)) = (info.id, info.progress_detail) {
                    let entry = layers.entry(id).or_default();
                    entry.0 = detail.current.and_then(|value| u64::try_from(value).ok()).unwrap_or(entry.0);
                    entry.1 = detail.total.and_then(|value| u64::try_from(value).ok()).unwrap_or(entry.1);
                    progress
                        .bytes(layers.values().map(|layer| layer.0).sum(), layers.values().map(|layer| layer.1).sum());
                }
            }
            Err(error) => {
                failure = Some(stream_error(&error));
                break;
            }
        }
    }
    progress.finish();
    let inspect = match failure {
        None => docker.inspect_image(reference).await.map_err(|error| error.to_string()),
        Some(message) => Err(message),
    };
    inspect.map(resolved).map_err(|message| ImageError::NotPullable {
        service: service.to_owned(),
        reference: reference.to_owned(),
        message,
    })
}

// ---------------------------------------------------------------------------------------------
// Build or reuse
// ---------------------------------------------------------------------------------------------

async fn build_or_reuse(
    docker: &Docker,
    service: &str,
    context: &Context,
    digest: &str,
    tags: &[String],
    build_labels: HashMap<String, String>,
    reporter: &dyn Reporter,
) -> Result<ResolvedImage, ImageError> {
    let existing = image_with_digest(docker, digest).await?;
    let (id, built) = if let Some(id) = existing {
        reporter.step(&format!("{service}: inputs unchanged, reusing {}", short_id(&id)));
        (id, false)
    } else {
        reporter.step(&format!("{service}: building `{}` ({} MB of context)", tags[0], context.size() / 1_000_000));
        (build(docker, service, context, &tags[0], build_labels, reporter).await?, true)
    };
    for tag in tags {
        let (repository, tag_name) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
        let options = TagImageOptionsBuilder::default().repo(repository).tag(tag_name).build();
        docker
            .tag_image(&id, Some(options))
            .await
            .map_err(|error| api_error(format!("failed to tag image as `{tag}`"), &error))?;
    }
    let inspect = docker
        .inspect_image(&id)
        .await
        .map_err(|error| api_error(format!("failed to inspect image `{id}`"), &error))?;
    let revision =
        inspect.config.and_then(|config| config.labels).and_then(|labels| labels.get(labels::REVISION).cloned());
    Ok(ResolvedImage {
        service: service.to_owned(),
        reference: tags[0].clone(),
        id,
        revision,
        built,
        tags: tags.to_vec(),
    })
}

/// The id of an image already built from these inputs, if any.
async fn image_with_digest(docker: &Docker, digest: &str) -> Result<Option<String>, ImageError> {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{}={digest}", labels::INPUTS_DIGEST)])]);
    let options = ListImagesOptionsBuilder::default().filters(&filters).build();
    let images = docker.list_images(Some(options)).await.map_err(|error| api_error("failed to list images", &error))?;
    Ok(images.into_iter().max_by_key(|image| image.created).map(|image| image.id))
}

async fn build(
    docker: &Docker,
    service: &str,
    context: &Context,
    tag: &str,
    build_labels: HashMap<String, String>,
    reporter: &dyn Reporter,
) -> Result<String, ImageError> {
    let tar = context.tar().map_err(ImageError::ContextNotWritten)?;
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .labels(&build_labels)
        .build();
    let progress = reporter.transfer(&format!("building {tag}"), false);
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
    let mut id = None;
    let mut last_lines: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(error) => {
                progress.finish();
                return Err(build_failure(service, tag, &stream_error(&error), &last_lines));
            }
        };
        if let Some(message) = info.error_detail.and_then(|detail| detail.message) {
            progress.finish();
            return Err(build_failure(service, tag, &message, &last_lines));
        }
        if let Some(line) = info.stream.as_deref().map(str::trim).filter(|line| !line.is_empty()) {
            if line.starts_with("Step ") {
                progress.message(line);
                reporter.detail(&format!("{service}: {line}"));
            }
            last_lines.push(line.to_owned());
            if last_lines.len() > 5 {
                last_lines.remove(0);
            }
        }
        if let Some(image) = info.aux.and_then(|aux| aux.id) {
            id = Some(image);
        }
    }
    progress.finish();
    match id {
        Some(id) => Ok(id),
        None => docker
            .inspect_image(tag)
            .await
            .map(|inspect| inspect.id.unwrap_or_default())
            .map_err(|error| api_error(format!("the engine built `{tag}` but does not show it"), &error).into()),
    }
}

fn build_failure(service: &str, tag: &str, message: &str, last_lines: &[String]) -> ImageError {
    ImageError::BuildFailed {
        service: service.to_owned(),
        tag: tag.to_owned(),
        message: message.to_owned(),
        last_lines: last_lines.to_vec(),
    }
}

fn stream_error(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => engine_message(other),
    }
}

/// `masstock/api` for `masstock/api`, `masstock/api:stable` and `registry:5000/masstock/api`.
fn repository_of(image: &str) -> String {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository.to_owned(),
        _ => image.to_owned(),
    }
}

/// The image backup helpers run from (`crate::backup::volume`): the host's static busybox, built
/// once and reused while the package does not change, tagged `<repository>:<12 digits of its
/// inputs digest>` and labelled with the package version like the host-package images.
pub async fn busybox_image(
    docker: &Docker,
    repository: &str,
    reporter: &dyn Reporter,
) -> Result<ResolvedImage, ImageError> {
    let package = busybox_context()?;
    let digest = package.context.digest(repository);
    let hex = digest.trim_start_matches("sha256:");
    let tag = format!("{repository}:{}", &hex[..hex.len().min(12)]);
    let build_labels = HashMap::from([
        (labels::INPUTS_DIGEST.to_owned(), digest.clone()),
        (labels::HOST_PACKAGES.to_owned(), package.versions.clone()),
    ]);
    build_or_reuse(docker, "backup-helper", &package.context, &digest, &[tag], build_labels, reporter).await
}

/// The first 12 hex digits of an image id.
#[must_use]
pub fn short_id(id: &str) -> &str {
    let hex = id.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_lose_their_tag_but_not_their_registry_port() {
        assert_eq!(repository_of("masstock/api"), "masstock/api");
        assert_eq!(repository_of("masstock/redis:local"), "masstock/redis");
        assert_eq!(repository_of("registry:5000/masstock/api"), "registry:5000/masstock/api");
        assert_eq!(repository_of("registry:5000/masstock/api:v1"), "registry:5000/masstock/api");
    }
}
