//! The worker's heartbeat: proof, kept in Redis, that this process is alive and taking jobs.
//!
//! `<prefix>:<queue>:heartbeat:<worker id>` (the queue crate's `heartbeat::key`) holds
//! `{"worker_id", "host", "pid", "concurrency", "active", "started_at_ms", "at_ms"}` and expires
//! after [`TTL`]; it is written every [`INTERVAL`]. `masstock-worker healthcheck` reads it, and `masstockctl queue ls` lists it.
//!
//! In numbers: the TTL is 30 s, a beat every 10 s, and the key is removed on a clean stop.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};

/// How often the heartbeat is written.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// How long a heartbeat lasts: three missed beats and the worker is presumed dead.
pub const TTL: Duration = Duration::from_secs(30);

/// This worker's heartbeat key on the workflow queue (the format is the queue crate's).
#[must_use]
pub fn key(prefix: &str, worker_id: &str) -> String {
    masstock_queue::heartbeat::key(prefix, masstock_queue::QUEUE, worker_id)
}

/// One beat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub worker_id: String,
    pub host: String,
    pub pid: u32,
    pub concurrency: usize,
    pub active: usize,
    pub started_at_ms: u64,
    pub at_ms: u64,
}

/// Milliseconds since the epoch.
#[must_use]
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// Writes `beat`, to expire after [`TTL`].
pub async fn write(redis: &mut redis::aio::ConnectionManager, key: &str, beat: &Beat) -> redis::RedisResult<()> {
    let value = serde_json::to_string(beat).unwrap_or_default();
    redis.pset_ex(key, value, u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX)).await
}

/// Removes the heartbeat of a worker that stopped cleanly.
pub async fn remove(redis: &mut redis::aio::ConnectionManager, key: &str) -> redis::RedisResult<()> {
    redis.del(key).await
}

/// Reads a heartbeat; `None` when it expired or never was.
pub async fn read<C: redis::aio::ConnectionLike + Send>(redis: &mut C, key: &str) -> redis::RedisResult<Option<Beat>> {
    let value: Option<String> = redis::cmd("GET").arg(key).query_async(redis).await?;
    Ok(value.and_then(|value| serde_json::from_str(&value).ok()))
}
