//! Adds the jobs of `pending` executions that have none, in two passes:
//!
//! - **marked** ([`offer_marked`], every [`MARKED_INTERVAL`]): executions the API stored while
//!   Redis was away (`enqueue_failed_at` set by `POST /api/v1/executions`). The request was
//!   answered 202; the job is added here as soon as Redis answers again, and the mark cleared.
//! - **orphans** ([`sweep_pending`], every [`INTERVAL`]): every execution pending for longer than
//!   [`ORPHAN_AGE`], whatever its mark: the process that stored it may have died before adding
//!   the job or marking it, and a worker's reconcile puts a `processing` execution whose job
//!   vanished back to `pending`. An execution whose job is simply still waiting is offered too,
//!   and left as it is.
//!
//! Both read every such execution, by pages of [`PAGE`] in keyset order, not only the oldest few,
//! and stop at the first add that fails (Redis is away again; the next pass resumes).
//!
//! Adding is idempotent because the job id is the execution id: BullMQ's `addJob` script returns
//! the existing job when its key exists (waiting, active, delayed or failed), so the sweeper, the
//! API's own retry and several API instances can offer the same execution without a second job.
//! The one gap, a job completed and removed (`removeOnComplete`) between the sweeper reading a
//! `pending` row and adding it, ends in the worker, which skips an execution that is finished.

use std::time::Duration;

use chrono::{DateTime, Utc};
use masstock_queue::WorkflowJob;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;

/// An execution pending for longer than this, with no job, is an orphan.
pub const ORPHAN_AGE: Duration = Duration::from_secs(120);
/// How often to look for orphans.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// How often to look for marked executions: the longest a submission accepted while Redis was
/// away waits for its job once Redis is back, give or take one add.
pub const MARKED_INTERVAL: Duration = Duration::from_secs(2);
/// Executions read per query.
pub const PAGE: i64 = 100;

/// A pending execution, as its job needs it.
#[derive(Debug, sqlx::FromRow)]
struct PendingRow {
    id: Uuid,
    prompts: serde_json::Value,
    config: serde_json::Value,
    premium: bool,
    created_at: DateTime<Utc>,
}

/// One orphan pass: offers the job of every execution pending for longer than `older_than`.
/// Returns how many were offered.
pub async fn sweep_pending(state: &AppState, older_than: Duration) -> Result<usize, ApiError> {
    offer_pages(state, Pass::Orphans(older_than)).await
}

/// One marked pass: offers the job of every pending execution the API could not queue. Returns
/// how many were offered.
pub async fn offer_marked(state: &AppState) -> Result<usize, ApiError> {
    // A mark left on an execution that is no longer pending (its add timed out yet reached Redis,
    // and the job ran) means nothing: drop it.
    sqlx::query(
        "update executions set enqueue_failed_at = null where enqueue_failed_at is not null and status <> 'pending'",
    )
    .execute(&state.db)
    .await?;
    offer_pages(state, Pass::Marked).await
}

/// Which pending executions a pass reads.
#[derive(Debug, Clone, Copy)]
enum Pass {
    /// Those marked by the API, whatever their age.
    Marked,
    /// Those older than this, marked or not.
    Orphans(Duration),
}

/// Offers the jobs of the pending executions of `pass`, page after page, clearing each one's mark
/// once its job is added.
async fn offer_pages(state: &AppState, pass: Pass) -> Result<usize, ApiError> {
    let (everyone, older_than) = match pass {
        Pass::Marked => (false, Duration::ZERO),
        Pass::Orphans(age) => (true, age),
    };
    let seconds = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
    // Before any row: PostgreSQL cannot compare chrono's `MIN_UTC`.
    let mut after = (DateTime::<Utc>::UNIX_EPOCH, Uuid::nil());
    let mut offered = 0;
    loop {
        let rows: Vec<PendingRow> = sqlx::query_as(
            "select e.id, e.prompts, e.config, u.premium, e.created_at from executions e join users u on u.id = e.user_id
             where e.status = 'pending' and (e.created_at, e.id) > ($1, $2)
               and ($3 or e.enqueue_failed_at is not null) and e.created_at <= now() - make_interval(secs => $4)
             order by e.created_at, e.id limit $5",
        )
        .bind(after.0)
        .bind(after.1)
        .bind(everyone)
        .bind(seconds)
        .bind(PAGE)
        .fetch_all(&state.db)
        .await?;
        let Some(last) = rows.last() else { return Ok(offered) };
        after = (last.created_at, last.id);
        let full_page = rows.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
        for row in rows {
            let job = WorkflowJob {
                execution_id: row.id,
                prompts: serde_json::from_value(row.prompts).unwrap_or_default(),
                config: row.config,
            };
            state.add_job(&job, row.premium).await?;
            offered += 1;
            let cleared = sqlx::query(
                "update executions set enqueue_failed_at = null where id = $1 and enqueue_failed_at is not null",
            )
            .bind(row.id)
            .execute(&state.db)
            .await?;
            // Only a marked execution surely had no job: an orphan's may have been waiting.
            if cleared.rows_affected() > 0 {
                state.metrics.job_enqueued();
            }
        }
        if !full_page {
            return Ok(offered);
        }
    }
}

/// Runs both passes, each at its interval, until `stop` resolves.
pub async fn run(state: AppState, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut orphan_ticks = tokio::time::interval(INTERVAL);
    orphan_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut marked_ticks = tokio::time::interval(MARKED_INTERVAL);
    marked_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = marked_ticks.tick() => match offer_marked(&state).await {
                Ok(0) => {}
                Ok(offered) => tracing::info!(offered, "executions accepted while redis was away are queued"),
                Err(error) => tracing::debug!(%error, "the marked executions wait for redis"),
            },
            _ = orphan_ticks.tick() => match sweep_pending(&state, ORPHAN_AGE).await {
                Ok(0) => {}
                Ok(offered) => tracing::info!(offered, "pending executions offered to the queue again"),
                Err(error) => tracing::warn!(%error, "the pending sweep failed"),
            },
        }
    }
}
