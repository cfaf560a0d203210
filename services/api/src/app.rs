//! The service as a function: shared state in, the whole `Router` out.

use std::time::Duration;

use axum::http::{HeaderName, Request};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::error::ApiError;
use crate::routes;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: sqlx::PgPool,
    /// For probes that must open a connection of their own (readiness).
    pub redis: redis::Client,
    /// One multiplexed connection shared by every request, reconnecting by itself; it connects
    /// on first use, so the API starts while Redis is down.
    pub redis_shared: redis::aio::ConnectionManager,
    pub settings: std::sync::Arc<Settings>,
    /// Verified against when an e-mail is unknown, so a failed login costs the same either way.
    pub dummy_password_hash: std::sync::Arc<str>,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Password checks in flight: argon2 takes 19 MiB and a core's time each, so they are
    /// bounded whatever the number of clients.
    pub password_checks: std::sync::Arc<tokio::sync::Semaphore>,
    /// Connected on first use, and again after a failure, so the API starts without Redis.
    queue: std::sync::Arc<tokio::sync::Mutex<QueueSlot>>,
    /// Skips the rate limiter's Redis calls while Redis fails or hangs.
    pub limiter_breaker: std::sync::Arc<crate::rate_limit::Breaker>,
    /// Counts the queue connections opened, to tell them apart.
    queue_connections: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// How long the API waits for Redis when adding a job, before it tries once more on a new
/// connection and then leaves the job to the sweeper (`sweeper.rs`).
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

impl AppState {
    /// The workflow queue; `Unavailable("redis")` when Redis cannot be reached now. The lock is
    /// never held while connecting, and a failure is remembered for a few seconds, so requests
    /// do not queue up behind a Redis that hangs.
    pub async fn queue(&self) -> Result<masstock_queue::WorkflowQueue, ApiError> {
        self.queue_and_generation().await.map(|(queue, _)| queue)
    }

    /// Adds an execution's job, and once more on a new connection when the first try fails: a
    /// Redis that restarted leaves the shared connection broken (`broken pipe`) until it is
    /// opened again. `Unavailable("redis")` when Redis is still away; the caller keeps the
    /// execution `pending` and marks it for the sweeper. Adding twice is harmless: the job id is
    /// the execution id.
    pub async fn add_job(&self, job: &masstock_queue::WorkflowJob, premium: bool) -> Result<(), ApiError> {
        let (queue, generation) = self.queue_and_generation().await?;
        let Err(first) = queue.add(job, premium, QUEUE_TIMEOUT).await else { return Ok(()) };
        tracing::info!(error = %first, execution = %job.execution_id, "cannot add the job; trying once more on a new connection");
        self.forget_queue(generation).await;
        let (queue, _) = self.queue_and_generation().await?;
        queue.add(job, premium, QUEUE_TIMEOUT).await.map(drop).map_err(|error| {
            tracing::warn!(%error, execution = %job.execution_id, "cannot add the job on a new connection either");
            ApiError::Unavailable("redis")
        })
    }

    /// The queue and which connection it is, so that a request whose add failed replaces that
    /// connection only, not one another request has opened since.
    async fn queue_and_generation(&self) -> Result<(masstock_queue::WorkflowQueue, u64), ApiError> {
        const REMEMBER_FAILURE: Duration = Duration::from_secs(5);
        {
            let slot = self.queue.lock().await;
            match &*slot {
                QueueSlot::Connected(queue, generation) => return Ok(((**queue).clone(), *generation)),
                QueueSlot::Failed(when) if when.elapsed() < REMEMBER_FAILURE => {
                    return Err(ApiError::Unavailable("redis"))
                }
                _ => {}
            }
        }
        let connected = masstock_queue::WorkflowQueue::connect(
            self.settings.redis_url.expose(),
            &self.settings.queue_prefix,
            QUEUE_TIMEOUT,
        )
        .await;
        let mut slot = self.queue.lock().await;
        match connected {
            Ok(queue) => {
                let generation = self.queue_connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *slot = QueueSlot::Connected(Box::new(queue.clone()), generation);
                Ok((queue, generation))
            }
            Err(error) => {
                tracing::warn!(%error, "cannot reach the queue");
                *slot = QueueSlot::Failed(std::time::Instant::now());
                Err(ApiError::Unavailable("redis"))
            }
        }
    }

