//! A stand-in for Google's Gemini API that speaks its REST format, for tests and the local environment.
//!
//! The real API is paid and out of reach from the test machine, so the worker's tests and
//! `deploy --env local` point `GEMINI_BASE_URL` at this server instead. It answers
//! `POST /v1beta/models/{model}:generateContent` the way Gemini does: a candidate holding a text part
//! and an `inlineData` part with a real PNG (64 pixels on its long side, colours derived from the
//! prompt, so different prompts give different images), and errors in Google's `{"error": {...}}`
//! format with the same codes, statuses, messages and `details` (`RetryInfo`, `QuotaFailure`,
//! `ErrorInfo`).
//!
//! ```no_run
//! use std::time::Duration;
//! use masstock_fake_gemini::{FakeGemini, Settings};
//!
//! let gemini = FakeGemini::start(Settings::default().with_api_key("test-key")).unwrap();
//! let base_url = gemini.url(); // GEMINI_BASE_URL, e.g. `http://127.0.0.1:40123`
//! gemini.rate_limit_burst(2, Duration::from_secs(2)); // the next two requests answer 429
//! // ... run the worker ...
//! assert!(gemini.max_requests_in_window(Duration::from_secs(60)) <= 10);
//! ```
//!
//! # The order of checks
//!
//! Each request to the Gemini endpoint goes through these steps; the first that answers wins.
//!
//! 1. The API key, from the `x-goog-api-key` header or the `?key=` query parameter. None (or an
//!    empty one): 403 `PERMISSION_DENIED`. One other than [`Settings::api_key`] (when that is set):
//!    400 `INVALID_ARGUMENT` "API key not valid. Please pass a valid API key." with an `ErrorInfo`
//!    detail whose reason is `API_KEY_INVALID`.
//! 2. The method: anything but `generateContent` after the colon is a 404 `NOT_FOUND`.
//! 3. A rate-limit burst ([`FakeGemini::rate_limit_burst`]): 429 `RESOURCE_EXHAUSTED` with
//!    `RetryInfo.retryDelay` set to the burst's delay.
//! 4. The fake's own quota ([`Settings::requests_per_minute`]): a sliding 60 s window over the
//!    requests it admitted (those answered 429 here or before do not use a slot, as with Google);
//!    when full, 429 with `retryDelay` rounded up to the whole second when the oldest slot frees.
//! 5. The body: not JSON, unknown top-level fields, no `contents`, a role other than `user` or `model`,
//!    no text part, or an `imageConfig.aspectRatio` Gemini does not offer: 400 `INVALID_ARGUMENT`.
//! 6. Generation. The request waits [`Settings::latency`] plus up to [`Settings::latency_jitter`]
//!    plus any `[slow:MS]`, then answers by the prompt's triggers (below), then by
//!    [`Settings::failure_rate`] (a failed draw answers 503 `UNAVAILABLE` or 500 `INTERNAL`, half
//!    each, from a generator seeded by [`Settings::seed`], so a run of sequential requests is
//!    reproducible), then by [`Settings::image_mode`]. A `generationConfig.responseModalities` that
//!    leaves out `IMAGE` gets a text-only candidate.
//!
//! # Triggers in the prompt
//!
//! The prompt is the text parts of the `user` contents joined by newlines. These markers in it make
//! one prompt of a batch behave differently, deterministically:
//!
//! | trigger | answer |
//! |---|---|
//! | `[fail:CODE]` | that status (400–599) in Google's format, e.g. `[fail:400]`, `[fail:429]`, `[fail:500]` |
//! | `[flaky:N]` | 503 `UNAVAILABLE` the first N times this exact prompt arrives, then the normal answer |
//! | `[slow:MS]` | MS more milliseconds of latency (added to the configured latency) |
//! | `[noimage]` | 200 with a candidate holding only a text part, `finishReason` `STOP` |
//! | `[blocked]` | 200 with no candidates and `promptFeedback.blockReason` `SAFETY` |
//! | `[bloat:MIB]` | the image padded with MIB (1–64) MiB in a private chunk: a worker's memory limit test |
//!
//! When several apply, `[fail:…]` wins over `[flaky:…]`, which wins over the random failure rate;
//! `[blocked]` wins over `[noimage]`. A marker that does not parse (`[fail:abc]`, `[fail:200]`) is
//! ordinary prompt text. `[flaky:N]` counts the arrivals that reached generation (step 6);
//! [`FakeGemini::reset_requests`] forgets them.
//!
//! # Accounting
//!
//! Every request to `/v1beta/models/…` is recorded as it arrives ([`RecordedRequest`]), whatever it
//! is answered, because the worker's rate limiter limits the requests it *sends*:
//! [`FakeGemini::max_requests_in_window`] counts every arrival, rejected or not.
//!
//! # Control endpoints
//!
//! Under `/_fake/`, a prefix Gemini never uses, for tests in another process and for
//! `deploy --env local`; they take no API key:
//!
//! - `GET /_fake/stats`: `{"requests": N, "max_in_60s": M, "in_flight": I, "by_status": {"200": …}}`.
//! - `GET /_fake/requests`: every recorded request (the API key is never recorded).
//! - `GET /_fake/settings`, `POST /_fake/settings`: read or change the knobs with a partial JSON
//!   object: `api_key` (string or null), `latency_ms`, `latency_jitter_ms`, `failure_rate`, `seed`,
//!   `requests_per_minute` (number or null), `image_mode` (`image`, `text_only`, `prompt_blocked`),
//!   `rate_limit_burst` (`{"count": N, "retry_delay_ms": MS}`). Answers the settings in force.
//! - `POST /_fake/reset`: forgets the recorded requests, the `[flaky:N]` counts and the quota window.
//!
//! The API key is never logged, recorded or answered.

mod accounting;
pub mod cli;
mod control;
mod generate;
mod google_error;
mod png;
mod server;
mod settings;
mod state;

pub use accounting::{RecordedRequest, Stats};
pub use server::FakeGemini;
pub use settings::{ImageMode, Settings};
