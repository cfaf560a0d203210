//! Installing the rendered nginx site on the host: written atomically where `[edge]` says,
//! tested with `nginx -t` before any reload, and put back as it was when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Stack;

/// An `[edge]` command (`nginx -t`, the reload) that failed, with what it printed.
#[derive(Debug, thiserror::Error)]
pub enum EdgeCommandError {
    #[error("`{command}` could not run: {error}")]
    NotRun { command: String, error: std::io::Error },
    #[error("`{command}` exited with {status}: {printed}")]
    Failed { command: String, status: std::process::ExitStatus, printed: String },
}

/// Why the site was not installed, or nginx not reloaded.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("failed to read `{}`: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Folder(std::io::Error),
    #[error("failed to write `{}`: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
    #[error("failed to link `{}`: {error}", path.display())]
    Link { path: PathBuf, error: std::io::Error },
    /// `nginx -t` failed; `restored` says what became of the previous site.
    #[error("nginx refused the new site `{}`, {restored}, nginx was not reloaded:\n{failure}", site.display())]
    Refused { site: PathBuf, restored: &'static str, failure: EdgeCommandError },
    #[error("nginx could not be reloaded ({reload}) nor started: {start}")]
    NotStarted { reload: EdgeCommandError, start: EdgeCommandError },
    #[error("failed to reload nginx: {0}")]
    NotReloaded(EdgeCommandError),
}

impl EdgeError {
    /// What the operator can do about it.
    #[must_use]
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Refused { .. } => Some(
                "nginx still runs on its previous configuration; fix deploy.toml (or the certificates it names) and deploy again",
            ),
            Self::NotReloaded(_) => {
                Some("check `systemctl status nginx`; the new site is installed and `nginx -t` accepts it")
            }
            _ => None,
        }
    }
}

/// What installing the site did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteChange {
    Unchanged,
    Installed,
}

impl SiteChange {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unchanged => "unchanged",
            Self::Installed => "installed",
        }
    }
}

/// Writes `contents` as the site, tests nginx's configuration and reloads it. A failing test
/// restores the previous file (or removes the new one) and nginx is not reloaded.
#[allow(clippy::disallowed_methods)] // `EdgeError::Read` names the path; fs_err's would name it twice.
pub fn install_site(stack: &Stack, contents: &str) -> Result<SiteChange, EdgeError> {
    let edge = &stack.config.edge;
    let site = &edge.site_file;
    let previous = match std::fs::read_to_string(site) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(EdgeError::Read { path: site.clone(), error }),
    };
    if previous.as_deref() == Some(contents) {
        return Ok(SiteChange::Unchanged);
    }
    write_atomically(site, contents)?;
    let link_created = enable(stack)?;
    if let Err(failure) = run(stack, &edge.test_command) {
        let restored = match &previous {
            Some(text) => write_atomically(site, text).map(|()| "the previous site was put back"),
            None => fs_err::remove_file(site).map(|()| "the new site was removed").map_err(EdgeError::Folder),
        };
        if link_created {
            let _ = fs_err::remove_file(&edge.enabled_link);
        }
        let restored = restored.unwrap_or("and restoring the previous site failed too");
        return Err(EdgeError::Refused { site: site.clone(), restored, failure });
    }
    reload(stack)?;
    Ok(SiteChange::Installed)
}

/// Reloads nginx; when that fails and `[edge] start_command` is set, starts it.
pub fn reload(stack: &Stack) -> Result<(), EdgeError> {
    let edge = &stack.config.edge;
    match run(stack, &edge.reload_command) {
        Ok(()) => Ok(()),
        Err(reload_failure) if !edge.start_command.is_empty() => {
            run(stack, &edge.start_command).map_err(|start| EdgeError::NotStarted { reload: reload_failure, start })
        }
        Err(failure) => Err(EdgeError::NotReloaded(failure)),
    }
}

/// Creates the `sites-enabled` link when `[edge] enabled_link` asks for one; `true` when it was
/// created now.
#[allow(clippy::disallowed_methods)] // `EdgeError::Link` names the link; fs_err's would name it twice.
fn enable(stack: &Stack) -> Result<bool, EdgeError> {
    let edge = &stack.config.edge;
    if edge.enabled_link.is_empty() {
        return Ok(false);
    }
    let link = Path::new(&edge.enabled_link);
    if link.symlink_metadata().is_ok() {
        return Ok(false);
    }
    if let Some(parent) = link.parent() {
        fs_err::create_dir_all(parent).map_err(EdgeError::Folder)?;
    }
    std::os::unix::fs::symlink(&edge.site_file, link)
        .map_err(|error| EdgeError::Link { path: link.to_path_buf(), error })?;
    Ok(true)
}

/// Runs an `[edge]` command from deploy.toml's folder (its relative paths are relative to it);
/// the error holds what it printed. `certs` runs `test_command` through it too.
pub(crate) fn run(stack: &Stack, command: &[String]) -> Result<(), EdgeCommandError> {
    let Some((program, arguments)) = command.split_first() else { return Ok(()) };
    let folder = stack
        .path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let output = Command::new(program)
        .args(arguments)
        .current_dir(&folder)
        .output()
        .map_err(|error| EdgeCommandError::NotRun { command: command.join(" "), error })?;
    if output.status.success() {
        return Ok(());
    }
    let printed = String::from_utf8_lossy(&output.stderr);
    let printed = if printed.trim().is_empty() { String::from_utf8_lossy(&output.stdout) } else { printed };
    Err(EdgeCommandError::Failed {
        command: command.join(" "),
        status: output.status,
        printed: printed.trim().to_owned(),
    })
}

fn write_atomically(path: &Path, contents: &str) -> Result<(), EdgeError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent).map_err(EdgeError::Folder)?;
    // The site holds no secret, and tools other than nginx read it.
    crate::atomic::write_file(path, contents.as_bytes(), 0o644)
        .map_err(|error| EdgeError::Write { path: path.to_path_buf(), error })
}
