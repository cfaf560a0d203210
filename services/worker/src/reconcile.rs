//! Settling executions that no job will finish.
//!
//! Processing keeps an execution and its job in step, but some endings happen outside it: BullMQ
//! fails a job that stalled more than once without calling the worker, a job's last attempt may
//! fail while PostgreSQL is down, a payload may be unreadable, and Redis may lose a job (AOF
//! `everysec` keeps up to a second). Every `RECONCILE_INTERVAL_SECONDS`, each worker looks at the
//! executions unfinished and untouched for that long, and at their jobs:
//!
//! - job `failed`: the execution is `failed`, with the job's reason when it is meant for users
//!   (Gemini's), or a plain message when it is ours;
//! - no job at all while `processing`: the execution is `pending` again, and the API's sweeper
//!   (which re-adds the jobs of old pending executions) puts its job back on the queue; done
//!   prompts are skipped when it runs.
//!
//! Every update is conditional on the execution still being unfinished, so workers doing this at
//! the same time agree.
//!
//! BullMQ fails a job that stalled twice without calling us (`MAX_STALLED_COUNT` = 1).
//! `RECONCILE_INTERVAL_SECONDS` is 60 by default.

use std::time::Duration;

use masstock_queue::admin::Inspector;
use masstock_schema::ExecutionStatus;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::process::{mark_finished, truncate, INTERNAL_FAILURE};

/// Executions looked at per pass, oldest first.
const BATCH: i64 = 200;
/// How long Redis may take to answer.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub failed: usize,
    pub requeued: usize,
}

/// Runs a pass every `interval` until `stopping` turns true.
pub async fn run(
    database: PgPool,
    redis_url: String,
    prefix: String,
    interval: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
        match settle(&database, &redis_url, &prefix, interval).await {
            Ok(Settled { failed: 0, requeued: 0 }) => {}
            Ok(settled) => tracing::info!(
                failed = settled.failed,
                requeued = settled.requeued,
                "settled executions left unfinished"
            ),
            Err(error) => tracing::warn!(%error, "cannot settle unfinished executions this time"),
        }
    }
}

/// One pass over the executions unfinished and untouched for `age`.
pub async fn settle(database: &PgPool, redis_url: &str, prefix: &str, age: Duration) -> Result<Settled, String> {
    let stale: Vec<(Uuid, String)> = sqlx::query_as(
        "select id, status from executions where status in ('pending', 'processing') \
         and updated_at < now() - make_interval(secs => $1) order by updated_at limit $2",
    )
    .bind(age.as_secs_f64())
    .bind(BATCH)
    .fetch_all(database)
    .await
    .map_err(|error| format!("database: {error}"))?;
    if stale.is_empty() {
        return Ok(Settled::default());
    }
    let mut inspector = Inspector::connect(redis_url, REDIS_TIMEOUT).await.map_err(|error| error.to_string())?;
    let mut settled = Settled::default();
    for (id, status) in stale {
        let job =
            inspector.job(prefix, masstock_queue::QUEUE, &id.to_string()).await.map_err(|error| error.to_string())?;
        match job {
            Some(job) if job.state == "failed" => {
                let reason = job.failed_reason.unwrap_or_default();
                tracing::warn!(execution_id = %id, %reason, "the job failed without settling its execution");
                mark_finished(database, id, ExecutionStatus::Failed, Some(&public_reason(&reason)))
                    .await
                    .map_err(|error| format!("database: {error}"))?;
                settled.failed += 1;
            }
            None if status == "processing" => {
                tracing::warn!(execution_id = %id, "the job of a processing execution is gone; it waits again");
                sqlx::query("update executions set status = 'pending', updated_at = now() where id = $1 and status = 'processing'")
                    .bind(id)
                    .execute(database)
                    .await
                    .map_err(|error| format!("database: {error}"))?;
                settled.requeued += 1;
            }
            _ => {}
        }
    }
    Ok(settled)
}

/// What users may read of a job's failure reason: Gemini's words are theirs, ours are not.
fn public_reason(reason: &str) -> String {
    if reason.starts_with("every prompt failed") || reason.starts_with("gemini") {
        truncate(reason)
    } else if reason.contains("stalled more than allowable limit") {
        "the worker processing this execution stopped more than once; start it again".to_owned()
    } else {
        INTERNAL_FAILURE.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gemini_reasons_reach_users() {
        assert_eq!(
            public_reason("every prompt failed; prompt 1: gemini refused"),
            "every prompt failed; prompt 1: gemini refused"
        );
        assert_eq!(
            public_reason("job stalled more than allowable limit"),
            "the worker processing this execution stopped more than once; start it again"
        );
        assert_eq!(public_reason("database: pool timed out while waiting for an open connection"), INTERNAL_FAILURE);
    }
}
