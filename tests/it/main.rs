//! End-to-end tests of what masstockctl renders, run through the real tools (nginx,
//! docker-compose). One test binary; `script/bootstrap` installs the tools.

mod compose;
mod nginx;
mod sandbox;
