//! The API's routes, one module per area.

pub mod auth;
pub mod health;
