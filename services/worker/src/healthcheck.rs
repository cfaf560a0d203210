//! `masstock-worker healthcheck`: the container's health check. Healthy when Redis answers with
//! the configured password and this container's worker wrote its heartbeat recently.
//!
//! It pings Redis with the configured password and requires this worker's beat to be younger than
//! 30 s.

use std::time::Duration;

use crate::config::QueueArgs;
use crate::heartbeat;

/// Why the check failed, in words for `docker inspect`.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Config(#[from] masstock_kit::config::ConfigError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(String),
    #[error("no heartbeat from worker `{0}` in the last {secs} s: is `masstock-worker run` running here?", secs = heartbeat::TTL.as_secs())]
    NoHeartbeat(String),
    #[error("the last heartbeat of worker `{0}` is {1} s old")]
    Stale(String, u64),
}

/// Pings Redis and reads this worker's heartbeat; answers how old it is.
pub async fn check(args: &QueueArgs, timeout: Duration) -> Result<Duration, CheckError> {
    let redis_url = args.redis_url()?;
    let worker_id = args.worker_id()?;
    let key = heartbeat::key(&args.queue_prefix, &worker_id);
    let exchange = async {
        // Errors from the client can quote the URL, password included: keep their kind only.
        let redact =
            |error: redis::RedisError| CheckError::Redis(error.to_string().replace(redis_url.expose(), "[redis url]"));
        let client = redis::Client::open(redis_url.expose()).map_err(redact)?;
        let mut connection = client.get_multiplexed_async_connection().await.map_err(redact)?;
        let _: String = redis::cmd("PING").query_async(&mut connection).await.map_err(redact)?;
        heartbeat::read(&mut connection, &key).await.map_err(redact)
    };
    let beat = tokio::time::timeout(timeout, exchange).await.map_err(|_| CheckError::Timeout(timeout))??;
    let beat = beat.ok_or_else(|| CheckError::NoHeartbeat(worker_id.clone()))?;
    let age = Duration::from_millis(heartbeat::now_ms().saturating_sub(beat.at_ms));
    if age > heartbeat::TTL {
        return Err(CheckError::Stale(worker_id, age.as_secs()));
    }
    Ok(age)
}
