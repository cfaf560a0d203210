//! Secrets as files: what a service's `${NAME}` references reach its container as, instead of
//! environment values that `docker inspect`, `docker-compose config` and the engine's state on
//! disk would show.
//!
//! Every variable of a service's `env` whose value holds a `${…}` reference becomes a file
//! `/run/secrets/<VARIABLE>` holding the whole resolved value (`REDIS_URL`'s file holds the whole
//! URL), and the container's environment gets `<VARIABLE>_FILE=/run/secrets/<VARIABLE>` instead.
//! Our services read `NAME_FILE` before `NAME` (`masstock_kit::config::read_secret_files`); redis's
//! command and health check read the file with the shell, n8n reads its `_FILE` variables itself.
//!
//! # On the host
//!
//! `<state_dir>/secrets/<project>/` (0700, the operator's, like `<state_dir>/secrets/`; per project,
//! since projects may share a `state_dir`) holds a folder per service (0700), and in it a folder
//! per *version*: the first 32 hex digits of a sha256 over the project's version key, the owner
//! and every `NAME=value`. The key ([`version_key`], `<state_dir>/secrets/<project>/.version-key`,
//! 32 random bytes made on first use, 0600) keeps a version from saying anything about the
//! secrets: versions name folders and, through the env hash, reach the containers' labels, and a
//! plain hash of a guessable password could be checked offline by anyone who can run
//! `docker inspect`. Losing the key costs one recreation of the services with secrets. A version folder is 0500 and its files 0400, all owned by the service's user, so
//! inside the container that user alone can list and read them; it is bind-mounted read-only at
//! `/run/secrets`. The container sees only its own version: a start-first standby and the
//! container it replaces, or the container a failed replacement is rolled back to, each keep
//! theirs. Secrets are never in an image nor a build context.
//!
//! A version is written into a temporary folder beside it (`.<version>.<random>.tmp`, each file
//! through [`crate::atomic::write_file`]), then renamed into place and the parent synced: a
//! version folder is complete or absent. Its name covers its content, so an existing one is kept
//! as it is. A deploy interrupted halfway leaves the running containers' folders untouched: only
//! [`remove_unused`], run after a deploy, removes versions (and leftover temporary folders) that no
//! container of the project mounts any more, the one `current` points to excepted.
//!
//! `<service>/current` is a symlink to the version deploy installed last: the rendered compose
//! file mounts it, so plain `docker-compose` starts the services with the files deploy wrote.
//! A container started that way mounts the link, not a version: the next deploy that moves
//! `current` removes the version it pointed to, so such a container must be recreated with it.
//!
//! # The service's user
//!
//! The owner of the files is the service's `user` in deploy.toml when set (it is also the
//! container's user), else the image's `Config.User` when numeric (`10001` or `10001:10001`: our
//! images), root when the image names none. A named user (n8n's `node`) has no uid we could read
//! without running the image, so it needs a numeric `user` in deploy.toml ([`OwnerError`]).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::config::Stack;

/// Where the files are in the container.
pub const TARGET: &str = "/run/secrets";

/// The symlink to the version deploy installed last, in each service's folder.
pub const CURRENT: &str = "current";

/// A service's secrets as files, resolved (the values are held, never shown: `Debug` names them).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretFiles {
    /// `<state_dir>/secrets/<project>/<service>/<version>`.
    pub folder: PathBuf,
    /// The owner of the folder and its files.
    pub uid: u32,
    /// The first 32 hex digits of a sha256 over the version key, `uid` and the files: the
    /// folder's name.
    pub version: String,
    /// Whether `version` is keyed: files are installed only under a keyed version.
    keyed: bool,
    files: BTreeMap<String, String>,
}

