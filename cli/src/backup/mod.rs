//! Backups of the stack's data on restic: what a component is, the figures a restore must
//! reproduce, and the scratch objects a drill creates.
//!
//! Four components hold what MasStock cannot regenerate: `redis` (the queue), `uploads` (result
//! images), `n8n` (its `SQLite` and files) and `postgres` (the managed database). Each is stored as
//! one file in a restic snapshot of its own, streamed through restic's standard input:
//! `redis.rdb`, `uploads.tar`, `n8n.tar`, `postgres.dump` (`Component::filename`).
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
pub mod restic;
pub mod restore;
pub mod run;
pub mod status;
pub mod store;
pub mod volume;

use std::collections::BTreeMap;
use std::fmt;

use bollard::Docker;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Stack;
use crate::docker::{self, DockerError};
use crate::report::Reporter;

/// A part of the stack's data that is backed up on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Redis,
    Postgres,
    Uploads,
    N8n,
}

impl Component {
    /// In the order a run captures them (see `run::back_up`).
    pub const ALL: [Self; 4] = [Self::Redis, Self::Postgres, Self::Uploads, Self::N8n];

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
            Self::Redis => "redis.rdb",
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

/// Writes a consistent copy of `component` into `sink`; the copy's figures.
pub async fn capture(
    component: Component,
    target: &Target<'_>,
    sink: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<Figures, ComponentError> {
    Ok(match component {
        Component::Redis => redis::capture(target, sink).await?,
        Component::Uploads | Component::N8n => volume::capture(component, target, sink).await?,
        Component::Postgres => postgres::capture(target, sink).await?,
    })
}

/// Replaces `component`'s live data with `source`; its users are stopped.
pub async fn put_back(
    component: Component,
    target: &Target<'_>,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<(), ComponentError> {
    match component {
        Component::Redis => redis::put_back(target, source).await?,
        Component::Uploads | Component::N8n => volume::put_back(component, target, source).await?,
        Component::Postgres => postgres::put_back(target, source).await?,
    }
    Ok(())
}

/// The figures of `component`'s live data.
pub async fn measure(component: Component, target: &Target<'_>) -> Result<Figures, ComponentError> {
    Ok(match component {
        Component::Redis => redis::measure(target).await?,
        Component::Uploads | Component::N8n => volume::measure(component, target).await?,
        Component::Postgres => postgres::measure(target).await?,
    })
}

/// Loads `source` into scratch objects and returns their figures.
pub async fn drill(
    component: Component,
    target: &Target<'_>,
    scratch: &mut Scratch,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<Figures, ComponentError> {
    Ok(match component {
        Component::Redis => redis::drill(target, scratch, source).await?,
        Component::Uploads | Component::N8n => volume::drill(component, target, scratch, source).await?,
        Component::Postgres => postgres::drill(target, scratch, source).await?,
    })
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
    /// Writing the copy into restic, or reading it back, failed.
    #[error("the stream broke: {0}")]
    Stream(String),
}

impl ComponentError {
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Redis(error) => error.hints(),
            Self::Volume(error) => error.hints(),
            Self::Postgres(error) => error.hints(),
            Self::Stream(_) => Vec::new(),
        }
    }
}

/// Everything a drill created, removed by [`Scratch::remove_all`] whether the drill passed or not.
/// Names start with [`Scratch::prefix`] (`<project>-drill-<random>`), and every Docker object
/// carries the label `io.masstock.drill=<prefix>`, so a drill killed before cleaning up leaves
/// objects an operator (and the next drill) can recognise.
pub struct Scratch {
    pub prefix: String,
    network: Option<String>,
    containers: Vec<String>,
    volumes: Vec<String>,
    /// Databases created on the server of `DATABASE_URL`: (a URL to drop it from, its name).
    databases: Vec<(String, String)>,
}

impl fmt::Debug for Scratch {
    /// Without the databases' URLs, which hold a password.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Scratch")
            .field("prefix", &self.prefix)
            .field("network", &self.network)
            .field("containers", &self.containers)
            .field("volumes", &self.volumes)
            .field("databases", &self.databases.iter().map(|(_, name)| name).collect::<Vec<_>>())
            .finish()
    }
}

/// The label every scratch object carries, with its drill's prefix.
pub const DRILL_LABEL: &str = "io.masstock.drill";

