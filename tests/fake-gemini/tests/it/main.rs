//! The fake Gemini server over real HTTP, in process and as the `fake-gemini` binary. One test binary.

mod accounting;
mod binary;
mod control;
mod errors;
mod generate;
mod rate_limits;
mod support;
mod triggers;
