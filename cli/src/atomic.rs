//! Replacing a file so that readers see the old contents or the new ones, never a mix, and the
//! change survives a crash: temporary file beside the target, fsync, rename, fsync of the folder.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` with exactly `mode`, whatever the umask. A symlink is written through to its target, and an
/// existing file keeps its owner. The folder must exist.
#[allow(clippy::disallowed_methods)] // Every caller names `path` in its own error; fs_err's would name it twice.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let target = match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => std::fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let folder = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let previous_owner = std::fs::metadata(&target).ok().map(|metadata| (metadata.uid(), metadata.gid()));
    let mut random = [0; 8];
    getrandom::fill(&mut random).map_err(|error| std::io::Error::other(error.to_string()))?;
    let suffix = crate::secrets::hex(&random);
    let file_name = target.file_name().map_or_else(|| "file".into(), |name| name.to_string_lossy().into_owned());
    let temporary = folder.join(format!(".{file_name}.{suffix}.tmp"));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&temporary)?;
        // `mode` above is masked by the umask; the file gets exactly `mode`.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        if let Some((uid, gid)) = previous_owner {
            std::os::unix::fs::chown(&temporary, Some(uid), Some(gid))?;
        }
        std::fs::rename(&temporary, &target)?;
        // The rename is durable once the folder itself is on disk.
        std::fs::File::open(&folder)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}
