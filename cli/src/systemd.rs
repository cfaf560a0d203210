//! systemd on this host: whether it runs, where it loads units from, writing unit files, and
//! asking `systemctl` to load and enable them. `certs install-timer` and `backup install-timer`
//! both go through here, so a timer is installed, and its failures explained, one way.
//!
//! Units are written before systemctl is asked anything (atomically, mode 0644), so a host where
//! systemctl fails still has them. When `daemon-reload` or `enable` fails, [`SystemctlError`]
//! quotes systemctl; where systemd is not PID 1 (a container, a chroot: no
//! [`SYSTEMD_RUNTIME_DIR`], or systemctl says so) its hint points at `--no-enable`, and where
//! there is no systemctl at all, at cron with the command the timer would have run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a running systemd leaves its mark (`sd_booted(3)`).
pub const SYSTEMD_RUNTIME_DIR: &str = "/run/systemd/system";

/// The folders of the system unit search path (`systemd.unit(5)`) a unit may be written to.
const SYSTEMD_UNIT_DIRS: [&str; 4] =
    ["/etc/systemd/system", SYSTEMD_RUNTIME_DIR, "/usr/lib/systemd/system", "/lib/systemd/system"];

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

/// The timer of `backup install-timer` that runs `backup`.
pub const BACKUP_TIMER_UNIT: &str = "masstock-backup.timer";
/// The timer of `backup install-timer` that runs `restore --drill`.
pub const DRILL_TIMER_UNIT: &str = "masstock-drill.timer";

/// Why unit files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("failed to create `{}`: {error}", dir.display())]
    Folder { dir: PathBuf, error: std::io::Error },
    #[error("failed to write `{}`: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
}

impl UnitError {
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
#[allow(clippy::disallowed_methods)] // `UnitError::Folder` names the path; fs_err's would name it twice.
pub fn create_unit_dir(dir: &Path) -> Result<(), UnitError> {
    std::fs::create_dir_all(dir).map_err(|error| UnitError::Folder { dir: dir.to_path_buf(), error })
}

/// Writes one unit file atomically into `dir`, mode 0644, and answers its path.
pub fn write_unit(dir: &Path, name: &Path, contents: &str) -> Result<PathBuf, UnitError> {
    let path = dir.join(name);
    crate::atomic::write_file(&path, contents.as_bytes(), 0o644)
        .map_err(|error| UnitError::Write { path: path.clone(), error })?;
    Ok(path)
}

/// Timers being installed: their unit names, and what to run from cron where systemd is absent.
#[derive(Debug, Clone, Copy)]
pub struct Timers<'a> {
    /// `masstock-certs.timer`, or `masstock-backup.timer` and `masstock-drill.timer`.
    pub units: &'a [&'a str],
    /// The command and its cadence, for a host without systemd: "`masstockctl certs renew` twice
    /// a day".
    pub cron_fallback: &'a str,
}

impl Timers<'_> {
    /// The systemctl invocations that load and start them, in order.
    #[must_use]
    pub fn enable_commands(&self) -> Vec<Vec<&str>> {
        let mut enable = vec!["enable", "--now"];
        enable.extend_from_slice(self.units);
        vec![vec!["daemon-reload"], enable]
    }

    fn noun(&self) -> &'static str {
        if self.units.len() == 1 {
            "timer"
        } else {
            "timers"
        }
    }
}

/// Why systemctl did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum SystemctlError {
    /// systemctl ran and refused; `stderr` is its own words.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String, no_systemd: bool, units: Vec<String> },
    #[error(
        "`systemctl` was not found: this host does not run systemd, so the {noun} cannot be enabled (`{command}`)"
    )]
    Missing { command: String, noun: &'static str, cron_fallback: String },
    #[error("failed to run `{command}`: {error}")]
    Spawn { command: String, error: std::io::Error },
}