    /// Drops connection `generation` if it is still the current one, so the next use opens another.
    async fn forget_queue(&self, generation: u64) {
        let mut slot = self.queue.lock().await;
        if matches!(&*slot, QueueSlot::Connected(_, current) if *current == generation) {
            *slot = QueueSlot::Unconnected;
        }
    }
}

/// The queue connection and its generation, or when connecting last failed.
#[derive(Debug, Default)]
enum QueueSlot {
    #[default]
    Unconnected,
    Connected(Box<masstock_queue::WorkflowQueue>, u64),
    Failed(std::time::Instant),
}

impl AppState {
    /// Connections are opened lazily: the API starts, and reports not ready, while PostgreSQL or
    /// Redis is down.
    pub fn new(settings: Settings) -> Result<Self, crate::config::ConfigError> {
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(settings.database_url.expose())
            .map_err(|_| crate::config::ConfigError {
                variable: "DATABASE_URL",
                problem: "cannot be parsed as a PostgreSQL URL".into(),
            })?;
        let redis = redis::Client::open(settings.redis_url.expose()).map_err(|_| crate::config::ConfigError {
            variable: "REDIS_URL",
            problem: "cannot be parsed as a Redis URL".into(),
        })?;
        // Short timeouts: when Redis is down, requests must not wait on it (limits fail open).
        let shared_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let redis_shared =
            redis::aio::ConnectionManager::new_lazy_with_config(redis.clone(), shared_config).map_err(|error| {
                crate::config::ConfigError {
                    variable: "REDIS_URL",
                    problem: format!("cannot prepare a connection: {:?}", error.kind()),
                }
            })?;
        let dummy_password_hash = crate::users::hash_password("no account has this password").map_err(|error| {
            crate::config::ConfigError {
                variable: "JWT_SECRET",
                problem: format!("cannot prepare password hashing: {error}"),
            }
        })?;
        Ok(Self {
            db,
            redis,
            redis_shared,
            settings: std::sync::Arc::new(settings),
            dummy_password_hash: dummy_password_hash.into(),
            metrics: std::sync::Arc::default(),
            password_checks: std::sync::Arc::new(tokio::sync::Semaphore::new(
                2 * std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            )),
            queue: std::sync::Arc::default(),
            limiter_breaker: std::sync::Arc::default(),
            queue_connections: std::sync::Arc::default(),
        })
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route, with request ids, access logs, CORS and rate limits.
pub fn router(state: AppState) -> Router {
    let origins = crate::cors::AllowedOrigins::new(&state.settings.cors_origins);
    let metrics = state.metrics.clone();
    Router::new()
        .route("/metrics", axum::routing::get(crate::metrics::endpoint))
        .route("/api/v1/openapi.json", axum::routing::get(crate::openapi::serve))
        .merge(routes::health::routes())
        .merge(routes::auth::routes())
        .merge(routes::workflows::routes())
        .merge(routes::executions::routes())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::rate_limit::limit))
        // `Router::layer` runs after routing, so the matched route template is known; unmatched
        // requests are counted too, as `unmatched`.
        .layer(axum::middleware::from_fn_with_state(metrics, crate::metrics::track))
        .with_state(state)
        // CORS outside the limiter: a preflight is answered without being counted.
        .layer(axum::middleware::from_fn_with_state(origins, crate::cors::cors))
        // Bodies are small JSON documents: 512 KiB holds 50 prompts of 2000 characters even when
        // every character takes 4 bytes of UTF-8.
        .layer(axum::extract::DefaultBodyLimit::max(512 * 1024))
        // A panic in a handler is answered as any internal error, with its request id.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            axum::response::IntoResponse::into_response(ApiError::Internal("a handler panicked".into()))
        }))
        // Outermost last: the id is set first, logged by the trace span, and sent back.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let request_id = request
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id,
                        user_id = tracing::field::Empty,
                    )
                })
                .on_response(|response: &axum::response::Response, latency: Duration, _span: &tracing::Span| {
                    tracing::info!(
                        status = response.status().as_u16(),
                        latency_ms = latency.as_secs_f64() * 1000.0,
                        "response"
                    );
                }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}
