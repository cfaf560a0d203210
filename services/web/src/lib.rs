//! MasStock's static web server: one binary serves the app (a single-page application) and the
//! landing page, so every image we deploy is built the same way.
//!
//! [`site::router`] is the whole service for one folder: SPA routing like nginx's
//! `try_files $uri /index.html`, `GET /health`, `GET /config.json` from the environment, and the
//! caching rules of [`caching`]; compression and conditional requests come from tower-http's
//! `ServeDir` plus [`caching::etag`].

pub mod caching;
pub mod cli;
pub mod site;
