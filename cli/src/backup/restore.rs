//! Putting snapshots back: which snapshots (`choose`), onto the running stack (`restore`), or
//! into throwaway objects to prove they restore (`drill`).
//!
//! **Choosing.** `latest` is, per component, the newest complete snapshot a `backup` run took
//! (never a restore's safety copy: restoring `latest` twice gives the same data). A snapshot id
//! (or its prefix) names a run: each component comes from that run's snapshots.
//!
//! **Restore.** In an order that loses nothing:
//! 1. a safety snapshot of every component about to be replaced (kind `safety`); if one fails,
//!    nothing has changed yet and the restore stops;
//! 2. the services using them stopped, the last to start first (the worker before redis; the
//!    api and the worker for the database and the uploads);
//! 3. each snapshot put back (`restic dump` streamed into the component);
//! 4. the database's and the volumes' figures measured while nothing uses them, then the
//!    services started again in start order, each waited for until healthy, redis's figures
//!    measured as soon as it is up and before the worker starts consuming;
//! 5. every figure compared with the one recorded at backup time.
//!
//! An interruption (`interrupted` resolving: Ctrl-C at the command) stops the work where it is
//! and still starts every service that was stopped; the safety snapshots hold the data as it
//! was, and the error names them.
//!
//! **Drill.** Each snapshot is loaded into scratch objects (`Scratch`: an internal network, a
//! redis container, volumes, a database on the same server), its figures measured there and
//! compared, and every scratch object removed whatever happened. The drill's own times are what
//! a real restore of the same data would take.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::restic::{Repository, ResticError, Snapshot};
use super::store::{self, StoreError, Stored};
use super::{drill as drill_component, measure, put_back, Component, ComponentError, Figures, Scratch, Target};
use crate::deploy::{apply, spec::readiness_of, wait};
use crate::docker::{self, DockerError};

/// A snapshot picked for a component.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub component: Component,
    pub snapshot: Snapshot,
}

/// A figure recorded at backup time beside the one measured after the restore.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FigureCheck {
    pub name: String,
    pub recorded: u64,
    pub restored: Option<u64>,
    pub ok: bool,
}

impl std::fmt::Display for FigureCheck {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.restored {
            Some(restored) => {
                write!(formatter, "figure `{}`: recorded {}, restored {restored}", self.name, self.recorded)
            }
            None => {
                write!(formatter, "figure `{}`: recorded {}, not found after the restore", self.name, self.recorded)
            }
        }
    }
}

/// Each recorded figure against the measured one.
#[must_use]
pub fn compare(recorded: &Figures, restored: &Figures) -> Vec<FigureCheck> {
    recorded
        .iter()
        .map(|(name, value)| {
            let restored = restored.get(name).copied();
            FigureCheck { name: name.clone(), recorded: *value, restored, ok: restored == Some(*value) }
        })
        .collect()
}

/// Why a restore or a drill could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Restic(#[from] ResticError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("no complete snapshot of `{component}` in the repository")]
    NoSnapshot { component: Component },
    #[error("run `{run}` of snapshot `{id}` has no snapshot of `{component}`")]
    NotInRun { id: String, run: String, component: Component },
    #[error("snapshot `{id}` is incomplete: its run was interrupted before its figures were recorded")]
    Incomplete { id: String },
    #[error("the safety snapshot failed, nothing was changed: {0}")]
    Safety(StoreError),
    #[error("{component}: {error}")]
    Component { component: Component, error: ComponentError },
    #[error("{component}: reading snapshot `{snapshot}` failed: {error}")]
    Dump { component: Component, snapshot: String, error: ResticError },
    #[error("`{service}` did not become healthy again: {reason}")]
    Unhealthy { service: String, reason: String },
    #[error("interrupted{}; every stopped service was started again", safety_words(.safety))]
    Interrupted { safety: Vec<String> },
}

fn safety_words(safety: &[String]) -> String {
    if safety.is_empty() {
        " before anything was replaced".to_owned()
    } else {
        format!(": the data as it was is in safety snapshot(s) {}", safety.join(", "))
    }
}

impl RestoreError {
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Restic(error) | Self::Dump { error, .. } => error.hints(),
            Self::Docker(error) => error.hint().map(str::to_owned).into_iter().collect(),
            Self::NoSnapshot { .. } => vec!["`masstockctl backup` takes one".to_owned()],
            Self::NotInRun { .. } | Self::Incomplete { .. } => {
                vec!["`masstockctl backup ls` lists the snapshots and their runs".to_owned()]
            }
            Self::Safety(error) => error.hints(),
            Self::Component { error, .. } => error.hints(),
            Self::Unhealthy { service, .. } => vec![format!("`masstockctl logs {service}` shows why")],
            Self::Interrupted { safety } if !safety.is_empty() => vec![format!(
                "`masstockctl restore --snapshot {} COMPONENT… --yes` puts the data as it was back",
                safety[0]
            )],
            Self::Interrupted { .. } => Vec::new(),
        }
    }
}

