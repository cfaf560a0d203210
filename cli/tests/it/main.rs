//! Integration tests of the `masstockctl` binary: one test binary, one module per command.

mod backup_timer;
mod build;
mod certs;
mod completions;
mod config_check;
mod containers;
mod help;
mod layering;
mod logs;
mod parser;
mod queue;
mod render;
mod secrets;
mod support;
