//! The worker's tests, in one binary: real worker processes against the bootstrap's PostgreSQL
//! and Redis (or a Redis of the test's own), the fake Gemini server, and the Python `bullmq`.

mod crash;
mod gemini;
mod health;
mod interop;
mod processing;
mod support;
