//! Processing one execution: its prompts become images, its row in PostgreSQL follows.
//!
//! The rules:
//! - the execution is `processing` while a worker holds its job;
//! - each prompt is sent through its workflow's `prompt_template` (`{prompt}` replaced), with the
//!   workflow's `model_config` overridden by the execution's `config`;
//! - prompts run one after the other, each behind the shared rate limiter; a prompt's failure is
//!   recorded in `execution_prompt_failures` and never fails the others;
//! - a prompt with a stored result (or a permanent failure) is done: a job that runs again (a
//!   retry, a stalled job taken over, a job handed back at shutdown) skips it, so each prompt has
//!   at most one result;
//! - progress `{done, total}` goes to the row and to the job after every prompt;
//! - transient failures make the job fail with a retry while attempts remain; on the last attempt
//!   the execution ends `completed` if any prompt has an image, else `failed` with the reasons.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use masstock_jobs::consumer::{JobFailure, ReceivedJob};
use masstock_schema::ExecutionStatus;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::gemini::{GeminiClient, GeminiError};
use crate::rate_limit::RateLimiter;
use crate::storage;

/// The longest error stored for a prompt or an execution.
const MAX_ERROR_CHARS: usize = 2000;

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
        // An error means the sender is gone: the process is ending anyway.
        let _ = deadline.wait_for(|passed| *passed).await;
    }
}

/// Everything a job needs, shared by the jobs of this process.
#[derive(Debug)]
pub struct Processor {
    pub database: PgPool,
    pub gemini: GeminiClient,
    pub limiter: RateLimiter,
    pub uploads_dir: PathBuf,
    pub stopping: Stopping,
}

/// A prompt's outcome in this run.
enum PromptOutcome {
    Stored,
    Failed(GeminiError),
}

impl Processor {
    /// Processes the job's execution; the answer tells the queue what to do with the job.
    pub async fn handle(self: Arc<Self>, mut job: ReceivedJob) -> Result<Value, JobFailure> {
        let execution_id = job.workflow.execution_id;
        let span = tracing::info_span!("job", job_id = %job.id(), %execution_id, attempt = job.attempts_made() + 1);
        let outcome = tracing::Instrument::instrument(self.process(&mut job), span.clone()).await;
        span.in_scope(|| match &outcome {
            Ok(summary) => tracing::info!(%summary, "job done"),
            Err(JobFailure::HandBack) => tracing::info!("job handed back to the queue"),
            Err(JobFailure::Retry(reason)) => tracing::warn!(%reason, "job failed; it will be retried"),
            Err(JobFailure::Fail(reason)) => tracing::warn!(%reason, "job failed"),
        });
        outcome
    }

