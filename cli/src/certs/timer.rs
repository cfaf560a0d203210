//! The renewal timer: the systemd units that run `certs renew` twice a day, and where systemd (or
//! cron, on a host without systemd) is looked at to tell whether something renews the
//! certificates. `certs install-timer` writes the units; `doctor` checks for them. The units'
//! contents are rendered from the embedded templates (`crate::render::render_certs_timer`).

use std::path::{Path, PathBuf};

/// The timer's unit name.
pub const TIMER_UNIT: &str = "masstock-certs.timer";

/// Where a running systemd leaves its mark (`sd_booted(3)`).
pub const SYSTEMD_RUNTIME_DIR: &str = "/run/systemd/system";

/// The folders of the system unit search path (`systemd.unit(5)`) a unit may be written to.
const SYSTEMD_UNIT_DIRS: [&str; 4] =
    ["/etc/systemd/system", SYSTEMD_RUNTIME_DIR, "/usr/lib/systemd/system", "/lib/systemd/system"];

/// The crontabs whose lines cron runs: the system's, its drop-in folder's files, the users'.
pub const CRONTAB_FILE: &str = "/etc/crontab";
pub const CRONTAB_DIRS: [&str; 2] = ["/etc/cron.d", "/var/spool/cron/crontabs"];

/// What a crontab line runs to renew the certificates.
pub const CRON_RENEW: &str = "certs renew";

/// Whether systemd runs on this host (its runtime folder is a directory).
#[must_use]
pub fn systemd_runs() -> bool {
    Path::new(SYSTEMD_RUNTIME_DIR).is_dir()
}

/// Whether systemd loads units from `folder`: one of the system unit search path's folders, the
/// two compared canonicalised when they can be (`/lib` is often `/usr/lib`).
#[must_use]
pub fn is_systemd_unit_dir(folder: &Path) -> bool {
    let canonical = |path: &Path| fs_err::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let folder = canonical(folder);
    SYSTEMD_UNIT_DIRS.iter().any(|unit_dir| canonical(Path::new(unit_dir)) == folder)
}

/// The first crontab line that runs `certs renew` (not commented out) in `files` or in the files
/// of `folders`, after the file it is in; unreadable files are skipped.
#[must_use]
pub fn cron_renewal(files: &[&Path], folders: &[&Path]) -> Option<String> {
    let in_folders = folders.iter().flat_map(|folder| {
        let mut entries: Vec<PathBuf> = fs_err::read_dir(folder)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.is_file())
            .collect();
        entries.sort();
        entries
    });
    files.iter().map(|file| file.to_path_buf()).chain(in_folders).find_map(|file| {
        let text = fs_err::read_to_string(&file).ok()?;
        let line = text.lines().map(str::trim).find(|line| !line.starts_with('#') && line.contains(CRON_RENEW))?;
        Some(format!("`{}`: `{line}`", file.display()))
    })
}

/// [`cron_renewal`] in the system's crontabs.
#[must_use]
pub fn system_cron_renewal() -> Option<String> {
    let folders: Vec<&Path> = CRONTAB_DIRS.iter().map(Path::new).collect();
    cron_renewal(&[Path::new(CRONTAB_FILE)], &folders)
}

/// Why the renewal units could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error("failed to create `{}`: {error}", dir.display())]
    Folder { dir: PathBuf, error: std::io::Error },
    #[error("failed to write `{}`: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
}

impl TimerError {
    /// What the operator can do, as `hint:` lines.
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Folder { .. } => Vec::new(),
            Self::Write { .. } => {
                vec!["installing into /etc/systemd/system needs root; `--print` shows the units instead".to_owned()]
            }
        }
    }
}

/// Creates `dir`, the folder the units go to, when it is missing.
#[allow(clippy::disallowed_methods)] // `TimerError::Folder` names the path; fs_err's would name it twice.
pub fn create_unit_dir(dir: &Path) -> Result<(), TimerError> {
    std::fs::create_dir_all(dir).map_err(|error| TimerError::Folder { dir: dir.to_path_buf(), error })
}

/// Writes one unit file atomically into `dir`, mode 0644, and answers its path.
pub fn write_unit(dir: &Path, name: &Path, contents: &str) -> Result<PathBuf, TimerError> {
    let path = dir.join(name);
    crate::atomic::write_file(&path, contents.as_bytes(), 0o644)
        .map_err(|error| TimerError::Write { path: path.clone(), error })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_unit_folders_are_known_through_links() {
        assert!(is_systemd_unit_dir(Path::new("/etc/systemd/system")));
        assert!(is_systemd_unit_dir(Path::new("/etc/systemd/system/")));
        assert!(is_systemd_unit_dir(Path::new("/lib/systemd/system")));
        assert!(is_systemd_unit_dir(Path::new(SYSTEMD_RUNTIME_DIR)));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_systemd_unit_dir(dir.path()));
        assert!(!is_systemd_unit_dir(&dir.path().join(".masstock/local/systemd")));
        if Path::new("/usr/lib/systemd/system").is_dir() {
            let link = dir.path().join("units");
            fs_err::os::unix::fs::symlink("/usr/lib/systemd/system", &link).unwrap();
            assert!(is_systemd_unit_dir(&link));
        }
    }

    #[test]
    fn a_crontab_line_counts_unless_commented_out() {
        let dir = tempfile::tempdir().unwrap();
        let crontab = dir.path().join("crontab");
        let cron_d = dir.path().join("cron.d");
        let spool = dir.path().join("crontabs");
        fs_err::create_dir(&cron_d).unwrap();
        fs_err::write(&crontab, "SHELL=/bin/sh\n# 0 0 * * * root masstockctl certs renew\n").unwrap();
        fs_err::write(cron_d.join("other"), "17 * * * * root run-parts /etc/cron.hourly\n").unwrap();
        let folders = [cron_d.as_path(), spool.as_path()];
        assert_eq!(cron_renewal(&[&crontab], &folders), None, "a comment, an absent folder");

        fs_err::write(cron_d.join("masstock"), "  0 0,12 * * * root /usr/bin/masstockctl certs renew  \n").unwrap();
        assert_eq!(
            cron_renewal(&[&crontab, &dir.path().join("absent")], &folders),
            Some(format!(
                "`{}`: `0 0,12 * * * root /usr/bin/masstockctl certs renew`",
                cron_d.join("masstock").display()
            ))
        );
    }
}
