//! Serving an axum router until told to stop: shutdown is an argument, so tests pass their own.

use std::future::{Future, IntoFuture as _};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish for
/// at most `grace`. Client addresses reach handlers as `ConnectInfo<SocketAddr>`.
pub async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stopping_sender, stopping) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stopping_sender.send(());
    };
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(signal);
    let server = server.into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        _ = stopping => {}
    }
    if let Ok(result) = tokio::time::timeout(grace, server).await {
        result
    } else {
        tracing::warn!(
            grace_seconds = grace.as_secs(),
            "requests still running after the grace period; stopping anyway"
        );
        Ok(())
    }
}
