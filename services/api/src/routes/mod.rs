//! The API's routes, one module per area.

pub mod auth;
pub mod executions;
pub mod health;
pub mod workflows;
