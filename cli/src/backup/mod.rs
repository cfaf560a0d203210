//! Backups of the stack's data on restic: what a component is, the figures a restore must
//! reproduce, and the scratch objects a drill creates.
//!
//! Four components hold what MasStock cannot regenerate: `redis` (the queue), `uploads` (result
//! images), `n8n` (its SQLite and files) and `postgres` (the managed database). Each is stored as
//! one file in a restic snapshot of its own, streamed through restic's standard input:
//! `redis/dump.rdb`, `uploads.tar`, `n8n.tar`, `postgres.dump` (`Component::filename`).
//!
//! Each component module has the same four functions:
//! - `capture(target, sink) -> Figures`: writes a consistent copy into `sink` (restic's stdin)
//!   and returns the figures of *that copy*;
//! - `put_back(target, source)`: replaces the live data with `source` (a `restic dump`), the
//!   services that use it stopped by the caller;
//! - `measure(target) -> Figures`: the figures of the live data, after a restore;
//! - `drill(target, scratch, source) -> Figures`: loads `source` into scratch objects it
//!   registers in `scratch` and returns their figures.

pub mod postgres;
pub mod redis;
pub mod status;
pub mod volume;

use std::collections::BTreeMap;
use std::fmt;

use bollard::Docker;

use crate::config::Stack;
use crate::report::Reporter;

/// A part of the stack's data that is backed up on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Redis,
    Uploads,
    N8n,
    Postgres,
}

impl Component {
    pub const ALL: [Self; 4] = [Self::Redis, Self::Uploads, Self::N8n, Self::Postgres];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Uploads => "uploads",
            Self::N8n => "n8n",
            Self::Postgres => "postgres",
        }
    }

    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|component| component.as_str() == name)
    }

    /// The one file of its snapshots (restic's `--stdin-filename`).
    #[must_use]
    pub fn filename(self) -> &'static str {
        match self {
            Self::Redis => "redis/dump.rdb",
            Self::Uploads => "uploads.tar",
            Self::N8n => "n8n.tar",
            Self::Postgres => "postgres.dump",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// What a restore must reproduce, by name: `redis.keys`, `queue.waiting`, `rows.users`,
/// `files`, `bytes`. Recorded on the snapshot as `figure:<name>=<value>` tags.
pub type Figures = BTreeMap<String, u64>;

/// What a component's functions act on.
pub struct Target<'a> {
    pub stack: &'a Stack,
    pub docker: &'a Docker,
    pub reporter: &'a dyn Reporter,
}

impl fmt::Debug for Target<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Target").field("project", &self.stack.config.project.name).finish_non_exhaustive()
    }
}

/// Why a component could not be captured, put back, measured or drilled.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error(transparent)]
    Redis(#[from] redis::Error),
    #[error(transparent)]
    Volume(#[from] volume::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
}

impl ComponentError {
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Redis(error) => error.hints(),
            Self::Volume(error) => error.hints(),
            Self::Postgres(error) => error.hints(),
        }
    }
}

/// Everything a drill created, removed by [`Scratch::remove_all`] whether the drill passed or not.
/// Names start with [`Scratch::prefix`] (`<project>-drill-<random>`), so a drill killed before
/// cleaning up leaves objects an operator (and the next drill) can recognise.
#[derive(Debug)]
pub struct Scratch {
    pub prefix: String,
    pub network: Option<String>,
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    /// Databases created on the server of `DATABASE_URL`: (an admin URL to drop it with, its name).
    pub databases: Vec<(String, String)>,
}