/// The snapshots to restore: `wanted` is `latest` or a snapshot id (a prefix is enough).
/// Without components: every component of the run (`latest`: `included`).
pub async fn choose(
    repository: &Repository,
    filter: &[String],
    components: &[Component],
    wanted: &str,
) -> Result<Vec<Chosen>, RestoreError> {
    let snapshots = repository.snapshots(filter).await?;
    if wanted == "latest" {
        return components
            .iter()
            .map(|component| {
                snapshots
                    .iter()
                    .rev()
                    .find(|snapshot| {
                        snapshot.complete
                            && snapshot.tags.kind == "backup"
                            && snapshot.tags.component == Some(*component)
                    })
                    .map(|snapshot| Chosen { component: *component, snapshot: snapshot.clone() })
                    .ok_or(RestoreError::NoSnapshot { component: *component })
            })
            .collect();
    }
    let named = snapshots
        .iter()
        .find(|snapshot| snapshot.id.starts_with(wanted) || snapshot.short_id == wanted)
        .filter(|_| wanted.len() >= 4 && wanted.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| ResticError::NoSuchSnapshot {
            id: wanted.to_owned(),
            repository: repository.location().to_owned(),
        })?;
    if !named.complete {
        return Err(RestoreError::Incomplete { id: named.short_id.clone() });
    }
    let run = named.tags.run.clone();
    let in_run: Vec<&Snapshot> =
        snapshots.iter().filter(|snapshot| snapshot.tags.run == run && snapshot.complete).collect();
    let components: Vec<Component> = if components.is_empty() {
        let mut all: Vec<Component> = in_run.iter().filter_map(|snapshot| snapshot.tags.component).collect();
        all.sort();
        all.dedup();
        all
    } else {
        components.to_vec()
    };
    components
        .into_iter()
        .map(|component| {
            in_run
                .iter()
                .rev()
                .find(|snapshot| snapshot.tags.component == Some(component))
                .map(|snapshot| Chosen { component, snapshot: (*snapshot).clone() })
                .ok_or_else(|| RestoreError::NotInRun { id: named.short_id.clone(), run: run.clone(), component })
        })
        .collect()
}

/// The services that use `component`, which a restore stops.
#[must_use]
pub fn users(target: &Target<'_>, component: Component) -> Vec<String> {
    let stack = target.stack;
    let enabled = |name: &str| stack.config.services.get(name).is_some_and(|service| service.enabled);
    let mut users: Vec<String> = match component {
        // The queue's consumer and the queue itself; the api keeps taking submissions (they wait
        // in the database's outbox until Redis is back).
        Component::Redis => ["worker", "redis"].into_iter().filter(|name| enabled(name)).map(str::to_owned).collect(),
        Component::N8n => ["n8n"].into_iter().filter(|name| enabled(name)).map(str::to_owned).collect(),
        Component::Uploads => stack
            .config
            .services
            .iter()
            .filter(|(_, service)| service.enabled && service.volumes.iter().any(|volume| volume.source == "uploads"))
            .map(|(name, _)| name.clone())
            .collect(),
        Component::Postgres => stack
            .config
            .services
            .iter()
            .filter(|(_, service)| service.enabled && service.env.contains_key("DATABASE_URL"))
            .map(|(name, _)| name.clone())
            .collect(),
    };
    users.sort();
    users
}

/// The services every chosen component stops, in start order.
#[must_use]
pub fn services_to_stop(target: &Target<'_>, chosen: &[Chosen]) -> Vec<String> {
    let mut names: Vec<String> = chosen.iter().flat_map(|chosen| users(target, chosen.component)).collect();
    names.sort();
    names.dedup();
    target
        .stack
        .start_order()
        .into_iter()
        .filter(|name| names.iter().any(|wanted| wanted == name))
        .map(str::to_owned)
        .collect()
}

/// One component restored.
#[derive(Debug, Clone)]
pub struct Restored {
    pub component: Component,
    pub snapshot: Snapshot,
    pub figures: Vec<FigureCheck>,
}

impl Restored {
    #[must_use]
    pub fn ok(&self) -> bool {
        self.figures.iter().all(|figure| figure.ok)
    }
}

/// A restore's outcome.
#[derive(Debug)]
pub struct RestoreReport {
    pub safety: Vec<Stored>,
    pub restored: Vec<Restored>,
    pub seconds: f64,
}

