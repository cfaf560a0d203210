//! The images a deploy runs: built here for our services (`FROM scratch`, the binary and only the
//! shared libraries it needs) and for the local environment's redis (from the host's Debian
//! package), found locally or pulled for third-party images. `prepare_images` does it all before a
//! deploy changes anything.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ListImagesOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{api_error, engine_message, is_not_found, labels};
use crate::config::{Service, Stack};
use crate::error::CommandError;
use crate::report::Reporter;

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
) -> Result<BTreeMap<String, ResolvedImage>, CommandError> {
    let names: Vec<String> = if services.is_empty() {
        stack.services().map(|(name, _)| name.to_owned()).collect()
    } else {
        services.to_vec()
    };
    let mut selected: Vec<(&str, &Service)> = Vec::new();
    for name in &names {
        let service =
            stack.config.services.get(name).filter(|service| service.enabled).ok_or_else(|| {
                CommandError::usage(format!("no enabled service `{name}` in `{}`", stack.environment))
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
            let workspace = workspace.as_deref().ok_or_else(|| {
                CommandError::failure(format!(
                    "no cargo workspace holds `{}` or the current folder, so the binaries cannot be built",
                    stack.path.display()
                ))
                .with_hint("run masstockctl from the workspace, or pass `--binaries DIR` with prebuilt binaries")
            })?;
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
) -> Result<ResolvedImage, CommandError> {
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
        Err(error) => return Err(api_error(format!("failed to inspect image `{reference}`"), &error)),
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
    inspect.map(resolved).map_err(|message| {
        CommandError::failure(format!("image `{reference}` of service `{service}` is not on this host and cannot be pulled: {message}"))
            .with_hint(format!(
                "load it on this host: `docker save {reference} > image.tar` where it exists, then `docker load -i image.tar` here"
            ))
            .with_hint(format!(
                "or point `services.{service}.image` in deploy.toml at an image built here (`build = {{ binary = … }}` or `{{ host_package = … }}`)"
            ))
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
) -> Result<ResolvedImage, CommandError> {
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
async fn image_with_digest(docker: &Docker, digest: &str) -> Result<Option<String>, CommandError> {
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
) -> Result<String, CommandError> {
    let tar =
        context.tar().map_err(|error| CommandError::failure(format!("failed to write the build context: {error}")))?;
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
            .map_err(|error| api_error(format!("the engine built `{tag}` but does not show it"), &error)),
    }
}

fn build_failure(service: &str, tag: &str, message: &str, last_lines: &[String]) -> CommandError {
    let mut error = CommandError::failure(format!("building `{tag}` for service `{service}` failed: {message}"));
    if !last_lines.is_empty() {
        error = error.with_hint(format!("the engine said last: {}", last_lines.join(" | ")));
    }
    error
}

fn stream_error(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => engine_message(other),
    }
}

// ---------------------------------------------------------------------------------------------
// Build contexts
// ---------------------------------------------------------------------------------------------

/// What goes into an image: a Dockerfile, `rootfs/` copied as root and `owned/` copied as the
/// image's user. Written as a tar with fixed owners and times, so the same inputs give the same
/// bytes and the same digest.
#[derive(Debug, Default)]
struct Context {
    dockerfile: String,
    rootfs: BTreeMap<PathBuf, Entry>,
    owned: BTreeMap<PathBuf, Entry>,
}

#[derive(Debug)]
enum Entry {
    Directory { mode: u32 },
    File { contents: Vec<u8>, mode: u32 },
    Symlink { target: PathBuf },
}

impl Context {
    /// Adds a file at `path` (absolute, in the image), with its parent folders.
    fn file(&mut self, path: &Path, contents: Vec<u8>, mode: u32) {
        add_parents(&mut self.rootfs, path);
        self.rootfs.insert(relative(path), Entry::File { contents, mode });
    }

    /// Copies a host file (following symlinks) to `path` in the image.
    fn host_file(&mut self, host: &Path, path: &Path, mode: u32) -> Result<(), CommandError> {
        let contents = fs_err::read(host).map_err(CommandError::failure)?;
        self.file(path, contents, mode);
        Ok(())
    }

    fn directory(&mut self, path: &Path, mode: u32) {
        add_parents(&mut self.rootfs, path);
        self.rootfs.insert(relative(path), Entry::Directory { mode });
    }

    fn symlink(&mut self, path: &Path, target: &Path) {
        add_parents(&mut self.rootfs, path);
        self.rootfs.insert(relative(path), Entry::Symlink { target: target.to_path_buf() });
    }

    /// A folder owned by the image's user (named volumes copy that ownership at first mount).
    fn owned_directory(&mut self, path: &Path) {
        add_parents(&mut self.owned, path);
        self.owned.insert(relative(path), Entry::Directory { mode: 0o755 });
    }

    /// A host executable with every shared library `ldd` says it loads, at the paths it loads them
    /// from (the dynamic loader included).
    fn executable_with_libraries(&mut self, host: &Path, path: &Path) -> Result<(), CommandError> {
        self.host_file(host, path, 0o755)?;
        for library in shared_libraries(host)? {
            if !self.rootfs.contains_key(&relative(&library)) {
                self.host_file(&library, &library, 0o755)?;
            }
        }
        Ok(())
    }

    /// `/etc/passwd` and `/etc/group` with root and one unprivileged user, and the host's CA
    /// bundle (for TLS to PostgreSQL, Gemini, …).
    fn base_files(&mut self, user: &str, uid: u32, home: &str) -> Result<(), CommandError> {
        let passwd = format!("root:x:0:0:root:/root:/sbin/nologin\n{user}:x:{uid}:{uid}:{user}:{home}:/sbin/nologin\n");
        let group = format!("root:x:0:\n{user}:x:{uid}:\n");
        self.file(Path::new("/etc/passwd"), passwd.into_bytes(), 0o644);
        self.file(Path::new("/etc/group"), group.into_bytes(), 0o644);
        let bundle = Path::new(CA_BUNDLE);
        if !bundle.is_file() {
            return Err(CommandError::failure(format!(
                "the host has no CA bundle at `{CA_BUNDLE}` to put in the images"
            ))
            .with_hint("install it: `apt-get install ca-certificates`"));
        }
        self.host_file(bundle, bundle, 0o644)?;
        self.rootfs.insert(PathBuf::from("tmp"), Entry::Directory { mode: 0o1777 });
        Ok(())
    }

    fn size(&self) -> usize {
        self.rootfs
            .values()
            .chain(self.owned.values())
            .map(|entry| match entry {
                Entry::File { contents, .. } => contents.len(),
                _ => 0,
            })
            .sum()
    }

    /// The build context as a tar.
    fn tar(&self) -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar_header(tar::EntryType::Regular, 0o644, self.dockerfile.len());
        builder.append_data(&mut header, "Dockerfile", self.dockerfile.as_bytes())?;
        for (folder, entries) in [("rootfs", &self.rootfs), ("owned", &self.owned)] {
            let mut header = tar_header(tar::EntryType::Directory, 0o755, 0);
            builder.append_data(&mut header, folder, std::io::empty())?;
            for (path, entry) in entries {
                let name = Path::new(folder).join(path);
                match entry {
                    Entry::Directory { mode } => {
                        let mut header = tar_header(tar::EntryType::Directory, *mode, 0);
                        builder.append_data(&mut header, &name, std::io::empty())?;
                    }
                    Entry::File { contents, mode } => {
                        let mut header = tar_header(tar::EntryType::Regular, *mode, contents.len());
                        builder.append_data(&mut header, &name, contents.as_slice())?;
                    }
                    Entry::Symlink { target } => {
                        let mut header = tar_header(tar::EntryType::Symlink, 0o777, 0);
                        builder.append_link(&mut header, &name, target)?;
                    }
                }
            }
        }
        builder.into_inner()
    }

    /// sha256 of the repository the image is for and of the context: equal digests, equal images.
    fn digest(&self, repository: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(repository.as_bytes());
        hasher.update([0]);
        hasher.update(self.dockerfile.as_bytes());
        for (folder, entries) in [("rootfs", &self.rootfs), ("owned", &self.owned)] {
            for (path, entry) in entries {
                hasher.update([0]);
                hasher.update(folder.as_bytes());
                hasher.update(path.as_os_str().as_encoded_bytes());
                match entry {
                    Entry::Directory { mode } => hasher.update(format!("\0d{mode:o}")),
                    Entry::File { contents, mode } => {
                        hasher.update(format!("\0f{mode:o}\0{}\0", contents.len()));
                        hasher.update(contents);
                    }
                    Entry::Symlink { target } => {
                        hasher.update(b"\0l");
                        hasher.update(target.as_os_str().as_encoded_bytes());
                    }
                }
            }
        }
        format!("sha256:{:x}", hasher.finalize())
    }
}

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn tar_header(kind: tar::EntryType, mode: u32, size: usize) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size as u64);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

/// `path` without its leading `/`.
fn relative(path: &Path) -> PathBuf {
    path.strip_prefix("/").unwrap_or(path).to_path_buf()
}

fn add_parents(entries: &mut BTreeMap<PathBuf, Entry>, path: &Path) {
    for parent in relative(path).ancestors().skip(1).filter(|parent| !parent.as_os_str().is_empty()) {
        entries.entry(parent.to_path_buf()).or_insert(Entry::Directory { mode: 0o755 });
    }
}

/// The image of a workspace binary: the binary in /usr/local/bin with its libraries, the CA
/// bundle, a non-root user, `/app/uploads` and `/app/logs` it owns, and the assets under
/// `/srv/www`. No shell: nothing runs in it but the binary.
fn binary_context(binary: &str, host_binary: &Path, assets: Option<&Path>) -> Result<Context, CommandError> {
    let mut context = Context::default();
    context.base_files("masstock", SERVICE_UID, "/app")?;
    context.executable_with_libraries(host_binary, &Path::new("/usr/local/bin").join(binary))?;
    context.directory(Path::new("/app"), 0o755);
    context.owned_directory(Path::new("/app/uploads"));
    context.owned_directory(Path::new("/app/logs"));
    if let Some(assets) = assets {
        add_assets(&mut context, assets, Path::new("/srv/www"))?;
    }
    context.dockerfile = format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         COPY --chown={SERVICE_UID}:{SERVICE_UID} owned/ /\n\
         ENV PATH=/usr/local/bin\n\
         USER {SERVICE_UID}:{SERVICE_UID}\n\
         WORKDIR /app\n"
    );
    Ok(context)
}

/// Every file under `folder`, in a stable order, copied under `target`.
fn add_assets(context: &mut Context, folder: &Path, target: &Path) -> Result<(), CommandError> {
    let entries = fs_err::read_dir(folder).map_err(|error| {
        CommandError::failure(error).with_hint("`build.assets` names a folder relative to deploy.toml")
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|entry| entry.path()).collect();
    paths.sort();
    for path in paths {
        let Some(name) = path.file_name() else { continue };
        if path.is_dir() {
            context.directory(&target.join(name), 0o755);
            add_assets(context, &path, &target.join(name))?;
        } else {
            context.host_file(&path, &target.join(name), 0o644)?;
        }
    }
    Ok(())
}

/// The host-package image and the package versions it was made from.
#[derive(Debug)]
struct PackageContext {
    context: Context,
    /// `redis-server=5:7.0.15-1~deb12u1,redis-tools=…`
    versions: String,
}

/// The image of a Debian package installed on this host: the executables of the package and of
/// the installed packages built from the same source that it depends on (redis-server brings
/// redis-tools, so redis-cli), with their libraries, plus `/bin/sh` and `grep` for the shell
/// commands deploy.toml runs (`sh -c "exec redis-server …"`, `redis-cli … | grep -q PONG`).
fn host_package_context(package: &str) -> Result<PackageContext, CommandError> {
    let missing = || {
        CommandError::failure(format!(
            "the Debian package `{package}` is not installed on this host, so its image cannot be built"
        ))
        .with_hint(format!("install it: `apt-get install {package}`"))
    };
    let status =
        dpkg_query(package, "${db:Status-Status}\t${source:Package}\t${Version}\t${Depends}").ok_or_else(missing)?;
    let mut fields = status.split('\t');
    let (state, source, version, depends) = (
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
    );
    if state != "installed" {
        return Err(missing());
    }
    let mut packages = vec![(package.to_owned(), version.to_owned())];
    for dependency in depends.split(',').filter_map(|item| item.split_whitespace().next()) {
        let dependency = dependency.split(':').next().unwrap_or(dependency);
        if let Some(info) = dpkg_query(dependency, "${db:Status-Status}\t${source:Package}\t${Version}") {
            let fields: Vec<&str> = info.split('\t').collect();
            if fields.first() == Some(&"installed") && fields.get(1) == Some(&source) {
                packages.push((dependency.to_owned(), fields.get(2).copied().unwrap_or_default().to_owned()));
            }
        }
    }
    let user = package.split('-').next().unwrap_or(package);
    let mut context = Context::default();
    context.base_files(user, REDIS_UID, "/data")?;
    for (name, _) in &packages {
        let output = Command::new("dpkg")
            .args(["-L", name])
            .output()
            .map_err(|error| CommandError::failure(format!("failed to run `dpkg -L {name}`: {error}")))?;
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let path = Path::new(line);
            let in_bin = path.parent().is_some_and(|parent| {
                ["/usr/bin", "/usr/sbin", "/bin", "/sbin"].iter().any(|folder| parent == Path::new(folder))
            });
            if !in_bin {
                continue;
            }
            let metadata = fs_err::symlink_metadata(path).map_err(CommandError::failure)?;
            if metadata.file_type().is_symlink() {
                let target = fs_err::read_link(path).map_err(CommandError::failure)?;
                context.symlink(path, &target);
            } else if metadata.is_file() {
                context.executable_with_libraries(path, path)?;
            }
        }
    }
    for (tool, image_path) in [("sh", "/bin/sh"), ("grep", "/usr/bin/grep")] {
        let host = host_tool(tool)?;
        context.executable_with_libraries(&host, Path::new(image_path))?;
    }
    context.owned_directory(Path::new("/data"));
    context.dockerfile = format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         COPY --chown={REDIS_UID}:{REDIS_UID} owned/ /\n\
         ENV PATH=/usr/local/bin:/usr/bin:/bin\n\
         USER {REDIS_UID}:{REDIS_UID}\n\
         WORKDIR /data\n"
    );
    let versions = packages.iter().map(|(name, version)| format!("{name}={version}")).collect::<Vec<_>>().join(",");
    Ok(PackageContext { context, versions })
}

