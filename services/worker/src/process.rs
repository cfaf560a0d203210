//! Processing one execution: its prompts become images, its row in PostgreSQL follows.
//!
//! The rules:
//! - the execution is `processing` while a worker holds its job;
//! - each prompt is sent through its workflow's `prompt_template` (`{prompt}` replaced), with the
//!   workflow's `model_config` overridden by the execution's `config`;
//! - prompts run one after the other, each behind the shared Gemini quota; a prompt's failure is
//!   recorded in `execution_prompt_failures` and never fails the others;
//! - a prompt with a stored result (or a permanent failure) is done: a job that runs again (a
//!   retry, a stalled job taken over, a job handed back at shutdown) skips it, and a prompt is
//!   checked again just before it is sent, in case another worker holds the same job after a
//!   lost lock; each prompt has at most one result;
//! - progress `{done, total}` goes to the row (never backwards) and to the job after every prompt;
//! - transient failures make the job fail with a retry while attempts remain; on the last attempt
//!   the execution ends `completed` if any prompt has an image, else `failed` with the reasons;
//! - when PostgreSQL or Redis cannot be reached, the job is handed back after a pause without
//!   using an attempt: an outage must not turn into failed executions.
//!
//! Transient failures are 5xx, timeouts, 429 beyond the client's attempts and the rate limiter
//! unreachable; other failures of ours (a database error, the disk) retry the job the same way,
//! and on the last attempt the execution reads "an internal error stopped this execution" while
//! the job keeps the details (database and disk errors stay in the logs and in the job's
//! `failedReason`, for operators; an execution's `error` holds Gemini's words or a plain sentence).
//! A `failed` execution's `error` lists every prompt's reason, and the job fails with the same text.
//! PostgreSQL or Redis *unreachable* uses no attempt: the job is held 5 s and handed back.
//! Per-prompt failures live in `execution_prompt_failures` (error, permanent or not, attempts), not
//! in `execution_results`, whose rows are always images; the API shows them as `failures`
//! (`index`, `error`, `retrying`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use masstock_queue::consumer::{JobFailure, ReceivedJob};
use masstock_schema::ExecutionStatus;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::gemini::{GeminiClient, GeminiError};
use crate::gemini_quota::GeminiQuota;
use crate::storage;

/// The longest error stored for a prompt or an execution.
const MAX_ERROR_CHARS: usize = 2000;
/// How long a job whose dependencies are down is held before it goes back to the queue, so that
/// workers do not spin on it during an outage.
const UNAVAILABLE_PAUSE: Duration = Duration::from_secs(5);
/// How long the last database write of a stopping job may take: the grace period is nearly over.
const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(2);
/// What users read when the execution failed for a reason of ours; the details are in the logs
/// and in the job's failure reason, for the operators.
pub const INTERNAL_FAILURE: &str = "an internal error stopped this execution; the operators have the details";

/// What stopping looks like from inside a job.
#[derive(Debug, Clone)]
pub struct Stopping {
    /// Set on SIGTERM: take no new prompt.
    pub requested: watch::Receiver<bool>,
    /// Set when the grace period is over: abandon the prompt in flight.
    pub deadline: watch::Receiver<bool>,
}

impl Stopping {
    fn is_requested(&self) -> bool {
        *self.requested.borrow()
    }

    async fn deadline_passed(&self) {
        let mut deadline = self.deadline.clone();
        if deadline.wait_for(|passed| *passed).await.is_err() {
            // The sender is gone: there is no deadline any more.
            std::future::pending::<()>().await;
        }
    }