/// Restores `chosen` onto the running stack (see the module's docs), stopping at `interrupted`.
pub async fn restore(
    target: &Target<'_>,
    repository: &Repository,
    chosen: &[Chosen],
    interrupted: impl Future<Output = ()>,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let stopped = Mutex::new(Vec::<String>::new());
    let safety = Mutex::new(Vec::<Stored>::new());
    let work = restore_steps(target, repository, chosen, &stopped, &safety);
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = interrupted => Err(RestoreError::Interrupted {
            safety: safety.lock().map(|stored| stored.iter().map(|stored| stored.snapshot.short_id.clone()).collect()).unwrap_or_default(),
        }),
    };
    // Whatever happened, what was stopped runs again.
    let left: Vec<String> = stopped.lock().map(|names| names.clone()).unwrap_or_default();
    let mut restart_error = None;
    for service in target.stack.start_order() {
        if left.iter().any(|name| name == service) {
            if let Err(error) = start(target, service).await {
                restart_error.get_or_insert(error);
            }
        }
    }
    let restored = outcome?;
    if let Some(error) = restart_error {
        return Err(error);
    }
    let safety = safety.into_inner().unwrap_or_default();
    Ok(RestoreReport { safety, restored, seconds: started.elapsed().as_secs_f64() })
}

async fn restore_steps(
    target: &Target<'_>,
    repository: &Repository,
    chosen: &[Chosen],
    stopped: &Mutex<Vec<String>>,
    safety: &Mutex<Vec<Stored>>,
) -> Result<Vec<Restored>, RestoreError> {
    let run = store::new_run();
    let identity = store::identity(target, &run, "safety").await?;
    for chosen in chosen {
        target.reporter.step(&format!("{}: safety snapshot of the live data…", chosen.component));
        let stored =
            store::store(target, repository, chosen.component, &identity).await.map_err(RestoreError::Safety)?;
        target.reporter.step(&format!("{}: safety snapshot {}", chosen.component, stored.snapshot.short_id));
        if let Ok(mut list) = safety.lock() {
            list.push(stored);
        }
    }
    let order = services_to_stop(target, chosen);
    for service in order.iter().rev() {
        target.reporter.step(&format!("{service}: stopping"));
        if let Ok(mut list) = stopped.lock() {
            list.push(service.clone());
        }
        let grace = target.stack.config.services[service]
            .stop_grace_period
            .map_or(10, |grace| i64::try_from(grace.as_secs()).unwrap_or(i64::MAX));
        apply::stop(target.docker, &target.stack.container_name(service), grace).await?;
    }
    for chosen in chosen {
        target.reporter.step(&format!("{}: putting back {}…", chosen.component, chosen.snapshot.short_id));
        put_back_from(target, repository, chosen).await?;
    }
    let mut measured: Vec<(Component, Figures)> = Vec::new();
    for chosen in chosen.iter().filter(|chosen| chosen.component != Component::Redis) {
        let figures = measure(chosen.component, target)
            .await
            .map_err(|error| RestoreError::Component { component: chosen.component, error })?;
        measured.push((chosen.component, figures));
    }
    let redis = chosen.iter().find(|chosen| chosen.component == Component::Redis);
    for service in &order {
        start(target, service).await?;
        if let Ok(mut list) = stopped.lock() {
            list.retain(|name| name != service);
        }
        if service == "redis" && redis.is_some() {
            let figures = measure(Component::Redis, target)
                .await
                .map_err(|error| RestoreError::Component { component: Component::Redis, error })?;
            measured.push((Component::Redis, figures));
        }
    }
    Ok(chosen
        .iter()
        .map(|chosen| {
            let restored = measured
                .iter()
                .find(|(component, _)| *component == chosen.component)
                .map(|(_, figures)| figures.clone())
                .unwrap_or_default();
            Restored {
                component: chosen.component,
                snapshot: chosen.snapshot.clone(),
                figures: compare(&chosen.snapshot.tags.figures, &restored),
            }
        })
        .collect())
}

