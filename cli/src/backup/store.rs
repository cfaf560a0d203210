//! One component stored as one restic snapshot: its capture streamed into `restic backup
//! --stdin`, then its figures and sizes added as tags (`Repository::add_tags`). A capture that
//! fails stops restic before its input ends, so no partial snapshot is ever saved; a run killed
//! between the two steps leaves a snapshot without figures, which `backup ls` shows as
//! incomplete and no restore uses.
//!
//! Also what a whole run is tagged with: the running images' revision, and the deployed
//! configuration as a release (a hash of every service's configuration hash).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use super::restic::{BackupSummary, Repository, ResticError, Snapshot, Tags};
use super::{capture, Component, ComponentError, Target};
use crate::docker::{self, labels, DockerError};

/// A component stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub component: Component,
    pub snapshot: Snapshot,
    pub summary: BackupSummary,
    pub seconds: f64,
}

/// Why a component was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{component}: {error}")]
    Capture { component: Component, error: ComponentError },
    #[error("{component}: {error}")]
    Restic { component: Component, error: ResticError },
}

impl StoreError {
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Capture { error, .. } => error.hints(),
            Self::Restic { error, .. } => error.hints(),
        }
    }
}

/// Captures `component` into a new snapshot tagged `identity` (its component set here).
pub async fn store(
    target: &Target<'_>,
    repository: &Repository,
    component: Component,
    identity: &Tags,
) -> Result<Stored, StoreError> {
    let started = Instant::now();
    let restic = |error| StoreError::Restic { component, error };
    let mut tags = identity.clone();
    tags.component = Some(component);
    let mut upload = repository.start_backup(component.filename(), &tags.identity()).map_err(restic)?;
    let written = Arc::new(AtomicU64::new(0));
    let activity = target.reporter.transfer(&format!("{component}: storing"), false);
    let captured = {
        let Some(stdin) = upload.stdin() else {
            return Err(restic(ResticError::Spawn("restic's standard input is not open".to_owned())));
        };
        let mut sink = Counting { inner: stdin, written: Arc::clone(&written) };
        let capture = async {
            let figures = capture(component, target, &mut sink).await?;
            sink.shutdown().await.map_err(|error| ComponentError::Stream(error.to_string()))?;
            Ok::<_, ComponentError>(figures)
        };
        tokio::pin!(capture);
        let mut ticks = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                result = &mut capture => break result,
                _ = ticks.tick() => activity.message(&format!("{component}: storing, {} read", bytes(written.load(Ordering::Relaxed)))),
            }
        }
    };
    activity.finish();
    let figures = match captured {
        Ok(figures) => figures,
        Err(error) => {
            // restic may have stopped first (a full disk, a lost connection): its reason is the
            // one that explains the broken pipe.
            if let Some(restic_error) = upload.failure(repository).await {
                return Err(restic(restic_error));
            }
            return Err(StoreError::Capture { component, error });
        }
    };
    let summary = upload.finish(repository).await.map_err(restic)?;
    tags.figures = figures;
    tags.added_bytes = Some(summary.data_added);
    tags.total_bytes = Some(summary.total_bytes_processed);
    let find = Tags::run_filter(&tags.run, component);
    let snapshot = repository.add_tags(&summary.snapshot_id, &tags.results(), &find).await.map_err(restic)?;
    Ok(Stored { component, snapshot, summary, seconds: started.elapsed().as_secs_f64() })
}

/// A new run's name: its UTC time and four random hex digits (`20261207T031500Z-3fa1`).
#[must_use]
pub fn new_run() -> String {
    let mut random = [0_u8; 2];
    let _ = getrandom::fill(&mut random);
    format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), crate::secrets::hex(&random))
}

/// The tags every snapshot of a run carries: project, environment, run, kind, the running
/// revision and release.
pub async fn identity(target: &Target<'_>, run: &str, kind: &str) -> Result<Tags, DockerError> {
    let containers = docker::project_containers(target.docker, &target.stack.config.project.name).await?;
    let mut revision = None;
    let mut hashes: Vec<(String, String)> = Vec::new();
    for container in &containers {
        let Some(container_labels) = container.labels.as_ref() else { continue };
        let Some(service) = container_labels.get(labels::SERVICE) else { continue };
        if container_labels.get(labels::ROLE).is_some_and(|role| role != "primary") {
            continue;
        }
        if let Some(hash) = container_labels.get(labels::CONFIG_HASH) {
            hashes.push((service.clone(), hash.clone()));
        }
        if service == "api" || revision.is_none() {
            if let Some(found) = container_labels.get(labels::REVISION) {
                revision = Some(found.clone());
            }
        }
    }
    hashes.sort();
    let release = if hashes.is_empty() {
        "none".to_owned()
    } else {
        let mut hasher = Sha256::new();
        for (service, hash) in &hashes {
            hasher.update(format!("{service}={hash}\n"));
        }
        crate::secrets::hex(&hasher.finalize())[..12].to_owned()
    };
    Ok(Tags {
        project: target.stack.config.project.name.clone(),
        environment: target.stack.environment.clone(),
        run: run.to_owned(),
        kind: kind.to_owned(),
        revision: revision.unwrap_or_else(|| "unknown".to_owned()),
        release,
        ..Tags::default()
    })
}

/// The tags that select this stack's snapshots (its project and environment).
#[must_use]
pub fn stack_filter(stack: &crate::config::Stack) -> Vec<String> {
    let tags =
        Tags { project: stack.config.project.name.clone(), environment: stack.environment.clone(), ..Tags::default() };
    tags.identity().into_iter().take(2).collect()
}

/// `1.2 MiB`.
#[must_use]
pub fn bytes(count: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
    let value = count as f64;
    match count {
        0..1024 => format!("{count} B"),
        1024..1_048_576 => format!("{:.1} KiB", value / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", value / 1_048_576.0),
        _ => format!("{:.2} GiB", value / 1_073_741_824.0),
    }
}

/// A writer that counts what passes through it, for the progress line.
struct Counting<'a, W> {
    inner: &'a mut W,
    written: Arc<AtomicU64>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counting<'_, W> {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, buffer: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut *self.inner).poll_write(context, buffer);
        if let Poll::Ready(Ok(count)) = poll {
            self.written.fetch_add(count as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(context)
    }
}
