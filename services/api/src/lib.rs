//! MasStock's HTTP API: the routes the app calls, behind the host nginx.
//!
//! [`app::router`] builds the whole service from an [`app::AppState`], so tests drive the same
//! router production serves; [`masstock_kit::server::run`] serves it until a shutdown future resolves.

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