async fn put_back_from(target: &Target<'_>, repository: &Repository, chosen: &Chosen) -> Result<(), RestoreError> {
    let mut dump = repository.dump(&chosen.snapshot.id, chosen.component.filename())?;
    let put = match dump.stdout() {
        Some(stdout) => put_back(chosen.component, target, stdout).await,
        None => Err(ComponentError::Stream("restic's output is not open".to_owned())),
    };
    let read = dump.finish(repository).await;
    let dump_error =
        |error| RestoreError::Dump { component: chosen.component, snapshot: chosen.snapshot.short_id.clone(), error };
    match (put, read) {
        (_, Err(error)) => Err(dump_error(error)),
        (Err(error), Ok(())) => Err(RestoreError::Component { component: chosen.component, error }),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// Starts a service's container and waits until it is healthy.
async fn start(target: &Target<'_>, service: &str) -> Result<(), RestoreError> {
    let container = target.stack.container_name(service);
    target.reporter.step(&format!("{service}: starting"));
    if let Err(error) =
        target.docker.start_container(&container, None::<bollard::query_parameters::StartContainerOptions>).await
    {
        // 304: already running.
        if !matches!(error, bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) {
            return Err(docker::api_error(format!("failed to start `{container}`"), &error).into());
        }
    }
    let waiting = target.reporter.waiting(&container);
    let ready = wait::until_ready(
        target.docker,
        &container,
        &readiness_of(&target.stack.config.services[service]),
        Duration::from_secs(180),
    )
    .await;
    waiting.finish();
    ready.map_err(|unready| RestoreError::Unhealthy { service: service.to_owned(), reason: unready.to_text() })
}

/// One component drilled.
#[derive(Debug, Clone)]
pub struct Drilled {
    pub component: Component,
    pub snapshot: Snapshot,
    pub figures: Vec<FigureCheck>,
    pub seconds: f64,
    /// Why it could not be loaded at all (a damaged repository, a load that failed).
    pub error: Option<String>,
    pub hints: Vec<String>,
}

impl Drilled {
    #[must_use]
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.figures.iter().all(|figure| figure.ok)
    }
}

/// A drill's outcome.
#[derive(Debug)]
pub struct DrillReport {
    pub drilled: Vec<Drilled>,
    /// Scratch objects that could not be removed.
    pub leftovers: Vec<String>,
    pub seconds: f64,
}

impl DrillReport {
    #[must_use]
    pub fn ok(&self) -> bool {
        self.drilled.iter().all(Drilled::ok) && self.leftovers.is_empty()
    }
}

/// Loads every chosen snapshot into scratch objects, compares the figures, removes the scratch
/// objects. Stops at `interrupted`, removing them still.
pub async fn drill(
    target: &Target<'_>,
    repository: &Repository,
    chosen: &[Chosen],
    interrupted: impl Future<Output = ()>,
) -> DrillReport {
    let started = Instant::now();
    // Held across the component's awaits, and released when an interruption drops the work, so
    // that every object registered so far is removed below.
    let scratch = tokio::sync::Mutex::new(Scratch::new(target.stack));
    let drilled = Mutex::new(Vec::new());
    let work = async {
        for chosen in chosen {
            let one = drill_one(target, repository, chosen, &scratch).await;
            if let Ok(mut list) = drilled.lock() {
                list.push(one);
            }
        }
    };
    let interrupted = tokio::select! {
        () = work => false,
        () = interrupted => true,
    };
    let scratch = scratch.into_inner();
    target.reporter.step("removing the drill's scratch objects");
    let leftovers = scratch.remove_all(target.docker).await;
    let mut drilled = drilled.into_inner().unwrap_or_default();
    if interrupted {
        if let Some(next) = chosen.get(drilled.len()) {
            drilled.push(Drilled {
                component: next.component,
                snapshot: next.snapshot.clone(),
                figures: Vec::new(),
                seconds: 0.0,
                error: Some("interrupted".to_owned()),
                hints: Vec::new(),
            });
        }
    }
    DrillReport { drilled, leftovers, seconds: started.elapsed().as_secs_f64() }
}

async fn drill_one(
    target: &Target<'_>,
    repository: &Repository,
    chosen: &Chosen,
    scratch: &tokio::sync::Mutex<Scratch>,
) -> Drilled {
    let started = Instant::now();
    target.reporter.step(&format!("{}: loading {} into scratch objects…", chosen.component, chosen.snapshot.short_id));
    let mut drilled = Drilled {
        component: chosen.component,
        snapshot: chosen.snapshot.clone(),
        figures: Vec::new(),
        seconds: 0.0,
        error: None,
        hints: Vec::new(),
    };
    let mut dump = match repository.dump(&chosen.snapshot.id, chosen.component.filename()) {
        Ok(dump) => dump,
        Err(error) => {
            drilled.hints = error.hints();
            drilled.error = Some(error.to_string());
            return drilled;
        }
    };
    let loaded = match dump.stdout() {
        Some(stdout) => drill_component(chosen.component, target, &mut *scratch.lock().await, stdout).await,
        None => Err(ComponentError::Stream("restic's output is not open".to_owned())),
    };
    let read = dump.finish(repository).await;
    match (loaded, read) {
        (_, Err(error)) => {
            drilled.hints = error.hints();
            drilled.error = Some(format!("reading the snapshot failed: {error}"));
        }
        (Err(error), Ok(())) => {
            drilled.hints = error.hints();
            drilled.error = Some(error.to_string());
        }
        (Ok(figures), Ok(())) => drilled.figures = compare(&chosen.snapshot.tags.figures, &figures),
    }
    drilled.seconds = started.elapsed().as_secs_f64();
    drilled
}
