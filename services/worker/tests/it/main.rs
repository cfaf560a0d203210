//! The worker's tests, in one binary: real worker processes against the bootstrap's PostgreSQL
//! and Redis (or a Redis of the test's own), the fake Gemini server, and the Python `bullmq`.
//!
//! They run the real binary: processing and per-prompt errors, retries to the last attempt, SIGKILL
//! mid-job (another worker finishes with one result per prompt), SIGTERM (in-flight prompt
//! finishes, job handed back, exit 0) and its grace expiring, a Redis with AOF restarted under
//! load, two workers under one rate limit over a real 60 s window, the health check, the Gemini
//! client's retry rules, and interop with Python `bullmq`.

mod crash;
mod gemini;
mod health;
mod interop;
mod processing;
mod support;
