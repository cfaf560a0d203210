//! A whole backup run, as `masstockctl backup` and its timer start it: the repository created
//! when it does not exist yet (which also proves the password and the backend before anything
//! is captured), one snapshot per component in turn, the retention applied
//! (`forget` by `[backup] keep_*`, grouped by host and path so each component keeps its own
//! history, then `prune`), and the outcome recorded in the status file `doctor` reads.
//!
//! A component that fails does not stop the others: the run stores what it can and says what it
//! could not. The retention runs only after a run that stored every component, so a failing
//! component never makes restic forget the last good copies of the others.

use super::restic::{Repository, ResticError, Tags};
use super::status::{self, Kind, StatusError};
use super::store::{self, StoreError, Stored};
use super::{Component, Target};
use crate::config::Backup;
use crate::config::Stack;
use crate::docker::DockerError;

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    pub run: String,
    /// The repository was created by this run.
    pub initialized: bool,
    pub stored: Vec<Stored>,
    pub failed: Vec<StoreError>,
    /// How many snapshots the retention forgot, or why it could not; `None` when it did not run
    /// (a component failed).
    pub forgotten: Option<Result<usize, ResticError>>,
}

impl RunReport {
    /// Every component stored and the retention applied.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && matches!(self.forgotten, Some(Ok(_)))
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Restic(#[from] ResticError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("interrupted: the snapshot under way was not saved, those finished before are kept")]
    Interrupted,
}

impl RunError {
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Restic(error) => error.hints(),
            Self::Docker(error) => error.hint().map(str::to_owned).into_iter().collect(),
            Self::Status(_) | Self::Interrupted => Vec::new(),
        }
    }
}

/// A component named on the command line that is not one, or that this stack does not have.
#[derive(Debug, thiserror::Error)]
pub enum ComponentChoiceError {
    #[error("no component `{0}`")]
    Unknown(String),
    #[error("this stack has no `{component}` in environment `{environment}`: {reason}")]
    Absent { component: Component, environment: String, reason: String },
}

impl ComponentChoiceError {
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        vec!["the components are `redis`, `uploads`, `n8n` and `postgres` (those the stack has)".to_owned()]
    }
}

/// The components `names` says, in order and once each; the stack's (`included`) when empty.
pub fn chosen(stack: &Stack, names: &[String]) -> Result<Vec<Component>, ComponentChoiceError> {
    if names.is_empty() {
        return Ok(stack.backup_components());
    }
    let mut components = Vec::new();
    for name in names {
        let component = Component::parse(name).ok_or_else(|| ComponentChoiceError::Unknown(name.clone()))?;
        if let Some(reason) = stack.backup_component_unavailable(component) {
            return Err(ComponentChoiceError::Absent { component, environment: stack.environment.clone(), reason });
        }
        if !components.contains(&component) {
            components.push(component);
        }
    }
    Ok(components)
}

