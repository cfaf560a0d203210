//! MasStock's HTTP API: the routes the app calls, behind the host nginx.
//!
//! [`app::router`] builds the whole service from an [`app::AppState`], so tests drive the same
//! router production serves; [`masstock_kit::server::run`] serves it until a shutdown future resolves.
//!
//! # Modules
//!
//! - `cli`: `serve` (the default when no command is named), `migrate`, `user add --password-stdin`
//!   and `healthcheck [--url]` (the service kit's). `healthcheck` is the contract deploy.toml's
//!   `http` health checks rely on: images have no shell and no wget, so the binary checks itself
//!   with one HTTP/1.0 GET and succeeds on a 2xx. A missing variable is reported by its environment
//!   name (`DATABASE_URL`), not by clap's flag.
//! - `config`: `ServeArgs` is read from the environment with `#[arg(long, env)]`. It is validated
//!   into `Settings` after parsing, so that no message can echo a secret. `Secret` has a redacted
//!   `Debug`. `JWT_SECRET` must be at least 32 bytes.
//! - `app`: `AppState` (a lazy `PgPool` and a `redis::Client`) and `router`, the whole service as a
//!   function. Request ids use tower-http (an incoming `X-Request-Id` is kept, otherwise a UUID is
//!   made) and appear in the access-log span. Shutdown is an argument of the kit's `server::run`,
//!   so tests pass their own; in-flight requests get `grace` to finish.
//! - `error`: `ApiError` is the response. Each variant has its status, and `Internal` is logged
//!   while the client sees only `{"error":"internal"}`.
//! - `routes::health`: `/health` touches nothing. `/health/ready` probes PostgreSQL and Redis with
//!   a 2 s timeout each and names what failed.
//! - `auth` and `routes::auth` hold the sessions. The access token is an HS256 JWT that lasts 15
//!   minutes, sent as a cookie on `/` or as `Authorization: Bearer`. The refresh token is opaque:
//!   32 random bytes that last 7 days, sent as a cookie on `/api/v1/auth` only, and only its SHA-256
//!   is stored. Refresh claims a token and inserts its successor in one transaction, and refuses a
//!   token whose family has any revoked session, or whose family signed in longer ago than
//!   `SESSION_ABSOLUTE_LIFETIME` (30 days by default, from deploy.toml's `[sessions]`): refreshing
//!   slides the token, never the session's end (OWASP's absolute timeout), and a successor expires
//!   at that end if it comes before its own 7 days. Two concurrent refreshes of one token therefore
//!   end the family: the loser is a replay, so it revokes the family, the winner's successor
//!   included. A refresh racing a logout cannot leave a live token. Both races are tested. Password
//!   checks run on the blocking pool behind a semaphore (two per core), because each argon2 check
//!   takes 19 MiB. Login verifies against a dummy argon2id hash when the e-mail is unknown, so both
//!   failures do the same work and give the same answer. `session.expiresAt` in the login answer is
//!   the access token's expiry, which tells the app when to refresh. Cookies are built and read by
//!   hand (`auth::cookies`), because two attributes did not justify a dependency.
//! - `validation`: `Valid<T>` is the JSON extractor. It answers 415 without
//!   `Content-Type: application/json`, 413 over 512 KiB, and 400
//!   `{"error":"validation_failed","issues":[{path,message}]}` otherwise. Paths come from
//!   `serde_path_to_error` (`prompts[3]`), and rules serde cannot express implement `Validate`.
//!   Axum's own path and query rejections are mapped to the JSON validation answer, and NUL
//!   characters are refused in the terms, not by PostgreSQL. A panic in a handler becomes
//!   the usual `{"error":"internal"}` with its request id. Each rule has its twin in the OpenAPI
//!   document, built from the same constants (lengths in characters, a not-blank pattern whose
//!   white space is `char::is_whitespace`'s, hyphenated UUIDs only). What is stored reads back
//!   unchanged: `config` refuses NUL and numbers beyond ±(2^53 − 1) with the field's path
//!   (`config.n`), and the crate parses JSON with `serde_json`'s `float_roundtrip`, so the full
//!   decimal PostgreSQL prints for a stored double (`1e308` as 309 digits) reads back as that
//!   double instead of overflowing and failing the user's whole listing.
//! - `routes::executions`, creating an execution: the row is stored first, so a worker that takes
//!   the job at once finds it, and then the job is added. A failed add is tried once more on a new
//!   connection (a Redis that restarted leaves the shared one broken). When Redis is still away,
//!   the execution stays `pending`, marked (`enqueue_failed_at`), and the client gets 202 as for a
//!   queued one: the sweeper adds the job within seconds of Redis answering again. A submission
//!   is never withdrawn for Redis's sake (issue 16; it used to be deleted and answered 503). The
//!   queue connection is not held under a lock while connecting, and a failure is remembered for
//!   5 s, so a hanging Redis makes execution requests fall back to the mark at once rather than
//!   queue up. The `BullMQ` job id is the execution id, so adding an execution
//!   twice leaves one job. The other execution routes: lists use keyset pagination on
//!   `(created_at, id)`, with an opaque cursor `<microseconds>.<id as 32 hex digits>` that a
//!   pattern in the document describes exactly; a well-formed `workflowId` that names no
//!   workflow is a 422 (the body is valid, what it names is not); result files are read from `UPLOADS_DIR` only
//!   when their stored location is a plain relative path; another user's execution is a 404.
//! - `sweeper`: every 2 s it adds the jobs of the marked executions and clears their marks; every
//!   minute it offers the queue the job of every execution pending for more than two minutes
//!   (the process died between the insert and the add, or a worker put it back), by pages of 100,
//!   all of them. Adding is idempotent (job id = execution id), so an execution whose job is
//!   simply waiting is left alone, and several API instances may sweep at once.
//! - `cors`: our own middleware rather than tower-http's layer, which sends some
//!   `Access-Control-*` headers whatever the origin, while the issue wants none for an origin that
//!   is not allowed. Preflights are answered with 204.
//! - `rate_limit`: counted under one key per client, `<RATE_LIMIT_PREFIX>:<scope>:<client>`, by one
//!   Lua script (`INCR`, plus `PEXPIRE` on the first request), on the state's single shared Redis
//!   connection (`ConnectionManager`; opening a connection per request is what the benchmark
//!   caught). The general limit covers everything but `/health`, `/health/ready` and `/metrics`;
//!   the login limit applies on top of it. The answer carries `RateLimit-Limit`, `-Remaining`,
//!   `-Reset` and `-Policy`, and on a 429 `Retry-After`. The client address is the TCP peer, or
//!   what a peer in `TRUSTED_PROXIES` reports (`X-Real-IP`, else the nearest untrusted
//!   `X-Forwarded-For` hop); an IPv6 client counts with its whole /64, an IPv4 client alone. Each
//!   count may take 25 ms, and a circuit breaker stops calling a Redis that failed three times in a
//!   row for 5 s, then probes it with one request at a time, so a hanging Redis costs a request a
//!   few milliseconds at most. When Redis is down the limits **fail open**, logged as the breaker
//!   opens (a judgement call: executions are unavailable then anyway, argon2 bounds password
//!   tries, and failing closed would turn a Redis outage into an API outage).
//! - `metrics`: `/metrics`, a registry kept in `AppState` rather than a global recorder, so each API
//!   instance in a test process counts only its own requests. Requests are counted by method, route
//!   template and status, with a latency histogram; `jobs_enqueued_total` counts jobs added to the
//!   queue. Only a direct caller on loopback or a private network gets an answer; a request that
//!   carries `X-Real-IP` or `X-Forwarded-For` came through the edge and gets a 404, and the
//!   rendered nginx site returns 404 for `/metrics` too.
//! - `openapi`: utoipa builds the document from `#[utoipa::path]` on each handler and from the
//!   `ToSchema` types the handlers answer with (`Execution`, `ErrorBody`, …). A `Modify` adds the
//!   answers every operation can give: 500, 429 where the limit applies, 503 where a dependency is
//!   read, 401 where credentials are, 413 and 415 where a body is. The response and the document
//!   come from the same type, so they cannot drift. A test compares the document's routes with
//!   the router's and runs `openapi-spec-validator` on it, which has already caught one defect:
//!   two operations shared the id `list`; another runs Schemathesis (`--checks all`, every phase,
//!   200 examples per operation), which found the constraints and statuses the document lacked.
//! - `auth::extract`: an `Authorization` header, when present, decides alone; anything but a
//!   valid `Bearer` token is a 401 whatever the cookie says.
//!
//! Logs are JSON lines when `APP_ENV=production`, readable lines otherwise, always on stderr. The
//! request span carries the user id once the caller is known.
//!
//! Tests (`tests/it`) serve the router in-process on a free port against the bootstrap's PostgreSQL
//! and Redis. `#[sqlx::test]` gives each test its own database, and the binary is run for the
//! command-line paths.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod cors;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod sweeper;
pub mod users;
pub mod validation;