fn dpkg_query(package: &str, format: &str) -> Option<String> {
    let output = Command::new("dpkg-query").args(["-W", "-f", format, package]).stderr(Stdio::null()).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A tool of the host, found where Debian puts it.
fn host_tool(name: &str) -> Result<PathBuf, CommandError> {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|folder| Path::new(folder).join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| CommandError::failure(format!("the host has no `{name}` to put in the image")))
}

/// The shared libraries `ldd` says `binary` loads, the dynamic loader included; none for a static
/// binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, CommandError> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|error| CommandError::failure(format!("failed to run `ldd {}`: {error}", binary.display())))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // `not a dynamic executable`: nothing to copy.
        return Ok(Vec::new());
    }
    let mut libraries = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("=> not found") {
            return Err(CommandError::failure(format!(
                "`{}` needs a library this host does not have: {line}",
                binary.display()
            )));
        }
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next().filter(|path| path.starts_with('/')),
        };
        if let Some(path) = path.filter(|path| path.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

// ---------------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------------

/// The folder of deploy.toml, or of the current folder, or one of their ancestors, whose
/// Cargo.toml has a `[workspace]`.
fn workspace_root(deploy_folder: &Path) -> Option<PathBuf> {
    let current = std::env::current_dir().ok();
    let starts = [Some(crate::config::absolute(deploy_folder)), current];
    starts.into_iter().flatten().find_map(|start| {
        start
            .ancestors()
            .find(|folder| {
                fs_err::read_to_string(folder.join("Cargo.toml"))
                    .is_ok_and(|text| text.lines().any(|line| line.trim() == "[workspace]"))
            })
            .map(Path::to_path_buf)
    })
}

fn prebuilt_binaries(folder: &Path, wanted: &BTreeSet<&str>) -> Result<BTreeMap<String, PathBuf>, CommandError> {
    wanted
        .iter()
        .map(|binary| {
            let path = folder.join(binary);
            if path.is_file() {
                Ok(((*binary).to_owned(), path))
            } else {
                Err(CommandError::usage(format!("`{}` has no binary `{binary}`", folder.display())).with_hint(
                    "build it with `cargo build --release`, or leave out `--binaries` to let masstockctl build it",
                ))
            }
        })
        .collect()
}

/// Builds the binaries with cargo in the workspace and answers where each one is. cargo's own
/// progress goes to stderr; its JSON messages tell where the executables are.
fn cargo_build(
    workspace: &Path,
    profile: &str,
    wanted: &BTreeSet<&str>,
    reporter: &dyn Reporter,
) -> Result<BTreeMap<String, PathBuf>, CommandError> {
    let packages = packages_of_binaries(workspace, wanted)?;
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace).args([
        "build",
        "--locked",
        "--profile",
        profile,
        "--message-format=json-render-diagnostics",
    ]);
    for binary in wanted {
        command.args(["-p", &packages[*binary], "--bin", binary]);
    }
    if reporter.quiet() {
        command.arg("--quiet");
    }
    reporter.step(&format!(
        "building {} with cargo (profile `{profile}`)",
        wanted.iter().map(|binary| format!("`{binary}`")).collect::<Vec<_>>().join(", ")
    ));
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().map_err(|error| {
        CommandError::failure(format!("failed to run cargo: {error}")).with_hint("install Rust (rustup.rs)")
    })?;
    let mut executables = BTreeMap::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if message["reason"] != "compiler-artifact" {
                continue;
            }
            let name = message["target"]["name"].as_str().unwrap_or_default();
            if let (true, Some(executable)) = (wanted.contains(name), message["executable"].as_str()) {
                executables.insert(name.to_owned(), PathBuf::from(executable));
            }
        }
    }
    let status = child.wait().map_err(|error| CommandError::failure(format!("failed to wait for cargo: {error}")))?;
    if !status.success() {
        return Err(CommandError::failure(format!("`cargo build --profile {profile}` failed ({status})"))
            .with_hint("cargo's messages are above"));
    }
    for binary in wanted {
        if !executables.contains_key(*binary) {
            return Err(CommandError::failure(format!("cargo did not say where it put `{binary}`")));
        }
    }
    Ok(executables)
}

