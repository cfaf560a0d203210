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
    #[error("interrupted")]
    Interrupted,
    #[error("snapshot prefix `{prefix}` is ambiguous: {count} snapshots start with it")]
    Ambiguous { prefix: String, count: usize },
    /// Something failed, or the restore was interrupted, once the live data may have changed:
    /// where the data as it was is, what was done about it, and what could not be started again.
    #[error("{error}{}{}{}", safety_words(.safety, *.rolled_back), rolled_back_words(.rolled_back_error.as_deref()), restart_words(.not_restarted))]
    Stopped {
        error: Box<RestoreError>,
        /// The safety snapshots' short ids.
        safety: Vec<String>,
        /// The safety snapshots were put back (the stack is as it was before the restore).
        rolled_back: bool,
        rolled_back_error: Option<String>,
        /// Services that could not be started again, with why.
        not_restarted: Vec<String>,
    },
}

fn safety_words(safety: &[String], rolled_back: bool) -> String {
    match (safety.is_empty(), rolled_back) {
        (true, _) => "; nothing was replaced".to_owned(),
        (false, true) => format!("; the data as it was was put back from safety snapshot(s) {}", safety.join(", ")),
        (false, false) => format!("; the data as it was is in safety snapshot(s) {}", safety.join(", ")),
    }
}

fn rolled_back_words(error: Option<&str>) -> String {
    error.map(|error| format!("; putting it back failed too: {error}")).unwrap_or_default()
}

fn restart_words(not_restarted: &[String]) -> String {
    if not_restarted.is_empty() {
        "; every stopped service runs again".to_owned()
    } else {
        format!("; NOT running again: {}", not_restarted.join("; "))
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
            Self::Interrupted => Vec::new(),
            Self::Ambiguous { .. } => vec!["give more of the id (`masstockctl backup ls` shows them)".to_owned()],
            Self::Stopped { error, safety, rolled_back, not_restarted, .. } => {
                let mut hints = error.hints();
                if !safety.is_empty() && !rolled_back {
                    hints.push(format!(
                        "`masstockctl restore --snapshot {} COMPONENT… --yes` puts the data as it was back",
                        safety[0]
                    ));
                }
                if !not_restarted.is_empty() {
                    hints.push("`masstockctl deploy` starts what is not running".to_owned());
                }
                hints
            }
        }
    }
}

/// The snapshots to restore: `wanted` is `latest` or a snapshot id (a prefix is enough).
/// Without components: every component of the run (`latest`: `Stack::backup_components`).
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
    let matching: Vec<&Snapshot> = if wanted.len() >= 4 && wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        snapshots.iter().filter(|snapshot| snapshot.id.starts_with(wanted)).collect()
    } else {
        Vec::new()
    };
    let named = match matching.as_slice() {
        [] => {
            return Err(ResticError::NoSuchSnapshot {
                id: wanted.to_owned(),
                repository: repository.shown().to_owned(),
            }
            .into())
        }
        [one] => *one,
        many => return Err(RestoreError::Ambiguous { prefix: wanted.to_owned(), count: many.len() }),
    };
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
    let with_variable = |variable: &str| -> Vec<String> {
        stack
            .config
            .services
            .iter()
            .filter(|(_, service)| service.enabled && service.env.contains_key(variable))
            .map(|(name, _)| name.clone())
            .collect()
    };
    let mut users: Vec<String> = match component {
        // The queue itself and every client of it (the worker, and the api, which adds jobs: a
        // job added between redis's start and the figures' check would make them differ).
        Component::Redis => {
            let mut users = with_variable("REDIS_URL");
            users.extend(["redis"].into_iter().filter(|name| enabled(name)).map(str::to_owned));
            users
        }
        Component::N8n => ["n8n"].into_iter().filter(|name| enabled(name)).map(str::to_owned).collect(),
        Component::Uploads => stack
            .config
            .services
            .iter()
            .filter(|(_, service)| service.enabled && service.volumes.iter().any(|volume| volume.source == "uploads"))
            .map(|(name, _)| name.clone())
            .collect(),
        Component::Postgres => with_variable("DATABASE_URL"),
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
    let progress = Mutex::new(Progress::default());
    let work = restore_steps(target, repository, chosen, &progress);
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = interrupted => Err(RestoreError::Interrupted),
    };
    let mut progress = progress.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let safety_ids: Vec<String> = progress.safety.iter().map(|stored| stored.snapshot.short_id.clone()).collect();
    // A failure (not an interruption: the operator asked to stop) once live data changed: the
    // safety snapshots go back, so the stack is as it was.
    let (mut rolled_back, mut rolled_back_error) = (false, None);
    if let Err(error) = &outcome {
        if !matches!(error, RestoreError::Interrupted) && !progress.touched.is_empty() {
            target.reporter.step(&format!("restore failed ({error}); putting the data as it was back"));
            match roll_back(target, repository, &mut progress).await {
                Ok(()) => rolled_back = true,
                Err(error) => rolled_back_error = Some(error.to_string()),
            }
        }
    }
    // Whatever happened, what was stopped runs again.
    let mut not_restarted = Vec::new();
    for service in target.stack.start_order() {
        if progress.stopped.iter().any(|name| name == service) {
            match start(target, service).await {
                Ok(()) => progress.stopped.retain(|name| name != service),
                Err(error) => not_restarted.push(error.to_string()),
            }
        }
    }
    let stopped = |error: RestoreError| RestoreError::Stopped {
        error: Box::new(error),
        safety: safety_ids.clone(),
        rolled_back,
        rolled_back_error: rolled_back_error.clone(),
        not_restarted: not_restarted.clone(),
    };
    match outcome {
        Ok(restored) if not_restarted.is_empty() => {
            Ok(RestoreReport { safety: progress.safety, restored, seconds: started.elapsed().as_secs_f64() })
        }
        Ok(_) => Err(stopped(RestoreError::Unhealthy {
            service: "a service".to_owned(),
            reason: "the data is restored, and it did not start again".to_owned(),
        })),
        Err(error) => Err(stopped(error)),
    }
}

