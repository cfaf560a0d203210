//! Re-adds the job of any execution left `pending` without one: the process that stored it died
//! before it could add the job. Adding is idempotent (the job id is the execution id), so an
//! execution whose job is simply still waiting is left as it is.

use std::time::Duration;

use masstock_queue::WorkflowJob;

use crate::app::{AppState, QUEUE_TIMEOUT};

/// An execution pending for longer than this, with no job, is an orphan.
pub const ORPHAN_AGE: Duration = Duration::from_secs(120);
/// How often to look.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// One pass: returns how many executions were offered to the queue again.
pub async fn sweep_pending(state: &AppState, older_than: Duration) -> Result<usize, crate::error::ApiError> {
    let seconds = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
    let rows: Vec<(uuid::Uuid, serde_json::Value, serde_json::Value, bool)> = sqlx::query_as(
        "select e.id, e.prompts, e.config, u.premium from executions e join users u on u.id = e.user_id
         where e.status = 'pending' and e.created_at < now() - make_interval(secs => $1)
         order by e.created_at limit 100",
    )
    .bind(seconds)
    .fetch_all(&state.db)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let queue = state.queue().await?;
    let mut offered = 0;
    for (execution_id, prompts, config, premium) in rows {
        let job = WorkflowJob { execution_id, prompts: serde_json::from_value(prompts).unwrap_or_default(), config };
        match queue.add(&job, premium, QUEUE_TIMEOUT).await {
            Ok(_) => offered += 1,
            Err(error) => tracing::warn!(%error, execution = %execution_id, "cannot re-add a pending execution's job"),
        }
    }
    Ok(offered)
}

/// Sweeps every [`INTERVAL`] until `stop` resolves.
pub async fn run(state: AppState, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => match sweep_pending(&state, ORPHAN_AGE).await {
                Ok(0) => {}
                Ok(offered) => tracing::info!(offered, "pending executions offered to the queue again"),
                Err(error) => tracing::warn!(%error, "the pending sweep failed"),
            },
        }
    }
}