    async fn process(&self, job: &mut ReceivedJob) -> Result<Value, JobFailure> {
        let execution_id = job.workflow.execution_id;
        let row: Option<(String, i32, String, Value)> = sqlx::query_as(
            "select e.status, e.progress_total, w.prompt_template, w.model_config \
             from executions e join workflows w on w.id = e.workflow_id where e.id = $1",
        )
        .bind(execution_id)
        .fetch_optional(&self.database)
        .await
        .map_err(|error| Self::database_failure(job, execution_id, &error))?;
        let Some((status, total, template, model_config)) = row else {
            return Err(JobFailure::Fail(format!("execution `{execution_id}` does not exist")));
        };
        if status.parse::<ExecutionStatus>().is_ok_and(ExecutionStatus::is_finished) {
            return Ok(json!({ "skipped": format!("the execution is already {status}") }));
        }
        let prompts = job.workflow.prompts.clone();
        if usize::try_from(total).ok() != Some(prompts.len()) {
            return Err(JobFailure::Fail(format!(
                "the job has {} prompts but execution `{execution_id}` has {total}",
                prompts.len()
            )));
        }
        let config = generation_config(&model_config, &job.workflow.config);
        sqlx::query(
            "update executions set status = 'processing', started_at = coalesce(started_at, now()), updated_at = now() \
             where id = $1 and status in ('pending', 'processing')",
        )
        .bind(execution_id)
        .execute(&self.database)
        .await
        .map_err(|error| Self::database_failure(job, execution_id, &error))?;

        let mut done = self
            .finished_prompts(execution_id)
            .await
            .map_err(|error| Self::database_failure(job, execution_id, &error))?;
        let mut transient: BTreeMap<usize, String> = BTreeMap::new();
        self.record_progress(job, execution_id, done.len(), prompts.len()).await;
        for (index, prompt) in prompts.iter().enumerate() {
            if done.contains(&index) {
                continue;
            }
            if self.stopping.is_requested() {
                return Err(self.hand_back(execution_id).await);
            }
            let text = template.replace("{prompt}", prompt);
            let outcome = tokio::select! {
                outcome = self.run_prompt(execution_id, index, &text, &config) => outcome,
                () = self.stopping.deadline_passed() => return Err(self.hand_back(execution_id).await),
            };
            match outcome {
                Ok(PromptOutcome::Stored) => {
                    done.insert(index);
                }
                Ok(PromptOutcome::Failed(error)) if error.is_permanent() => {
                    tracing::warn!(prompt_index = index, %error, "prompt failed");
                    done.insert(index);
                }
                Ok(PromptOutcome::Failed(error)) => {
                    tracing::warn!(prompt_index = index, %error, "prompt failed; a later attempt may succeed");
                    transient.insert(index, error.to_string());
                }
                Err(failure) => {
                    let reason = format!("prompt {}: {failure}", index + 1);
                    return Err(self.fail_or_retry(job, execution_id, reason).await);
                }
            }
            self.record_progress(job, execution_id, done.len(), prompts.len()).await;
        }
        if let Some((first_index, first_error)) = transient.first_key_value() {
            if !job.is_last_attempt() {
                return Err(JobFailure::Retry(format!(
                    "{} of {} prompts failed and will be tried again; prompt {}: {first_error}",
                    transient.len(),
                    prompts.len(),
                    first_index + 1
                )));
            }
            // The last attempt: what failed now has failed for good.
            sqlx::query("update execution_prompt_failures set permanent = true where execution_id = $1")
                .bind(execution_id)
                .execute(&self.database)
                .await
                .map_err(|error| Self::database_failure(job, execution_id, &error))?;
        }
        self.finish(job, execution_id).await
    }

    /// Generates, stores and records one prompt's image. `Err` is a failure of ours (disk,
    /// database), not of the prompt.
    async fn run_prompt(
        &self,
        execution_id: Uuid,
        index: usize,
        prompt: &str,
        config: &Value,
    ) -> Result<PromptOutcome, String> {
        let image = match self.gemini.generate_image(prompt, config, &self.limiter).await {
            Ok(image) => image,
            Err(error) => {
                self.record_prompt_failure(execution_id, index, &error)
                    .await
                    .map_err(|error| format!("database: {error}"))?;
                return Ok(PromptOutcome::Failed(error));
            }
        };
        let location = storage::location(execution_id, index, &image.mime_type);
        let size = i64::try_from(image.bytes.len()).unwrap_or(i64::MAX);
        storage::store(&self.uploads_dir, &location, image.bytes)
            .await
            .map_err(|error| format!("cannot store the image under `{}`: {error}", self.uploads_dir.display()))?;
        let mut transaction = self.database.begin().await.map_err(|error| format!("database: {error}"))?;
        sqlx::query(
            "insert into execution_results (execution_id, prompt_index, content_type, storage_location, size_bytes) \
             values ($1, $2, $3, $4, $5) on conflict (execution_id, prompt_index) do nothing",
        )
        .bind(execution_id)
        .bind(prompt_index(index))
        .bind(&image.mime_type)
        .bind(&location)
        .bind(size)
        .execute(&mut *transaction)
        .await
        .map_err(|error| format!("database: {error}"))?;
        sqlx::query("delete from execution_prompt_failures where execution_id = $1 and prompt_index = $2")
            .bind(execution_id)
            .bind(prompt_index(index))
            .execute(&mut *transaction)
            .await
            .map_err(|error| format!("database: {error}"))?;
        transaction.commit().await.map_err(|error| format!("database: {error}"))?;
        tracing::info!(prompt_index = index, bytes = size, "image stored");
        Ok(PromptOutcome::Stored)
    }

