//! End-to-end tests run through the real tools (nginx, docker-compose, Chromium) against what
//! masstockctl renders and the services it deploys. One test binary; `script/bootstrap` installs
//! the tools.

mod backup;
mod browser;
mod certs;
mod compose;
mod deploy;
mod diagnose;
mod doctor;
mod hardening;
mod nginx;
mod sandbox;
mod stack;