    async fn stop_requested(&self) {
        let mut requested = self.requested.clone();
        if requested.wait_for(|requested| *requested).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Everything a job needs, shared by the jobs of this process.
#[derive(Debug)]
pub struct Processor {
    pub database: PgPool,
    pub gemini: GeminiClient,
    pub quota: GeminiQuota,
    pub uploads_dir: PathBuf,
    pub stopping: Stopping,
}

/// Why a run of the job stopped before its verdict.
enum Interrupted {
    /// PostgreSQL or Redis is unreachable.
    Unavailable(String),
    /// Stopping: the job goes back to the queue.
    Stopping,
    /// Anything else that is ours (a database error, the disk): retried like a transient failure.
    Failed(String),
}

impl From<sqlx::Error> for Interrupted {
    fn from(error: sqlx::Error) -> Self {
        let unavailable = matches!(
            error,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
        );
        if unavailable {
            Self::Unavailable(format!("database unavailable: {error}"))
        } else {
            Self::Failed(format!("database: {error}"))
        }
    }
}

/// A prompt's outcome in this run.
enum PromptOutcome {
    Stored,
    /// Another worker stored it first.
    AlreadyDone,
    Failed(GeminiError),
}

impl Processor {
    /// Processes the job's execution; the answer tells the queue what to do with the job.
    pub async fn handle(self: Arc<Self>, mut job: ReceivedJob) -> Result<Value, JobFailure> {
        let execution_id = job.workflow.execution_id;
        let span = tracing::info_span!("job", job_id = %job.id(), %execution_id, attempt = job.attempts_made() + 1);
        let outcome = tracing::Instrument::instrument(self.process(&mut job), span.clone()).await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(Interrupted::Stopping) => Err(self.hand_back(execution_id).await),
            Err(Interrupted::Unavailable(reason)) => {
                span.in_scope(|| tracing::warn!(%reason, pause_s = UNAVAILABLE_PAUSE.as_secs(), "cannot work; the job goes back to the queue"));
                tokio::select! {
                    () = tokio::time::sleep(UNAVAILABLE_PAUSE) => {}
                    () = self.stopping.stop_requested() => {}
                }
                Err(JobFailure::HandBack)
            }
            Err(Interrupted::Failed(reason)) => Err(self.fail_or_retry(&job, execution_id, reason).await),
        };
        span.in_scope(|| match &outcome {
            Ok(summary) => tracing::info!(%summary, "job done"),
            Err(JobFailure::HandBack) => tracing::info!("job handed back to the queue"),
            Err(JobFailure::Retry(reason)) => tracing::warn!(%reason, "job failed; it will be retried"),
            Err(JobFailure::Fail(reason)) => tracing::warn!(%reason, "job failed"),
        });
        outcome
    }

    async fn process(&self, job: &mut ReceivedJob) -> Result<Result<Value, JobFailure>, Interrupted> {
        let execution_id = job.workflow.execution_id;
        let row: Option<(String, i32, String, Value)> = sqlx::query_as(
            "select e.status, e.progress_total, w.prompt_template, w.model_config \
             from executions e join workflows w on w.id = e.workflow_id where e.id = $1",
        )
        .bind(execution_id)
        .fetch_optional(&self.database)
        .await?;
        let Some((status, total, template, model_config)) = row else {
            return Ok(Err(JobFailure::Fail(format!("execution `{execution_id}` does not exist"))));
        };
        if status.parse::<ExecutionStatus>().is_ok_and(ExecutionStatus::is_finished) {
            return Ok(Ok(json!({ "skipped": format!("the execution is already {status}") })));
        }
        let prompts = job.workflow.prompts.clone();
        if usize::try_from(total).ok() != Some(prompts.len()) {
            let reason = format!("the job has {} prompts but execution `{execution_id}` has {total}", prompts.len());
            mark_finished(&self.database, execution_id, ExecutionStatus::Failed, Some(INTERNAL_FAILURE)).await?;
            return Ok(Err(JobFailure::Fail(reason)));
        }
        let config = generation_config(&model_config, &job.workflow.config);
        sqlx::query(
            "update executions set status = 'processing', started_at = coalesce(started_at, now()), updated_at = now() \
             where id = $1 and status in ('pending', 'processing')",
        )
        .bind(execution_id)
        .execute(&self.database)
        .await?;

        let mut done = self.finished_prompts(execution_id).await?;
        let mut transient: BTreeMap<usize, String> = BTreeMap::new();
        self.record_progress(job, execution_id, done.len(), prompts.len()).await;
        for (index, prompt) in prompts.iter().enumerate() {
            if done.contains(&index) {
                continue;
            }
            if self.stopping.is_requested() {
                return Err(Interrupted::Stopping);
            }
            let text = template.replace("{prompt}", prompt);
            let outcome = tokio::select! {
                outcome = self.run_prompt(execution_id, index, &text, &config) => outcome?,
                () = self.stopping.deadline_passed() => return Err(Interrupted::Stopping),
            };
            match outcome {
                PromptOutcome::Stored | PromptOutcome::AlreadyDone => {
                    done.insert(index);
                }
                PromptOutcome::Failed(GeminiError::Stopping) => return Err(Interrupted::Stopping),
                PromptOutcome::Failed(error @ GeminiError::Quota(_)) => {
                    return Err(Interrupted::Unavailable(error.to_string()));
                }
                PromptOutcome::Failed(error) if error.is_permanent() => {
                    tracing::warn!(prompt_index = index, %error, "prompt failed");
                    done.insert(index);
                }
                PromptOutcome::Failed(error) => {
                    tracing::warn!(prompt_index = index, %error, "prompt failed; a later attempt may succeed");
                    transient.insert(index, error.to_string());
                }
            }
            self.record_progress(job, execution_id, done.len(), prompts.len()).await;
        }
        if let Some((first_index, first_error)) = transient.first_key_value() {
            if !job.is_last_attempt() {
                return Ok(Err(JobFailure::Retry(format!(
                    "{} of {} prompts failed and will be tried again; prompt {}: {first_error}",
                    transient.len(),
                    prompts.len(),
                    first_index + 1
                ))));
            }
            // The last attempt: what failed now has failed for good.
            sqlx::query("update execution_prompt_failures set permanent = true where execution_id = $1")
                .bind(execution_id)
                .execute(&self.database)
                .await?;
        }
        self.finish(execution_id).await
    }

    /// Generates, stores and records one prompt's image. `Err` is a failure of ours (disk,
    /// database), not of the prompt.
    async fn run_prompt(
        &self,
        execution_id: Uuid,
        index: usize,
        prompt: &str,
        config: &Value,
    ) -> Result<PromptOutcome, Interrupted> {
        // Another worker may hold this job too (a lock lost while Redis was slow): do not pay
        // for an image that is already stored.
        if self.has_result(execution_id, index).await? {
            return Ok(PromptOutcome::AlreadyDone);
        }
        let image = match self.gemini.generate_image(prompt, config, &self.quota).await {
            Ok(image) => image,
            Err(error) if error.is_ours() => return Ok(PromptOutcome::Failed(error)),
            Err(error) => {
                self.record_prompt_failure(execution_id, index, &error).await?;
                return Ok(PromptOutcome::Failed(error));
            }
        };
        let location = storage::location(execution_id, index, &image.mime_type);
        let size = i64::try_from(image.bytes.len()).unwrap_or(i64::MAX);
        storage::store(&self.uploads_dir, &location, image.bytes).await.map_err(|error| {
            Interrupted::Failed(format!("cannot store the image under `{}`: {error}", self.uploads_dir.display()))
        })?;
        let recorded = async {
            let mut transaction = self.database.begin().await?;
            let inserted = sqlx::query(
                "insert into execution_results (execution_id, prompt_index, content_type, storage_location, size_bytes) \
                 values ($1, $2, $3, $4, $5) on conflict (execution_id, prompt_index) do nothing",
            )
            .bind(execution_id)
            .bind(prompt_index(index))
            .bind(&image.mime_type)
            .bind(&location)
            .bind(size)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
            sqlx::query("delete from execution_prompt_failures where execution_id = $1 and prompt_index = $2")
                .bind(execution_id)
                .bind(prompt_index(index))
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(inserted)
        };
        let inserted = match recorded.await {
            Ok(inserted) => inserted,
            Err(error) => {
                // No row names the file: it would never be served, so it does not stay.
                storage::remove(&self.uploads_dir, &location).await;
                return Err(error.into());
            }
        };
        if inserted == 0 {
            // Another worker's image won: its row names its own file; this one is nobody's.
            storage::remove(&self.uploads_dir, &location).await;
            return Ok(PromptOutcome::AlreadyDone);
        }
        tracing::info!(prompt_index = index, bytes = size, "image stored");
        Ok(PromptOutcome::Stored)
    }

    async fn has_result(&self, execution_id: Uuid, index: usize) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "select exists(select 1 from execution_results where execution_id = $1 and prompt_index = $2)",
        )
        .bind(execution_id)
        .bind(prompt_index(index))
        .fetch_one(&self.database)
        .await
    }

    /// Prompts that need no further work: those with an image and those that failed for good.
    async fn finished_prompts(&self, execution_id: Uuid) -> Result<BTreeSet<usize>, sqlx::Error> {
        let indexes: Vec<i32> = sqlx::query_scalar(
            "select prompt_index from execution_results where execution_id = $1 \
             union select prompt_index from execution_prompt_failures where execution_id = $1 and permanent",
        )
        .bind(execution_id)
        .fetch_all(&self.database)
        .await?;
        Ok(indexes.into_iter().filter_map(|index| usize::try_from(index).ok()).collect())
    }

    async fn record_prompt_failure(
        &self,
        execution_id: Uuid,
        index: usize,
        error: &GeminiError,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "insert into execution_prompt_failures (execution_id, prompt_index, error, permanent) values ($1, $2, $3, $4) \
             on conflict (execution_id, prompt_index) do update \
             set error = excluded.error, permanent = excluded.permanent, \
                 attempts = execution_prompt_failures.attempts + 1, updated_at = now()",
        )
        .bind(execution_id)
        .bind(prompt_index(index))
        .bind(truncate(&error.to_string()))
        .bind(error.is_permanent())
        .execute(&self.database)
        .await
        .map(drop)
    }

    /// Progress in the row (what the API shows) and in the job (what BullMQ's tools show).
    /// Neither is worth failing the job for: the next prompt writes it again. The row's never
    /// goes backwards, whoever writes it.
    async fn record_progress(&self, job: &mut ReceivedJob, execution_id: Uuid, done: usize, total: usize) {
        let updated = sqlx::query(
            "update executions set progress_done = greatest(progress_done, $2), updated_at = now() where id = $1",
        )
        .bind(execution_id)
        .bind(i32::try_from(done).unwrap_or(i32::MAX))
        .execute(&self.database)
        .await;
        if let Err(error) = updated {
            tracing::warn!(%error, "cannot record progress in the database");
        }
        if let Err(error) = job.report_progress(done, total).await {
            tracing::warn!(%error, "cannot record the job's progress");
        }
    }

    /// Every prompt has been tried for the last time: the execution's verdict.
    async fn finish(&self, execution_id: Uuid) -> Result<Result<Value, JobFailure>, Interrupted> {
        let failures: Vec<(i32, String)> = sqlx::query_as(
            "select prompt_index, error from execution_prompt_failures where execution_id = $1 order by prompt_index",
        )
        .bind(execution_id)
        .fetch_all(&self.database)
        .await?;
        let images: i64 = sqlx::query_scalar("select count(*) from execution_results where execution_id = $1")
            .bind(execution_id)
            .fetch_one(&self.database)
            .await?;
        if images == 0 {
            let reasons: Vec<String> =
                failures.iter().map(|(index, error)| format!("prompt {}: {error}", index + 1)).collect();
            let reason = truncate(&format!("every prompt failed; {}", reasons.join("; ")));
            mark_finished(&self.database, execution_id, ExecutionStatus::Failed, Some(&reason)).await?;
            return Ok(Err(JobFailure::Fail(reason)));
        }
        mark_finished(&self.database, execution_id, ExecutionStatus::Completed, None).await?;
        Ok(Ok(json!({ "images": images, "failed": failures.len() })))
    }

    /// The worker is stopping: the execution waits again, and the job goes back to the queue.
    /// The job is still locked by this worker, so nobody else can have taken it yet.
    async fn hand_back(&self, execution_id: Uuid) -> JobFailure {
        let pending = sqlx::query(
            "update executions set status = 'pending', updated_at = now() where id = $1 and status = 'processing'",
        )
        .bind(execution_id)
        .execute(&self.database);
        match tokio::time::timeout(HAND_BACK_TIMEOUT, pending).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot mark the execution pending again"),
            Err(_) => tracing::warn!("the database did not answer in time; the execution stays `processing`"),
        }
        JobFailure::HandBack
    }

    /// A failure of ours (database, disk): retried like a transient one; on the last attempt the
    /// execution is failed, with a message for users (the reason itself is for operators).
    async fn fail_or_retry(&self, job: &ReceivedJob, execution_id: Uuid, reason: String) -> JobFailure {
        if !job.is_last_attempt() {
            return JobFailure::Retry(reason);
        }
        if let Err(error) =
            mark_finished(&self.database, execution_id, ExecutionStatus::Failed, Some(INTERNAL_FAILURE)).await
        {
            tracing::error!(%error, "cannot mark the execution failed; the reconciler will");
        }
        JobFailure::Fail(truncate(&reason))
    }
}

