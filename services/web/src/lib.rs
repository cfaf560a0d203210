//! MasStock's static web server: one binary serves the app (a single-page application) and the
//! landing page, so every image we deploy is built the same way.
//!
//! [`site::router`] is the whole service for one folder: SPA routing like nginx's
//! `try_files $uri /index.html`, `GET /health`, `GET /config.json` from the environment, and the
//! caching rules of [`caching`]; compression and conditional requests come from tower-http's
//! `ServeDir` plus [`caching::etag`].
//!
//! `/health` answers `healthy`; `/config.json` tells the browser `APP_ENV`, `API_BASE_URL` and
//! `APP_URL`, so one image serves every environment. `CompressionLayer` compresses what has no
//! precompressed file, never a 206.
//!
//! The folders it serves live beside the crate:
//!
//! - `app/`: the app, plain HTML/CSS/ES modules with no build step and nothing inline (the CSP is
//!   `script-src 'self'; style-src 'self'`). `api.js` calls the API with
//!   `credentials: "include"`; on a 401 it refreshes once (concurrent 401s share one refresh,
//!   because a refresh token presented twice ends the session) and retries once. Views: login, new
//!   execution, history, execution (polls every 2 s, live region, gallery with downloads). Stable
//!   ids are the contract with the browser test.
//! - `vitrine/`: the landing page, static, French; `vitrine.js` points its app links at
//!   `/config.json`'s `app_url`.
//!
//! Tests: `tests/it` sends real HTTP requests (raw ones for traversal attempts) and runs the binary;
//! the app and the landing page must parse under html5lib's strict parser. The browser test lives
//! in the `masstock-tests` package (`tests/it/browser.rs`).

pub mod caching;
pub mod cli;
pub mod site;
