//! The running fake: bound at once, served on its own thread and runtime, changed and read through
//! `&self`, stopped by `shutdown` or when dropped.

use std::future::IntoFuture as _;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::accounting::{max_in_window, RecordedRequest, Stats};
use crate::google_error::GoogleError;
use crate::settings::{ImageMode, Settings};
use crate::state::Shared;
use crate::{control, generate};

/// Gemini's routes and the fake's own under `/_fake/`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        // matchit cannot split `{model}:generateContent`, so the whole segment is captured.
        .route("/v1beta/models/{model_and_method}", post(generate::generate_content))
        .route("/_fake/stats", get(control::stats))
        .route("/_fake/requests", get(control::requests))
        .route("/_fake/settings", get(control::get_settings).post(control::post_settings))
        .route("/_fake/reset", post(control::reset))
        .fallback(|uri: axum::http::Uri| async move { GoogleError::not_found(uri.path()) })
        .layer(DefaultBodyLimit::max(generate::BODY_LIMIT))
        .with_state(shared)
}

/// A fake Gemini server listening on a local port. It serves from a thread of its own, so it works
/// the same from plain `#[test]`s, `#[tokio::test]`s of either flavour, and blocking clients.
#[derive(Debug)]
pub struct FakeGemini {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl FakeGemini {
    /// Binds `settings.host:settings.port` (127.0.0.1 and a free port by default) and starts serving.
    /// The port accepts connections when this returns.
    pub fn start(mut settings: Settings) -> io::Result<Self> {
        let listener = TcpListener::bind((settings.host, settings.port))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        settings.port = address.port();
        let shared = Arc::new(Shared::new(settings));
        let app = router(Arc::clone(&shared));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, serving) = mpsc::channel::<io::Result<()>>();
        let thread = thread::Builder::new().name(format!("fake-gemini-{}", address.port())).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready.send(Err(error));
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                // Not a graceful shutdown: a request sleeping on `[slow:…]` must not hold up a test's
                // end. Dropping the runtime below drops every connection.
                tokio::select! {
                    result = axum::serve(listener, app).into_future() => {
                        if let Err(error) = result {
                            tracing::error!(%error, "the fake Gemini server stopped serving");
                        }
                    }
                    _ = stopped => {}
                }
            });
        })?;
        serving
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the fake Gemini server's thread ended before serving")))?;
        tracing::info!(%address, "fake Gemini server listening");
        Ok(Self { address, shared, stop: Mutex::new(Some(stop)), thread: Mutex::new(Some(thread)) })
    }

    /// The base URL to give the worker as `GEMINI_BASE_URL`, e.g. `http://127.0.0.1:40123`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The address the server listens on.
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops serving and waits for the server's thread; open connections are dropped. The accounting
    /// stays readable. Calling it again does nothing.
    pub fn shutdown(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = thread.join();
        }
    }

    /// The settings in force (`port` is the one listened on).
    #[must_use]
    pub fn settings(&self) -> Settings {
        self.shared.lock().settings.clone()
    }

    /// Changes any knobs at once; `host` and `port` are only read at start. Returns the new settings.
    pub fn update_settings(&self, change: impl FnOnce(&mut Settings)) -> Settings {
        self.shared.update_settings(change)
    }

    /// Accept only this key; `None` accepts any non-empty key.
    pub fn set_api_key(&self, api_key: Option<&str>) {
        self.update_settings(|settings| settings.api_key = api_key.map(str::to_owned));
    }

    /// Generation takes `latency` plus up to `jitter`.
    pub fn set_latency(&self, latency: Duration, jitter: Duration) {
        self.update_settings(|settings| {
            settings.latency = latency;
            settings.latency_jitter = jitter;
        });
    }

    /// The fraction of requests reaching generation that fail with 503 or 500 (clamped to 0..=1).
    pub fn set_failure_rate(&self, failure_rate: f64) {
        self.update_settings(|settings| settings.failure_rate = failure_rate);
    }

    /// Restarts the generator behind the failure rate, the jitter and the response ids.
    pub fn set_seed(&self, seed: u64) {
        self.update_settings(|settings| settings.seed = seed);
    }

    /// The fake's own quota in a sliding 60 s window; `None` (or 0) turns it off.
    pub fn set_requests_per_minute(&self, requests_per_minute: Option<u32>) {
        self.update_settings(|settings| settings.requests_per_minute = requests_per_minute);
    }

    pub fn set_image_mode(&self, image_mode: ImageMode) {
        self.update_settings(|settings| settings.image_mode = image_mode);
    }

    /// The next `count` requests with an accepted key answer 429 `RESOURCE_EXHAUSTED` with a
    /// `RetryInfo` of `retry_delay`. Replaces any burst still pending.
    pub fn rate_limit_burst(&self, count: u32, retry_delay: Duration) {
        self.shared.rate_limit_burst(count, retry_delay);
    }

    /// Every request recorded so far, in arrival order.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests arrived (answered, rejected or in flight).
    #[must_use]
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// The largest number of requests that arrived in any window `[t, t + window)`: every arrival
    /// counts, rejected or not, since a client's rate limiter limits what it sends.
    #[must_use]
    pub fn max_requests_in_window(&self, window: Duration) -> usize {
        let instants: Vec<_> = self.shared.lock().requests.iter().map(|request| request.arrived_at).collect();
        max_in_window(instants, window)
    }

    /// What `GET /_fake/stats` answers.
    #[must_use]
    pub fn stats(&self) -> Stats {
        Stats::of(&self.shared.lock().requests)
    }

    /// Forgets the recorded requests, the `[flaky:N]` counts and the quota window; settings stay.
    pub fn reset_requests(&self) {
        self.shared.reset();
    }
}

impl Drop for FakeGemini {
    fn drop(&mut self) {
        self.shutdown();
    }
}
