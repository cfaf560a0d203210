//! The API against the real PostgreSQL and Redis that `script/bootstrap` starts (run it if these
//! tests cannot connect). One test binary; the server runs in-process on a free port.

mod auth;
mod cli;
mod cors_and_limits;
mod executions;
mod health;
mod hostile_input;
mod logs;
mod round_trip;
mod schemathesis;
mod support;
