//! `masstockctl queue ...`: inspect and repair the BullMQ queues in Redis.
//!
//! These commands talk to Redis only (`crate::queue_target` says where they find it). `ls` and `show`
//! read without writing. The repairs go through `masstock_queue::admin`, which runs BullMQ's own
//! scripts. The CLI is synchronous, so each command runs its Redis work on a small runtime of its
//! own.
//!
//! Queue names and prefixes hold neither `:` nor `*`. BullMQ allows both, but a `:` makes a queue's
//! keys ambiguous (`<prefix>:a:b:meta`) and a `*` breaks the `SORT` pattern. The commands refuse
//! such a `--prefix` or `--queue` with exit 2, and `ls` does not list such queues. Job ids are
//! free: one like `heartbeat:x` puts a hash where a heartbeat would be, which `ls` skips. Every
//! script call (each batch of `clean`, each job of `retry --failed`, each `resume` round) has its
//! own timeout (10 s), so a long repair is not cut short by a limit meant for one answer.
//! `rediss://` works: `masstockctl::main` installs rustls's ring provider for the process, which
//! redis's TLS needs when it cannot pick one itself.

pub mod clean;
pub mod ls;
pub mod pause;
pub mod resume;
pub mod retry;
pub mod show;

use std::process::ExitCode;

use masstock_queue::admin::{Admin, AdminError};

use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::queue_target::{self, QueueTargetError, RedisTarget, TIMEOUT};
use crate::secrets::ResolveError;
use crate::ui::Ui;

#[derive(Debug, clap::Subcommand)]
pub enum QueueCommand {
    Ls(ls::LsArgs),
    Show(show::ShowArgs),
    Retry(retry::RetryArgs),
    Clean(clean::CleanArgs),
    Pause(pause::PauseArgs),
    Resume(resume::ResumeArgs),
}

pub fn run(global: &GlobalArgs, ui: &Ui, command: &QueueCommand) -> Result<ExitCode, CommandError> {
    match command {
        QueueCommand::Ls(args) => ls::cmd_queue_ls(global, ui, args),
        QueueCommand::Show(args) => show::cmd_queue_show(global, ui, args),
        QueueCommand::Retry(args) => retry::cmd_queue_retry(global, ui, args),
        QueueCommand::Clean(args) => clean::cmd_queue_clean(global, ui, args),
        QueueCommand::Pause(args) => pause::cmd_queue_pause(global, ui, args),
        QueueCommand::Resume(args) => resume::cmd_queue_resume(global, ui, args),
    }
}

/// The queue a command acts on.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueSelection {
    /// BullMQ's key prefix
    #[arg(long, value_name = "PREFIX", default_value = masstock_queue::PREFIX)]
    pub prefix: String,
    /// The queue's name
    #[arg(long, value_name = "NAME", default_value = masstock_queue::QUEUE)]
    pub queue: String,
}

impl QueueSelection {
    /// `prefix:queue`, as the queue's keys start.
    #[must_use]
    pub fn qualified(&self) -> String {
        format!("{}:{}", self.prefix, self.queue)
    }
}

/// Finds Redis and says where, with `-v`.
fn target(global: &GlobalArgs, ui: &Ui) -> Result<RedisTarget, CommandError> {
    let target = queue_target::resolve(&global.config, &global.environment)
        .map_err(|error| target_error(error, &global.environment))?;
    ui.detail(format!("redis at `{}` ({})", target.shown, target.source));
    Ok(target)
}

/// A [`QueueTargetError`] as the operator sees it, with what to try.
fn target_error(error: QueueTargetError, environment: &str) -> CommandError {
    let generate_hint = || format!("run `masstockctl --env {environment} secrets generate`, or set `REDIS_URL`");
    match error {
        QueueTargetError::Config(error) => error.into(),
        QueueTargetError::NoRedisUrl { .. } => {
            CommandError::failure(error).with_hint("set `REDIS_URL`, e.g. `REDIS_URL=redis://:PASSWORD@127.0.0.1:6379`")
        }
        QueueTargetError::Unreachable { port, .. } => CommandError::failure(error).with_hint(format!(
            "set `REDIS_URL` to the container's address, e.g. `REDIS_URL=redis://:PASSWORD@<container ip>:{port}`"
        )),
        QueueTargetError::EnvFile(error) => CommandError::failure(error),
        QueueTargetError::Secret(ResolveError::Syntax(message)) => CommandError::usage(message.to_string()),
        QueueTargetError::Secret(ResolveError::NoEnvFile { path, names }) => CommandError::failure(format!(
            "the env file `{}` does not exist, and `REDIS_URL` needs `{}` from it",
            path.display(),
            names.join("`, `")
        ))
        .with_hint(generate_hint()),
        QueueTargetError::Secret(ResolveError::Unset { path, names }) => {
            CommandError::failure(format!("`{}` is not set in `{}`", names[0], path.display()))
                .with_hint(generate_hint())
        }
        QueueTargetError::Secret(ResolveError::BreaksUrl { path, name }) => CommandError::usage(format!(
            "secret `{name}` in `{}` holds characters that break the `REDIS_URL` it is part of",
            path.display()
        ))
        .with_hint("a secret inside a URL may only hold letters, digits and `-._~+=`")
        .with_hint(format!(
            "generate a URL-safe one: remove `{name}` from the env file, then `masstockctl --env {environment} \
             secrets generate --force`"
        )),
    }
}