impl SystemctlError {
    /// What the operator can do, as `hint:` lines.
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            // systemd not PID 1 (a container, a chroot): `--no-enable` is the way. Elsewhere
            // systemctl's own words say what to do (permissions, a unit it refuses).
            Self::Failed { no_systemd: true, units, .. } => {
                let noun = if units.len() == 1 { "the timer" } else { "the timers" };
                vec![format!(
                    "the units are written; systemd does not run here, so `--no-enable` writes them without \
                     asking systemctl, and `systemctl enable --now {}` starts {noun} once it does",
                    units.join(" ")
                )]
            }
            Self::Failed { .. } | Self::Spawn { .. } => Vec::new(),
            Self::Missing { cron_fallback, .. } => {
                vec![format!("the units are written; on a host without systemd, run {cron_fallback} from cron instead")]
            }
        }
    }
}

/// Runs `systemctl <arguments>` for `timers`; its standard error becomes the error's message.
pub fn systemctl(arguments: &[&str], timers: &Timers<'_>) -> Result<(), SystemctlError> {
    let command = format!("systemctl {}", arguments.join(" "));
    match Command::new("systemctl").args(arguments).output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            let no_systemd = stderr.contains("not been booted with systemd") || !systemd_runs();
            Err(SystemctlError::Failed {
                command,
                status: output.status.to_string(),
                stderr,
                no_systemd,
                units: timers.units.iter().map(|unit| (*unit).to_owned()).collect(),
            })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(SystemctlError::Missing {
            command,
            noun: timers.noun(),
            cron_fallback: timers.cron_fallback.to_owned(),
        }),
        Err(error) => Err(SystemctlError::Spawn { command, error }),
    }
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
    fn hints_name_every_timer_and_the_cron_fallback() {
        let timers = Timers { units: &["a.timer", "b.timer"], cron_fallback: "`masstockctl backup` daily" };
        assert_eq!(timers.enable_commands(), [vec!["daemon-reload"], vec!["enable", "--now", "a.timer", "b.timer"]]);
        let failed = SystemctlError::Failed {
            command: "systemctl daemon-reload".into(),
            status: "exit status: 1".into(),
            stderr: "System has not been booted with systemd as init system (PID 1). Can't operate.".into(),
            no_systemd: true,
            units: vec!["a.timer".into(), "b.timer".into()],
        };
        assert!(failed.hints()[0].ends_with("`systemctl enable --now a.timer b.timer` starts the timers once it does"));
        let missing = SystemctlError::Missing {
            command: "systemctl daemon-reload".into(),
            noun: timers.noun(),
            cron_fallback: timers.cron_fallback.into(),
        };
        assert_eq!(
            missing.to_string(),
            "`systemctl` was not found: this host does not run systemd, so the timers cannot be enabled (`systemctl daemon-reload`)"
        );
        assert_eq!(
            missing.hints(),
            ["the units are written; on a host without systemd, run `masstockctl backup` daily from cron instead"]
        );
    }
}

/// Why units could not be installed: written, or enabled.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error(transparent)]
    Systemctl(#[from] SystemctlError),
}

/// Writes `units` into `dir` (created when missing) and, with `enable`, runs `timers`'
/// `daemon-reload` and `enable --now`; says each step through `reporter`. The paths written.
pub fn install(
    dir: &Path,
    units: &[crate::render::RenderedFile],
    timers: &Timers<'_>,
    enable: bool,
    reporter: &dyn crate::report::Reporter,
) -> Result<Vec<PathBuf>, InstallError> {
    create_unit_dir(dir)?;
    let mut written = Vec::new();
    for unit in units {
        let path = write_unit(dir, &unit.path, &unit.contents)?;
        reporter.step(&format!("wrote `{}`", path.display()));
        written.push(path);
    }
    if enable {
        for arguments in timers.enable_commands() {
            systemctl(&arguments, timers)?;
            reporter.step(&format!("ran `systemctl {}`", arguments.join(" ")));
        }
    }
    Ok(written)
}