/// What a restore has done so far, for what must be undone when it stops.
#[derive(Debug, Default)]
struct Progress {
    /// Stopped and not started again yet.
    stopped: Vec<String>,
    safety: Vec<Stored>,
    /// Components whose live data a put back has begun to replace.
    touched: Vec<Component>,
}

async fn restore_steps(
    target: &Target<'_>,
    repository: &Repository,
    chosen: &[Chosen],
    progress: &Mutex<Progress>,
) -> Result<Vec<Restored>, RestoreError> {
    let record = |change: &dyn Fn(&mut Progress)| note(progress, change);
    // Nothing writes while the safety copy is taken, so it holds everything up to the restore;
    // redis stops after its copy (its capture asks the running server for a save).
    let order = services_to_stop(target, chosen);
    for service in order.iter().rev().filter(|service| *service != "redis") {
        stop(target, service, progress).await?;
    }
    let run = store::new_run();
    let identity = store::identity(target, &run, "safety").await?;
    for chosen in chosen {
        target.reporter.step(&format!("{}: safety snapshot of the live data…", chosen.component));
        let stored =
            store::store(target, repository, chosen.component, &identity).await.map_err(RestoreError::Safety)?;
        target.reporter.step(&format!("{}: safety snapshot {}", chosen.component, stored.snapshot.short_id));
        record(&|progress| progress.safety.push(stored.clone()));
    }
    if order.iter().any(|service| service == "redis") {
        stop(target, "redis", progress).await?;
    }
    for chosen in chosen {
        target.reporter.step(&format!("{}: putting back {}…", chosen.component, chosen.snapshot.short_id));
        record(&|progress| progress.touched.push(chosen.component));
        put_back_from(target, repository, chosen.component, &chosen.snapshot).await?;
    }
    let mut measured: Vec<(Component, Figures)> = Vec::new();
    for chosen in chosen.iter().filter(|chosen| chosen.component != Component::Redis) {
        let figures = measure(chosen.component, target)
            .await
            .map_err(|error| RestoreError::Component { component: chosen.component, error })?;
        measured.push((chosen.component, figures));
    }
    let redis = chosen.iter().any(|chosen| chosen.component == Component::Redis);
    for service in &order {
        let was_stopped = progress.lock().map_or(true, |progress| progress.stopped.contains(service));
        if !was_stopped {
            continue;
        }
        start(target, service).await?;
        record(&|progress| progress.stopped.retain(|name| name != service));
        if service == "redis" && redis {
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

/// Stops a service's container when it runs, recording it to be started again.
/// Changes what the restore has done so far.
fn note(progress: &Mutex<Progress>, change: &dyn Fn(&mut Progress)) {
    if let Ok(mut progress) = progress.lock() {
        change(&mut progress);
    }
}

async fn stop(target: &Target<'_>, service: &str, progress: &Mutex<Progress>) -> Result<(), RestoreError> {
    let container = target.stack.container_name(service);
    let running = match target.docker.inspect_container(&container, None).await {
        Ok(inspected) => inspected.state.and_then(|state| state.running).unwrap_or(false),
        Err(error) if docker::is_not_found(&error) => false,
        Err(error) => return Err(docker::api_error(format!("failed to inspect `{container}`"), &error).into()),
    };
    if !running {
        // Not running before the restore: not started by it either.
        return Ok(());
    }
    target.reporter.step(&format!("{service}: stopping"));
    note(progress, &|progress| progress.stopped.push(service.to_owned()));
    let grace = target.stack.config.services[service]
        .stop_grace_period
        .map_or(10, |grace| i64::try_from(grace.as_secs()).unwrap_or(i64::MAX));
    apply::stop(target.docker, &container, grace).await?;
    Ok(())
}

/// Puts the safety snapshots of the components a failed restore touched back.
async fn roll_back(target: &Target<'_>, repository: &Repository, progress: &mut Progress) -> Result<(), RestoreError> {
    for component in progress.touched.clone() {
        let Some(snapshot) =
            progress.safety.iter().find(|stored| stored.component == component).map(|stored| stored.snapshot.clone())
        else {
            continue;
        };
        if component == Component::Redis && !progress.stopped.iter().any(|name| name == "redis") {
            // Its put back needs redis stopped; it was started again already.
            apply::stop(target.docker, &target.stack.container_name("redis"), 10).await?;
            progress.stopped.push("redis".to_owned());
        }
        target.reporter.step(&format!("{component}: putting back safety snapshot {}…", snapshot.short_id));
        put_back_from(target, repository, component, &snapshot).await?;
    }
    Ok(())
}

async fn put_back_from(
    target: &Target<'_>,
    repository: &Repository,
    component: Component,
    snapshot: &Snapshot,
) -> Result<(), RestoreError> {
    let mut dump = repository.dump(&snapshot.id, component.filename())?;
    let put = put_back(component, target, &mut dump).await;
    let read = dump.finish(repository).await;
    match (put, read) {
        (_, Err(error)) => Err(RestoreError::Dump { component, snapshot: snapshot.short_id.clone(), error }),
        (Err(error), Ok(())) => Err(RestoreError::Component { component, error }),
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
    let loaded = drill_component(chosen.component, target, &mut *scratch.lock().await, &mut dump).await;
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
