//! The renewal timer: the systemd units that run `certs renew` twice a day, and where cron (on a
//! host without systemd) is looked at to tell whether something renews the certificates.
//! `certs install-timer` writes the units (through `crate::systemd`, as `backup install-timer`
//! does); `doctor` checks for them. The units' contents are rendered from the embedded templates
//! (`crate::render::render_certs_timer`).

use std::path::{Path, PathBuf};

/// The timer's unit name.
pub const TIMER_UNIT: &str = "masstock-certs.timer";

/// What to run from cron instead, on a host without systemd.
pub const CRON_FALLBACK: &str = "`masstockctl certs renew` twice a day";

/// The crontabs whose lines cron runs: the system's, its drop-in folder's files, the users'.
pub const CRONTAB_FILE: &str = "/etc/crontab";
pub const CRONTAB_DIRS: [&str; 2] = ["/etc/cron.d", "/var/spool/cron/crontabs"];

/// What a crontab line runs to renew the certificates.
pub const CRON_RENEW: &str = "certs renew";

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

#[cfg(test)]
mod tests {
    use super::*;

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
