//! The async runtime a synchronous command runs its Engine API, Redis, ACME and HTTP work on.

use std::future::Future;

/// The runtime could not start (the cause is in the message, as the operator has always seen it).
#[derive(Debug, thiserror::Error)]
#[error("failed to start the async runtime: {0}")]
pub struct RuntimeError(std::io::Error);

/// Runs `work` to completion on a fresh two-thread runtime, then drops whatever `work` gave up on.
pub fn block_on<T>(work: impl Future<Output = T>) -> Result<T, RuntimeError> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(RuntimeError)?;
    let output = runtime.block_on(work);
    // Whatever is still running was given up on by `work` (a `spawn_blocking` past its timeout,
    // such as `statvfs` on a hung network mount): dropping the runtime would wait for it.
    runtime.shutdown_background();
    Ok(output)
}

/// Resolves when the process is asked to stop: SIGINT (Ctrl-C) or SIGTERM (`systemctl stop`,
/// `docker stop`). Once awaited, those signals no longer kill the process: the caller decides
/// what to undo first. Never resolves when the handlers cannot be installed.
pub async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}