    /// Prompts that need no further work: those with an image and those that failed for good.
    async fn finished_prompts(&self, execution_id: Uuid) -> Result<std::collections::BTreeSet<usize>, sqlx::Error> {
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
    /// Neither is worth failing the job for: the next prompt writes it again.
    async fn record_progress(&self, job: &mut ReceivedJob, execution_id: Uuid, done: usize, total: usize) {
        let updated = sqlx::query("update executions set progress_done = $2, updated_at = now() where id = $1")
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
    async fn finish(&self, job: &ReceivedJob, execution_id: Uuid) -> Result<Value, JobFailure> {
        let failures: Vec<(i32, String)> = sqlx::query_as(
            "select prompt_index, error from execution_prompt_failures where execution_id = $1 order by prompt_index",
        )
        .bind(execution_id)
        .fetch_all(&self.database)
        .await
        .map_err(|error| Self::database_failure(job, execution_id, &error))?;
        let images: i64 = sqlx::query_scalar("select count(*) from execution_results where execution_id = $1")
            .bind(execution_id)
            .fetch_one(&self.database)
            .await
            .map_err(|error| Self::database_failure(job, execution_id, &error))?;
        if images == 0 {
            let reasons: Vec<String> =
                failures.iter().map(|(index, error)| format!("prompt {}: {error}", index + 1)).collect();
            let reason = truncate(&format!("every prompt failed; {}", reasons.join("; ")));
            self.mark_finished(execution_id, ExecutionStatus::Failed, Some(&reason))
                .await
                .map_err(|error| Self::database_failure(job, execution_id, &error))?;
            return Err(JobFailure::Fail(reason));
        }
        self.mark_finished(execution_id, ExecutionStatus::Completed, None)
            .await
            .map_err(|error| Self::database_failure(job, execution_id, &error))?;
        Ok(json!({ "images": images, "failed": failures.len() }))
    }

    async fn mark_finished(
        &self,
        execution_id: Uuid,
        status: ExecutionStatus,
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "update executions set status = $2, error = $3, progress_done = progress_total, \
             finished_at = now(), updated_at = now() where id = $1",
        )
        .bind(execution_id)
        .bind(status.as_str())
        .bind(error)
        .execute(&self.database)
        .await
        .map(drop)
    }

    /// The worker is stopping: the execution waits again, and the job goes back to the queue.
    async fn hand_back(&self, execution_id: Uuid) -> JobFailure {
        let updated = sqlx::query(
            "update executions set status = 'pending', updated_at = now() where id = $1 and status = 'processing'",
        )
        .bind(execution_id)
        .execute(&self.database)
        .await;
        if let Err(error) = updated {
            tracing::warn!(%error, "cannot mark the execution pending again");
        }
        JobFailure::HandBack
    }

    /// A failure of ours (database, disk): retried like a transient one; on the last attempt the
    /// execution is failed with the reason, if the database lets us say so.
    async fn fail_or_retry(&self, job: &ReceivedJob, execution_id: Uuid, reason: String) -> JobFailure {
        if !job.is_last_attempt() {
            return JobFailure::Retry(reason);
        }
        let reason = truncate(&reason);
        if let Err(error) = self.mark_finished(execution_id, ExecutionStatus::Failed, Some(&reason)).await {
            tracing::error!(%error, "cannot mark the execution failed");
        }
        JobFailure::Fail(reason)
    }

    fn database_failure(job: &ReceivedJob, execution_id: Uuid, error: &sqlx::Error) -> JobFailure {
        tracing::warn!(%execution_id, %error, "database error");
        let reason = format!("database: {error}");
        if job.is_last_attempt() {
            JobFailure::Fail(reason)
        } else {
            JobFailure::Retry(reason)
        }
    }
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
fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_ERROR_CHARS {
        text.to_owned()
    } else {
        text.chars().take(MAX_ERROR_CHARS - 1).chain(['…']).collect()
    }
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
}