/// Backs `components` up in one run, applies the retention, records the outcome. Stops at
/// `interrupted`: the snapshot under way is not saved (restic is killed before its input ends).
pub async fn back_up(
    target: &Target<'_>,
    repository: &Repository,
    components: &[Component],
    create: bool,
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let run = store::new_run();
    // Captured in the order that keeps references whole (`Component`'s order): the queue before
    // the database (every job's execution is in the dump), the database before the files (every
    // result row's image is in the copy).
    let mut components = components.to_vec();
    components.sort();
    let previous = status::read(target.stack)?;
    let create = create || previous.last_successful_backup.is_none();
    let outcome = tokio::select! {
        outcome = run_components(target, repository, &components, create, &run) => outcome,
        () = interrupted => Err(RunError::Interrupted),
    };
    // Only a run of the whole stack says whether the stack is backed up (what `doctor` judges); a
    // run of some components is not recorded.
    if !target.stack.backup_components().iter().all(|component| components.contains(component)) {
        return outcome;
    }
    let (ok, summary) = match &outcome {
        Ok(report) if report.ok() => (
            true,
            format!(
                "run {run}: {}",
                report.stored.iter().map(|stored| stored.component.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ),
        Ok(report) => (false, format!("run {run}: {}", failures(report))),
        Err(error) => (false, format!("run {run}: {error}")),
    };
    status::record(target.stack, Kind::Backup, status::Run { at: chrono::Utc::now(), ok, summary })?;
    outcome
}

async fn run_components(
    target: &Target<'_>,
    repository: &Repository,
    components: &[Component],
    create: bool,
    run: &str,
) -> Result<RunReport, RunError> {
    target.reporter.step(&format!("repository {}: opening", repository.shown()));
    let initialized = repository.open(create).await?;
    if initialized {
        target.reporter.step(&format!("repository {}: created", repository.shown()));
    }
    let identity = store::identity(target, run, "backup").await?;
    let mut report =
        RunReport { run: run.to_owned(), initialized, stored: Vec::new(), failed: Vec::new(), forgotten: None };
    for component in components {
        target.reporter.step(&format!("{component}: capturing…"));
        match store::store(target, repository, *component, &identity).await {
            Ok(stored) => {
                target.reporter.step(&format!(
                    "{component}: stored as {} ({} added) in {:.1}s",
                    stored.snapshot.short_id,
                    store::bytes(stored.summary.data_added),
                    stored.seconds
                ));
                report.stored.push(stored);
            }
            Err(error) => report.failed.push(error),
        }
    }
    if report.failed.is_empty() {
        // Snapshots of interrupted runs hold no figures and are never restored from: they would
        // only take a place in the retention.
        let incomplete: Vec<String> = repository
            .snapshots(&store::stack_filter(target.stack))
            .await?
            .into_iter()
            .filter(|snapshot| !snapshot.complete)
            .map(|snapshot| snapshot.id)
            .collect();
        if !incomplete.is_empty() {
            target
                .reporter
                .step(&format!("forgetting {} incomplete snapshot(s) of interrupted runs", incomplete.len()));
            repository.forget_ids(&incomplete).await?;
        }
        let backup = target.stack.config.backup.as_ref().ok_or(ResticError::NotDeclared)?;
        target.reporter.step("retention: forgetting and pruning…");
        report.forgotten = Some(retention(target, repository, backup).await);
    }
    Ok(report)
}

/// How long the safety snapshots of restores are kept (they are not part of the daily history).
pub const SAFETY_KEPT: &str = "30d";

/// `[backup] keep_*` on the backups, each component's history on its own; the safety snapshots
/// of restores apart, kept [`SAFETY_KEPT`], so that a restore's copy never takes the place of the
/// day's backup. Then a prune when anything was forgotten. How many were forgotten.
async fn retention(target: &Target<'_>, repository: &Repository, backup: &Backup) -> Result<usize, ResticError> {
    let filter = store::stack_filter(target.stack);
    let kind = |kind: &str| {
        let mut filter = filter.clone();
        filter.push(Tags::kind_tag(kind));
        filter
    };
    let (daily, weekly, monthly) =
        (backup.keep_daily.to_string(), backup.keep_weekly.to_string(), backup.keep_monthly.to_string());
    let mut forgotten = repository
        .forget(&kind("backup"), &["--keep-daily", &daily, "--keep-weekly", &weekly, "--keep-monthly", &monthly])
        .await?;
    forgotten += repository.forget(&kind("safety"), &["--keep-within", SAFETY_KEPT]).await?;
    if forgotten > 0 {
        repository.prune().await?;
    }
    Ok(forgotten)
}

fn failures(report: &RunReport) -> String {
    let mut reasons: Vec<String> = report.failed.iter().map(ToString::to_string).collect();
    if let Some(Err(error)) = &report.forgotten {
        reasons.push(format!("retention: {error}"));
    }
    reasons.join("; ")
}