/// The package of each binary, from `cargo metadata --no-deps`.
fn packages_of_binaries(workspace: &Path, wanted: &BTreeSet<&str>) -> Result<BTreeMap<String, String>, CommandError> {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(workspace)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| CommandError::failure(format!("failed to run `cargo metadata`: {error}")))?;
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|error| {
        CommandError::failure(format!("`cargo metadata` in `{}` failed: {error}", workspace.display()))
    })?;
    let mut packages = BTreeMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"));
            let name = target["name"].as_str().unwrap_or_default();
            if is_bin && wanted.contains(name) {
                packages.insert(name.to_owned(), package["name"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    for binary in wanted {
        if !packages.contains_key(*binary) {
            return Err(CommandError::usage(format!(
                "no package of the workspace `{}` has a binary `{binary}`",
                workspace.display()
            ))
            .with_hint("`build.binary` in deploy.toml names a `[[bin]]` of the workspace"));
        }
    }
    Ok(packages)
}

// ---------------------------------------------------------------------------------------------
// Revisions and tags
// ---------------------------------------------------------------------------------------------

/// The git commit the workspace is at, and whether the tree has changes not committed.
#[derive(Debug, Clone)]
struct Revision {
    commit: String,
    dirty: bool,
}

impl Revision {
    /// `org.opencontainers.image.revision`: the commit, `-dirty` when the tree had changes.
    fn label(&self) -> String {
        if self.dirty {
            format!("{}-dirty", self.commit)
        } else {
            self.commit.clone()
        }
    }
}

fn git_revision(folder: &Path) -> Option<Revision> {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(folder)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|status| !status.is_empty());
    Some(Revision { commit, dirty })
}

/// The per-build tag: the short commit for a clean tree; for a dirty one the short commit,
/// `dirty` and the start of the inputs digest, so two dirty builds never share a tag; the digest
/// alone outside git.
fn revision_tag(revision: Option<&Revision>, digest: &str) -> String {
    let digest = digest.trim_start_matches("sha256:");
    match revision {
        Some(Revision { commit, dirty: false }) => commit[..commit.len().min(12)].to_owned(),
        Some(Revision { commit, dirty: true }) => format!("{}-dirty-{}", &commit[..commit.len().min(12)], &digest[..8]),
        None => format!("build-{}", &digest[..12]),
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

    #[test]
    fn dirty_trees_get_a_tag_per_content() {
        let digest = "sha256:0123456789abcdef";
        let clean = Revision { commit: "a".repeat(40), dirty: false };
        let dirty = Revision { commit: "a".repeat(40), dirty: true };
        assert_eq!(revision_tag(Some(&clean), digest), "aaaaaaaaaaaa");
        assert_eq!(revision_tag(Some(&dirty), digest), "aaaaaaaaaaaa-dirty-01234567");
        assert_eq!(revision_tag(None, digest), "build-0123456789ab");
        assert_eq!(dirty.label(), format!("{}-dirty", "a".repeat(40)));
    }

    #[test]
    fn the_same_inputs_give_the_same_digest_and_tar() {
        let make = || {
            let mut context = Context { dockerfile: "FROM scratch\n".to_owned(), ..Context::default() };
            context.file(Path::new("/usr/local/bin/tool"), b"binary".to_vec(), 0o755);
            context.owned_directory(Path::new("/app/uploads"));
            context
        };
        assert_eq!(make().digest("a/b"), make().digest("a/b"));
        assert_ne!(make().digest("a/b"), make().digest("a/c"));
        assert_eq!(make().tar().unwrap(), make().tar().unwrap());
    }
}