/// Sets an unfinished execution's verdict; an execution already finished keeps its own.
pub async fn mark_finished(
    database: &PgPool,
    execution_id: Uuid,
    status: ExecutionStatus,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update executions set status = $2, error = $3, progress_done = progress_total, \
         finished_at = now(), updated_at = now() where id = $1 and status in ('pending', 'processing')",
    )
    .bind(execution_id)
    .bind(status.as_str())
    .bind(error)
    .execute(database)
    .await
    .map(drop)
}

/// The options sent with each prompt: the workflow's `model_config`, overridden key by key by the
/// execution's own `config`. The model itself is the worker's `GEMINI_MODEL`, an operator's choice.
fn generation_config(model_config: &Value, execution_config: &Value) -> Value {
    let mut merged = model_config.as_object().cloned().unwrap_or_default();
    if let Some(overrides) = execution_config.as_object() {
        merged.extend(overrides.iter().map(|(key, value)| (key.clone(), value.clone())));
    }
    Value::Object(merged)
}

fn prompt_index(index: usize) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}

/// `text`, cut to what the schema stores.
#[must_use]
pub fn truncate(text: &str) -> String {
    crate::text::truncate(text, MAX_ERROR_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_execution_config_overrides_the_workflow_config_key_by_key() {
        let merged = generation_config(
            &json!({ "model": "gemini-2.5-flash-image", "aspectRatio": "1:1" }),
            &json!({ "aspectRatio": "16:9" }),
        );
        assert_eq!(merged, json!({ "model": "gemini-2.5-flash-image", "aspectRatio": "16:9" }));
        assert_eq!(generation_config(&json!(null), &json!({})), json!({}));
    }

    #[test]
    fn long_errors_are_cut_to_what_the_schema_stores() {
        assert_eq!(truncate("short"), "short");
        let long = "é".repeat(MAX_ERROR_CHARS + 5);
        assert_eq!(truncate(&long).chars().count(), MAX_ERROR_CHARS);
        assert!(truncate(&long).ends_with('…'));
    }
}
