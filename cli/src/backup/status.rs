//! When the last backup and the last drill ran and how they ended, kept in
//! `<state_dir>/backup/<project>.status.json` (written atomically) so that `doctor` and a monitor can judge
//! their age without asking the repository.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Stack;

/// One run of `backup` or `restore --drill`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// What it said: the snapshots stored, or why it failed.
    pub summary: String,
}

/// The last runs, and the last successful ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub last_backup: Option<Run>,
    pub last_successful_backup: Option<Run>,
    pub last_drill: Option<Run>,
    pub last_successful_drill: Option<Run>,
}

/// The file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("failed to read `{path}`: {error}")]
    Read { path: PathBuf, error: String },
    #[error("failed to write `{path}`: {error}")]
    Write { path: PathBuf, error: String },
}

/// Where the status lives.
#[must_use]
pub fn path(stack: &Stack) -> PathBuf {
    stack.config.project.state_dir.join("backup").join(format!("{}.status.json", stack.config.project.name))
}

/// The status; the default (nothing ran) when the file does not exist.
pub fn read(stack: &Stack) -> Result<Status, StatusError> {
    let path = path(stack);
    match fs_err::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|error| StatusError::Read { path, error: error.to_string() }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Status::default()),
        Err(error) => Err(StatusError::Read { path, error: error.to_string() }),
    }
}

/// What kind of run is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Backup,
    Drill,
}

/// Records a run, keeping the last successful one of its kind.
pub fn record(stack: &Stack, kind: Kind, run: Run) -> Result<Status, StatusError> {
    let mut status = read(stack)?;
    let (last, last_successful) = match kind {
        Kind::Backup => (&mut status.last_backup, &mut status.last_successful_backup),
        Kind::Drill => (&mut status.last_drill, &mut status.last_successful_drill),
    };
    if run.ok {
        *last_successful = Some(run.clone());
    }
    *last = Some(run);
    let path = path(stack);
    let write_error = |error: String| StatusError::Write { path: path.clone(), error };
    if let Some(folder) = path.parent() {
        super::restic::private_folder(folder).map_err(|error| write_error(error.to_string()))?;
    }
    let text = serde_json::to_string_pretty(&status).map_err(|error| write_error(error.to_string()))?;
    crate::atomic::write_file(&path, text.as_bytes(), 0o600).map_err(|error| write_error(error.to_string()))?;
    Ok(status)
}