/// Opens the selected queue for a repair, runs `operation` on it, and closes it.
fn with_admin<T, F>(target: &RedisTarget, selection: &QueueSelection, operation: F) -> Result<T, CommandError>
where
    F: AsyncFnOnce(&mut Admin) -> Result<T, AdminError>,
{
    crate::runtime::block_on(async {
        let mut admin = Admin::open(target.url(), &selection.prefix, &selection.queue, TIMEOUT).await?;
        let outcome = operation(&mut admin).await;
        admin.close().await;
        outcome
    })?
    .map_err(|error| admin_error(error, target))
}

/// Why a queue command could not do its work.
#[derive(Debug, thiserror::Error)]
#[error("failed to talk to redis at `{url}`")]
struct RedisFailure {
    url: String,
    #[source]
    source: AdminError,
}

/// An [`AdminError`] as the operator sees it: whose move, and what to try.
fn admin_error(error: AdminError, target: &RedisTarget) -> CommandError {
    match error {
        AdminError::InvalidName(_) => CommandError::usage(error),
        AdminError::NoSuchQueue { ref prefix, .. } => {
            let hint = format!("`masstockctl queue ls --prefix {prefix}` lists the queues under that prefix");
            CommandError::failure(error).with_hint(hint)
        }
        AdminError::NoSuchJob { ref prefix, ref queue, .. } => {
            let hint = format!(
                "the job may have been removed (completed jobs are); `masstockctl queue ls --prefix {prefix}` shows \
                 what `{queue}` holds"
            );
            CommandError::failure(error).with_hint(hint)
        }
        AdminError::NotRetryable { .. } => CommandError::failure(error),
        AdminError::Moved { ref id, .. } => {
            let hint = format!("`masstockctl queue show {id}` shows where it is now");
            CommandError::failure(error).with_hint(hint)
        }
        // Redis could not be reached or let us in: the address and the password are suspects.
        AdminError::Timeout(_) | AdminError::Connection(_) => {
            let failure = CommandError::failure(RedisFailure { url: target.shown.clone(), source: error });
            if target.from_environment {
                failure.with_hint("check `REDIS_URL`: is redis running there, and is the password right?")
            } else {
                failure
                    .with_hint(format!("the address comes from {}; set `REDIS_URL` to use another one", target.source))
            }
        }
        // Redis answered: what it holds or refused is the problem, not how it was reached.
        AdminError::Unexpected { ref key, .. } => {
            let hint =
                format!("`{key}` does not hold what BullMQ writes there; `redis-cli type {key}` shows what it is");
            CommandError::failure(RedisFailure { url: target.shown.clone(), source: error }).with_hint(hint)
        }
        AdminError::Redis(_) | AdminError::Queue(_) => {
            CommandError::failure(RedisFailure { url: target.shown.clone(), source: error })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_errors_suspect_the_password() {
        let target = RedisTarget::new("redis://:pw@127.0.0.1:6379".into(), "`REDIS_URL`".into(), true);
        let hints = |error: AdminError| admin_error(error, &target).hints.join("\n");
        let password = "is the password right?";
        assert!(hints(AdminError::Connection("Connection refused".into())).contains(password));
        assert!(hints(AdminError::Timeout(TIMEOUT)).contains(password));
        for answered in [
            AdminError::Queue("invalid configuration: reprocessJob failed with code -2".into()),
            AdminError::Redis("ERR unknown command".into()),
            AdminError::Unexpected { key: "bull:q:wait".into(), answer: "WRONGTYPE".into() },
        ] {
            let text = hints(answered);
            assert!(!text.contains(password), "{text}");
        }
    }
}
