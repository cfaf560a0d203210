//! The Gemini quota: requests per minute to Gemini, shared by every worker process on the same
//! Redis ([`GeminiQuota`]: a worker takes a slot before each request, or waits for one).
//!
//! A sliding-window log: a sorted set holds the send time of each request of the last window,
//! and one Lua script (atomic on the server, timed by the server's clock, so that workers on
//! hosts whose clocks disagree still agree) either records a new request or answers how long
//! until the oldest one leaves the window.
//!
//! `GeminiQuota` keeps the log in `masstock:gemini-requests:<prefix>`: per queue prefix, not per
//! queue, because Gemini's quota belongs to the API key, which every queue of a deployment shares.
//! Members are random, so a restarted worker (same host name, pid 1) adds entries instead of
//! overwriting its previous life's. A wait for a slot ends when the worker is asked to stop: a
//! request not sent is handed back, not waited for. The window is 61 s, one second more than
//! Gemini's minute, so that a request's journey cannot put N+1 requests into a minute Gemini
//! observes: that would take the first of them to be delayed on its way more than a second longer
//! than the last.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::watch;

/// Gemini counts requests per minute. The window is a little longer so that a request's journey
/// to Gemini cannot put one more of them into any 60 s window Gemini observes.
pub const WINDOW: Duration = Duration::from_secs(61);

/// KEYS[1] the log; ARGV[1] limit, ARGV[2] window in ms, ARGV[3] a unique member.
/// Returns 0 when the request may go now, otherwise the milliseconds to wait.
const ACQUIRE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local window = tonumber(ARGV[2]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.floor((tonumber(oldest[2]) + window - now) / 1000) + 1
";

/// Where the log of `prefix`'s workers lives (tests give each run its own prefix).
#[must_use]
pub fn key(prefix: &str) -> String {
    format!("masstock:gemini-requests:{prefix}")
}

/// Why no slot was taken.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// The worker is stopping: a request not sent yet is better not sent at all.
    #[error("the worker is stopping")]
    Stopping,
}

/// Takes a slot before each request to Gemini.
pub struct GeminiQuota {
    redis: ConnectionManager,
    script: redis::Script,
    key: String,
    limit: u32,
    stopping: watch::Receiver<bool>,
}

impl std::fmt::Debug for GeminiQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiQuota").field("key", &self.key).field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl GeminiQuota {
    /// At most `requests_per_minute` (at least 1) requests in any window, across every process
    /// using `key`. A wait for a slot ends early when `stopping` turns true.
    #[must_use]
    pub fn new(
        redis: ConnectionManager,
        key: String,
        requests_per_minute: u32,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self { redis, script: redis::Script::new(ACQUIRE), key, limit: requests_per_minute.max(1), stopping }
    }

    /// Waits until a request may be sent, and counts it.
    pub async fn acquire(&self) -> Result<(), QuotaError> {
        // Unique across processes and restarts: a restarted worker with the same name and pid
        // must not overwrite the entries of its previous life, which still count.
        let member = uuid::Uuid::new_v4().simple().to_string();
        let mut waited = false;
        loop {
            let mut connection = self.redis.clone();
            let wait_ms: u64 = self
                .script
                .key(&self.key)
                .arg(self.limit)
                .arg(u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX))
                .arg(&member)
                .invoke_async(&mut connection)
                .await?;
            if wait_ms == 0 {
                return Ok(());
            }
            if !waited {
                tracing::info!(wait_ms, limit = self.limit, "gemini rate limit reached; waiting for a slot");
                waited = true;
            }
            let mut stopping = self.stopping.clone();
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                Ok(_) = stopping.wait_for(|stopping| *stopping) => return Err(QuotaError::Stopping),
            }
        }
    }
}
