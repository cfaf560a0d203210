//! The API's routes, one module per area.

pub mod health;