impl Scratch {
    #[must_use]
    pub fn new(stack: &Stack) -> Self {
        let random = random_hex();
        Self {
            prefix: format!("{}-drill-{random}", stack.config.project.name),
            network: None,
            containers: Vec::new(),
            volumes: Vec::new(),
            databases: Vec::new(),
        }
    }

    /// The labels to put on a scratch object.
    #[must_use]
    pub fn labels(&self) -> std::collections::HashMap<String, String> {
        std::collections::HashMap::from([(DRILL_LABEL.to_owned(), self.prefix.clone())])
    }

    /// The drill's isolated network (internal: nothing in it reaches outside), created on first
    /// use. The host still reaches its containers' addresses, which is how figures are read.
    pub async fn network(&mut self, docker: &Docker) -> Result<String, DockerError> {
        if let Some(network) = &self.network {
            return Ok(network.clone());
        }
        let name = format!("{}-net", self.prefix);
        let request = bollard::models::NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".to_owned()),
            internal: Some(true),
            labels: Some(self.labels()),
            ..bollard::models::NetworkCreateRequest::default()
        };
        docker
            .create_network(request)
            .await
            .map_err(|error| docker::api_error(format!("failed to create network `{name}`"), &error))?;
        self.network = Some(name.clone());
        Ok(name)
    }

    /// A name for a scratch object: `<prefix>-<what>`.
    #[must_use]
    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    /// Records a container to remove (with its anonymous volumes). Record it before creating it.
    pub fn add_container(&mut self, name: String) {
        self.containers.push(name);
    }

    /// Records a volume to remove. Record it before creating it.
    pub fn add_volume(&mut self, name: String) {
        self.volumes.push(name);
    }

    /// Records a database to drop: a URL of the same server that is not that database, and its
    /// name. Record it before creating it.
    pub fn add_database(&mut self, url: String, name: String) {
        self.databases.push((url, name));
    }

    /// Removes everything recorded, containers first, and says what could not be removed (each
    /// line names the object and the reason; no secret). Objects already gone are not problems.
    pub async fn remove_all(self, docker: &Docker) -> Vec<String> {
        let mut problems = Vec::new();
        for container in &self.containers {
            let options =
                bollard::query_parameters::RemoveContainerOptionsBuilder::default().force(true).v(true).build();
            if let Err(error) = docker.remove_container(container, Some(options)).await {
                if !docker::is_not_found(&error) {
                    problems.push(format!("container `{container}`: {}", docker::engine_message(&error)));
                }
            }
        }
        for volume in &self.volumes {
            let options = bollard::query_parameters::RemoveVolumeOptionsBuilder::default().force(true).build();
            if let Err(error) = docker.remove_volume(volume, Some(options)).await {
                if !docker::is_not_found(&error) {
                    problems.push(format!("volume `{volume}`: {}", docker::engine_message(&error)));
                }
            }
        }
        if let Some(network) = &self.network {
            if let Err(error) = docker.remove_network(network).await {
                if !docker::is_not_found(&error) {
                    problems.push(format!("network `{network}`: {}", docker::engine_message(&error)));
                }
            }
        }
        for (url, database) in &self.databases {
            if let Err(problem) = drop_database(url, database).await {
                problems.push(format!("database `{database}`: {problem}"));
            }
        }
        problems
    }
}

/// `DROP DATABASE IF EXISTS … WITH (FORCE)` on the server of `url`; the reason, without the URL,
/// when it fails.
async fn drop_database(url: &str, database: &str) -> Result<(), String> {
    use sqlx::Connection as _;
    use std::str::FromStr as _;
    let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(|error| error.to_string())?;
    let mut connection = sqlx::PgConnection::connect_with(&options).await.map_err(|error| error.to_string())?;
    let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", database.replace('"', "\"\""));
    sqlx::raw_sql(&statement).execute(&mut connection).await.map_err(|error| error.to_string())?;
    connection.close().await.map_err(|error| error.to_string())
}

/// Ten random lowercase hex digits, for the names of scratch and throwaway objects.
pub(crate) fn random_hex() -> String {
    let mut bytes = [0_u8; 5];
    // The fallback only makes two drills at once more likely to collide; their objects are still
    // labelled.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        bytes[..4].copy_from_slice(&nanos.to_le_bytes());
    }
    crate::secrets::hex(&bytes)
}
