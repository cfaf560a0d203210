//! What goes into an image: the build context (a Dockerfile, `rootfs/` and `owned/`), written
//! as a tar with fixed owners and times so the same inputs give the same bytes and digest; the
//! shared libraries a binary needs (from `ldd`); and the files of a host Debian package.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

use super::{ImageError, REDIS_UID, SERVICE_UID};

/// What goes into an image: a Dockerfile, `rootfs/` copied as root and `owned/` copied as the
/// image's user. Written as a tar with fixed owners and times, so the same inputs give the same
/// bytes and the same digest.
#[derive(Debug, Default)]
pub(super) struct Context {
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
    fn host_file(&mut self, host: &Path, path: &Path, mode: u32) -> Result<(), ImageError> {
        let contents = fs_err::read(host).map_err(ImageError::Io)?;
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
    fn executable_with_libraries(&mut self, host: &Path, path: &Path) -> Result<(), ImageError> {
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
    fn base_files(&mut self, user: &str, uid: u32, home: &str) -> Result<(), ImageError> {
        let passwd = format!("root:x:0:0:root:/root:/sbin/nologin\n{user}:x:{uid}:{uid}:{user}:{home}:/sbin/nologin\n");
        let group = format!("root:x:0:\n{user}:x:{uid}:\n");
        self.file(Path::new("/etc/passwd"), passwd.into_bytes(), 0o644);
        self.file(Path::new("/etc/group"), group.into_bytes(), 0o644);
        let bundle = Path::new(CA_BUNDLE);
        if !bundle.is_file() {
            return Err(ImageError::NoCaBundle(CA_BUNDLE));
        }
        self.host_file(bundle, bundle, 0o644)?;
        self.rootfs.insert(PathBuf::from("tmp"), Entry::Directory { mode: 0o1777 });
        Ok(())
    }

    pub(super) fn size(&self) -> usize {
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
    pub(super) fn tar(&self) -> std::io::Result<Vec<u8>> {
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
    pub(super) fn digest(&self, repository: &str) -> String {
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
pub(super) fn binary_context(binary: &str, host_binary: &Path, assets: Option<&Path>) -> Result<Context, ImageError> {
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
fn add_assets(context: &mut Context, folder: &Path, target: &Path) -> Result<(), ImageError> {
    let entries = fs_err::read_dir(folder).map_err(ImageError::Assets)?;
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
pub(super) struct PackageContext {
    pub(super) context: Context,
    /// `redis-server=5:7.0.15-1~deb12u1,redis-tools=…`
    pub(super) versions: String,
}

/// The image of a Debian package installed on this host: the executables of the package and of
/// the installed packages built from the same source that it depends on (redis-server brings
/// redis-tools, so redis-cli), with their libraries, plus `/bin/sh` and `grep` for the shell
/// commands deploy.toml runs (`sh -c "exec redis-server …"`, `redis-cli … | grep -q PONG`).
pub(super) fn host_package_context(package: &str) -> Result<PackageContext, ImageError> {
    let missing = || ImageError::PackageMissing(package.to_owned());
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
            .map_err(|error| ImageError::DpkgNotRun { package: name.clone(), error })?;
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let path = Path::new(line);
            let in_bin = path.parent().is_some_and(|parent| {
                ["/usr/bin", "/usr/sbin", "/bin", "/sbin"].iter().any(|folder| parent == Path::new(folder))
            });
            if !in_bin {
                continue;
            }
            let metadata = fs_err::symlink_metadata(path).map_err(ImageError::Io)?;
            if metadata.file_type().is_symlink() {
                let target = fs_err::read_link(path).map_err(ImageError::Io)?;
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
fn host_tool(name: &str) -> Result<PathBuf, ImageError> {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|folder| Path::new(folder).join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| ImageError::NoHostTool(name.to_owned()))
}

/// The shared libraries `ldd` says `binary` loads, the dynamic loader included; none for a static
/// binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|error| ImageError::LddNotRun { binary: binary.to_path_buf(), error })?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // `not a dynamic executable`: nothing to copy.
        return Ok(Vec::new());
    }
    let mut libraries = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("=> not found") {
            return Err(ImageError::MissingLibrary { binary: binary.to_path_buf(), line: line.to_owned() });
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

/// The Debian package the backup helper image is made from.
pub(super) const BUSYBOX_PACKAGE: &str = "busybox-static";
const BUSYBOX: &str = "/bin/busybox";
/// `nobody`: the helper image's default user.
pub(super) const NOBODY_UID: u32 = 65534;

/// The backup helper's image: the host's static busybox (`tar`, `find`, `rm`, … in one binary
/// that loads no library) as its entry point, `/etc/passwd` with root and nobody, `/tmp`, and
/// nothing else. It runs as nobody unless its container says otherwise.
pub(super) fn busybox_context() -> Result<PackageContext, ImageError> {
    let missing = || ImageError::PackageMissing(BUSYBOX_PACKAGE.to_owned());
    let status = dpkg_query(BUSYBOX_PACKAGE, "${db:Status-Status}\t${Version}").ok_or_else(missing)?;
    let (state, version) = status.split_once('\t').unwrap_or((status.as_str(), ""));
    if state != "installed" || !Path::new(BUSYBOX).is_file() {
        return Err(missing());
    }
    let mut context = Context::default();
    context.host_file(Path::new(BUSYBOX), Path::new(BUSYBOX), 0o755)?;
    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:{NOBODY_UID}:{NOBODY_UID}:nobody:/nonexistent:/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nnogroup:x:{NOBODY_UID}:\n");
    context.file(Path::new("/etc/passwd"), passwd.into_bytes(), 0o644);
    context.file(Path::new("/etc/group"), group.into_bytes(), 0o644);
    context.directory(Path::new("/tmp"), 0o1777);
    context.dockerfile = format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         USER {NOBODY_UID}:{NOBODY_UID}\n\
         ENTRYPOINT [\"{BUSYBOX}\"]\n"
    );
    Ok(PackageContext { context, versions: format!("{BUSYBOX_PACKAGE}={version}") })
}

#[cfg(test)]
mod tests {
    use super::*;

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
