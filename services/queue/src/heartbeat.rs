//! Where our worker's heartbeat lives in Redis: the string key `<prefix>:<queue>:heartbeat:<worker
//! id>`, written by `masstock-worker` (its `heartbeat.rs`) and read by [`crate::admin::Inspector`].
//!
//! The segment starts with `he` on purpose: the inspector's one `SCAN` finds queues and heartbeats
//! with the pattern `<prefix>:*:[hmi][ed]*` (`:meta`, `:id`, `:heartbeat:`).

/// The key segment after the queue name that holds the heartbeats.
pub const SEGMENT: &str = "heartbeat";

/// The key of `worker_id`'s heartbeat on `prefix:queue`.
#[must_use]
pub fn key(prefix: &str, queue: &str, worker_id: &str) -> String {
    format!("{prefix}:{queue}:{SEGMENT}:{worker_id}")
}

/// The worker id in what follows `<prefix>:<queue>:` in a key, when that is a heartbeat's
/// (`heartbeat:<worker id>`, the id not empty).
#[must_use]
pub fn worker_id(after_queue: &str) -> Option<&str> {
    after_queue.strip_prefix(SEGMENT)?.strip_prefix(':').filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_and_read_alike() {
        let key = key("bull", "workflow-queue", "host-7");
        assert_eq!(key, "bull:workflow-queue:heartbeat:host-7");
        assert_eq!(worker_id(key.strip_prefix("bull:workflow-queue:").unwrap()), Some("host-7"));
        assert_eq!(worker_id("heartbeat:"), None);
        assert_eq!(worker_id("heartbeats:x"), None);
        assert_eq!(worker_id("meta"), None);
    }
}