#[allow(clippy::missing_fields_in_debug, reason = "the files hold secret values; only names are shown")]
impl std::fmt::Debug for SecretFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFiles")
            .field("folder", &self.folder)
            .field("uid", &self.uid)
            .field("names", &self.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why writing or cleaning up the secret files failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretFilesError {
    #[error("failed to write the secret files of `{service}` in `{}`", .folder.display())]
    Write {
        service: String,
        folder: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read or make the secret files' version key `{}`", .path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to remove the unused secret files `{}`", .folder.display())]
    Remove {
        folder: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why the owner of a service's secret files cannot be known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the image of `{service}` runs as the named user `{user}`, whose uid the secret files need\nhint: set its uid as `user` under `[services.{service}]` in deploy.toml (n8n's `node` is 1000)")]
pub struct OwnerError {
    pub service: String,
    pub user: String,
}

/// The uid that owns `service`'s secret files: deploy.toml's `user`, else the image's
/// `Config.User` when numeric, root when empty.
pub fn owner(service: &str, declared: Option<u32>, image_user: Option<&str>) -> Result<u32, OwnerError> {
    if let Some(uid) = declared {
        return Ok(uid);
    }
    let user = image_user.unwrap_or_default().trim();
    if user.is_empty() {
        return Ok(0);
    }
    let name = user.split_once(':').map_or(user, |(name, _)| name);
    name.parse().map_err(|_| OwnerError { service: service.to_owned(), user: user.to_owned() })
}

/// `<state_dir>/secrets/<project>`: what this project's deploys write and clean up.
#[must_use]
pub fn root(stack: &Stack) -> PathBuf {
    stack.config.project.state_dir.join("secrets").join(&stack.config.project.name)
}

/// `<state_dir>/secrets/<project>/<service>`.
#[must_use]
pub fn service_folder(stack: &Stack, service: &str) -> PathBuf {
    root(stack).join(service)
}

/// The file holding the project's version key, in [`root`].
const VERSION_KEY: &str = ".version-key";

/// The project's version key (see the module's docs), `None` before the first deploy made it
/// ([`ensure_version_key`]): `deploy --plan` reads it and writes nothing.
#[allow(clippy::disallowed_methods)] // `SecretFilesError::Key` names the file.
pub fn version_key(stack: &Stack) -> Result<Option<String>, SecretFilesError> {
    let path = root(stack).join(VERSION_KEY);
    match std::fs::read_to_string(&path) {
        Ok(key) if key.trim().len() == 64 && key.trim().bytes().all(|byte| byte.is_ascii_hexdigit()) => {
            Ok(Some(key.trim().to_owned()))
        }
        Ok(_) => Err(SecretFilesError::Key {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not 64 hex digits"),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SecretFilesError::Key { path, source }),
    }
}

/// Makes the project's version key unless it exists, before a deploy or a rollback plans: written
/// to a temporary file, then linked into place, so two processes racing for it agree on the first
/// one's.
#[allow(clippy::disallowed_methods)] // `SecretFilesError::Key` names the file.
pub fn ensure_version_key(stack: &Stack) -> Result<(), SecretFilesError> {
    if version_key(stack)?.is_some() {
        return Ok(());
    }
    let root = root(stack);
    let path = root.join(VERSION_KEY);
    let error = |source| SecretFilesError::Key { path: path.clone(), source };
    private_folder(root.parent().unwrap_or(&root)).map_err(error)?;
    private_folder(&root).map_err(error)?;
    let mut random = [0; 32];
    getrandom::fill(&mut random).map_err(|failure| error(std::io::Error::other(failure.to_string())))?;
    let temporary = root.join(format!("{VERSION_KEY}.{}.tmp", crate::secrets::hex(&random[..8])));
    crate::atomic::write_file(&temporary, crate::secrets::hex(&random).as_bytes(), 0o600).map_err(error)?;
    let linked = std::fs::hard_link(&temporary, &path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Err(failure) if failure.kind() != std::io::ErrorKind::AlreadyExists => Err(error(failure)),
        _ => Ok(()),
    }
}

impl SecretFiles {
    /// The files `files` (variable → resolved value) of `service`, owned by `uid`, versioned
    /// with `key` ([`version_key`]; `None` only for a `--plan` before the first deploy, and such
    /// files are never installed).
    #[must_use]
    pub fn new(stack: &Stack, service: &str, uid: u32, files: BTreeMap<String, String>, key: Option<&str>) -> Self {
        let keyed = key.is_some();
        let mut content = format!("key {}\nuid {uid}\n", key.unwrap_or_default());
        for (name, value) in &files {
            content.push_str(name);
            content.push('\0');
            content.push_str(value);
            content.push('\0');
        }
        let mut version = crate::deploy::spec::sha256_hex(content.as_bytes());
        version.truncate(32);
        let folder = service_folder(stack, service).join(&version);
        Self { folder, uid, version, keyed, files }
    }

    /// The variables, each a file of the same name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Writes the version folder unless it exists (see the module's docs), and points the
    /// service's `current` at it.
    pub fn install(&self, service: &str) -> Result<(), SecretFilesError> {
        let error =
            |source| SecretFilesError::Write { service: service.to_owned(), folder: self.folder.clone(), source };
        if !self.keyed {
            return Err(error(std::io::Error::other("no version key: `ensure_version_key` runs before planning")));
        }
        let parent = self.folder.parent().map(Path::to_path_buf).unwrap_or_default();
        let root = parent.parent().unwrap_or(&parent);
        private_folder(root.parent().unwrap_or(root)).map_err(error)?;
        private_folder(root).map_err(error)?;
        private_folder(&parent).map_err(error)?;
        if !self.folder.is_dir() {
            self.write_version(&parent).map_err(error)?;
        }
        self.point_current(&parent).map_err(error)
    }

    #[allow(clippy::disallowed_methods)] // `SecretFilesError` names the folder.
    fn write_version(&self, parent: &Path) -> std::io::Result<()> {
        let mut random = [0; 8];
        getrandom::fill(&mut random).map_err(|error| std::io::Error::other(error.to_string()))?;
        let temporary = parent.join(format!(".{}.{}.tmp", self.version, crate::secrets::hex(&random)));
        std::fs::DirBuilder::new().mode(0o700).create(&temporary)?;
        let written = (|| {
            for (name, value) in &self.files {
                let path = temporary.join(name);
                crate::atomic::write_file(&path, value.as_bytes(), 0o400)?;
                std::os::unix::fs::chown(&path, Some(self.uid), Some(self.uid))?;
            }
            std::os::unix::fs::chown(&temporary, Some(self.uid), Some(self.uid))?;
            std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o500))?;
            std::fs::rename(&temporary, &self.folder)?;
            std::fs::File::open(parent)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&temporary);
        }
        written
    }

    /// `<service>/current` → this version, replaced atomically (a new link, then a rename).
    #[allow(clippy::disallowed_methods)] // `SecretFilesError` names the folder.
    fn point_current(&self, parent: &Path) -> std::io::Result<()> {
        let current = parent.join(CURRENT);
        if std::fs::read_link(&current).is_ok_and(|target| target == Path::new(&self.version)) {
            return Ok(());
        }
        let temporary = parent.join(format!(".{CURRENT}.{}.tmp", self.version));
        let _ = std::fs::remove_file(&temporary);
        std::os::unix::fs::symlink(&self.version, &temporary)?;
        std::fs::rename(&temporary, &current)?;
        std::fs::File::open(parent)?.sync_all()
    }
}

/// Creates `folder` 0700 when absent (the operator's own: containers see only the version
/// folders mounted for them).
#[allow(clippy::disallowed_methods)] // The caller's error names the folder.
fn private_folder(folder: &Path) -> std::io::Result<()> {
    if !folder.is_dir() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(folder)?;
    }
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
}

/// Removes every version folder (and temporary leftover) under [`root`] that is
/// neither in `mounted` (the host paths the project's containers mount, whatever their state)
/// nor a service's `current`; returns what it removed.
#[allow(clippy::disallowed_methods)] // `SecretFilesError` names the folder.
pub fn remove_unused(stack: &Stack, mounted: &BTreeSet<PathBuf>) -> Result<Vec<PathBuf>, SecretFilesError> {
    let mut removed = Vec::new();
    let Ok(services) = std::fs::read_dir(root(stack)) else { return Ok(removed) };
    for service in services.flatten() {
        let service_folder = service.path();
        if service.file_name().to_string_lossy().starts_with(&format!("{VERSION_KEY}.")) {
            std::fs::remove_file(&service_folder)
                .map_err(|source| SecretFilesError::Remove { folder: service_folder.clone(), source })?;
            removed.push(service_folder);
            continue;
        }
        let current = std::fs::read_link(service_folder.join(CURRENT)).ok();
        let Ok(entries) = std::fs::read_dir(&service_folder) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let keep = name == CURRENT
                || current.as_deref().is_some_and(|current| current == Path::new(&name))
                || mounted.contains(&path);
            if keep {
                continue;
            }
            let result = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            result.map_err(|source| SecretFilesError::Remove { folder: path.clone(), source })?;
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    fn stack_in(state_dir: &Path) -> Stack {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml");
        let mut stack = Stack::load(&path, "production").expect("the shipped deploy.toml is valid");
        stack.config.project.state_dir = state_dir.to_path_buf();
        stack
    }

    const KEY: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn files(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("JWT_SECRET".to_owned(), value.to_owned())])
    }

    #[test]
    fn the_version_key_is_made_once_private_and_keys_the_version() {
        let state = tempfile::tempdir().unwrap();
        let stack = stack_in(state.path());
        assert_eq!(version_key(&stack).unwrap(), None, "read only");
        assert!(!root(&stack).exists(), "nothing written by reading");
        ensure_version_key(&stack).unwrap();
        let key = version_key(&stack).unwrap().unwrap();
        assert_eq!(key.len(), 64);
        ensure_version_key(&stack).unwrap();
        assert_eq!(version_key(&stack).unwrap().unwrap(), key, "made once, then read");
        let metadata = fs_err::metadata(root(&stack).join(VERSION_KEY)).unwrap();
        assert_eq!(metadata.mode() & 0o777, 0o600);
        assert_eq!(fs_err::metadata(root(&stack)).unwrap().mode() & 0o777, 0o700);
        let other = tempfile::tempdir().unwrap();
        let other = stack_in(other.path());
        ensure_version_key(&other).unwrap();
        assert_ne!(version_key(&other).unwrap().unwrap(), key, "random per project and host");
        let versioned = |key: &str| SecretFiles::new(&stack, "api", 10001, files("guessable"), Some(key)).version;
        assert_ne!(versioned(&key), versioned(KEY), "the same secrets under another key give another version");
        let unkeyed = SecretFiles::new(&stack, "api", 10001, files("guessable"), None);
        assert!(unkeyed.install("api").is_err(), "an unkeyed version is never written");
    }

    #[test]
    fn the_owner_is_declared_or_the_images_numeric_user_or_root() {
        assert_eq!(owner("n8n", Some(1000), Some("node")), Ok(1000));
        assert_eq!(owner("api", None, Some("10001:10001")), Ok(10001));
        assert_eq!(owner("redis", None, Some("999")), Ok(999));
        assert_eq!(owner("redis", None, Some("")), Ok(0));
        assert_eq!(owner("redis", None, None), Ok(0));
        let error = owner("n8n", None, Some("node")).unwrap_err();
        assert!(error.to_string().contains("`node`") && error.to_string().contains("`user`"), "{error}");
    }

    #[test]
    fn a_version_is_written_once_private_and_cleaned_up_when_unused() {
        let state = tempfile::tempdir().unwrap();
        let stack = stack_in(state.path());
        let first = SecretFiles::new(&stack, "api", 10001, files("first-value"), Some(KEY));
        first.install("api").unwrap();
        let mode = |path: &Path| fs_err::symlink_metadata(path).unwrap().mode() & 0o7777;
        let owner = |path: &Path| fs_err::symlink_metadata(path).unwrap().uid();
        assert_eq!(mode(&state.path().join("secrets")), 0o700);
        assert_eq!(mode(&root(&stack)), 0o700);
        assert!(root(&stack).ends_with("secrets/masstock"), "one folder per project");
        assert_eq!(mode(&service_folder(&stack, "api")), 0o700);
        assert_eq!((mode(&first.folder), owner(&first.folder)), (0o500, 10001));
        let file = first.folder.join("JWT_SECRET");
        assert_eq!((mode(&file), owner(&file)), (0o400, 10001));
        assert_eq!(fs_err::read_to_string(&file).unwrap(), "first-value");
        assert!(!format!("{first:?}").contains("first-value"), "Debug names the files only");

        let second = SecretFiles::new(&stack, "api", 10001, files("second-value"), Some(KEY));
        assert_ne!(first.version, second.version, "the version covers the content");
        assert_ne!(
            first.version,
            SecretFiles::new(&stack, "api", 1000, files("first-value"), Some(KEY)).version,
            "and the owner"
        );
        second.install("api").unwrap();
        let current = service_folder(&stack, "api").join(CURRENT);
        assert_eq!(fs_err::read_link(&current).unwrap(), Path::new(&second.version));
        // A leftover of an interrupted write goes too.
        fs_err::create_dir(service_folder(&stack, "api").join(".leftover.tmp")).unwrap();

        // The first one is still mounted (the container being replaced): kept.
        let removed = remove_unused(&stack, &BTreeSet::from([first.folder.clone()])).unwrap();
        assert_eq!(removed, [service_folder(&stack, "api").join(".leftover.tmp")]);
        assert!(first.folder.is_dir() && second.folder.is_dir());
        // Once nothing mounts it, it goes; `current`'s target stays.
        let removed = remove_unused(&stack, &BTreeSet::new()).unwrap();
        assert_eq!(removed, std::slice::from_ref(&first.folder));
        assert!(!first.folder.exists() && second.folder.is_dir() && current.exists());
    }
}
