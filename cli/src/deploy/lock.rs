//! The deploy lock: one command at a time changes the stack.
//!
//! A file in `[project] state_dir`, created with `O_EXCL`, holding who took it, when and for
//! what. It is removed when the command ends, failed or not. A command that was killed leaves it
//! behind on purpose, as Kamal does: the stack may be half-changed, and an operator should look
//! before the next deploy. `masstockctl lock release` removes it.
//!
//! Each lock (`LockName`) states what happens to one whose holder died (`WhenStale`): the deploy
//! lock refuses until an operator releases it; the certificates' lock, taken by an unattended
//! timer, is taken over.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Stack;

/// Which lock: each guards its own files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockName {
    /// The stack's containers and edge site: deploy, rollback, restart, down.
    Deploy,
    /// The certificate store: certs issue and renew.
    Certs,
    /// The backup repository and the data a restore replaces: backup, restore, drills.
    Backup,
}

/// What to do with a lock whose holder is known to be dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenStale {
    /// Refuse, as for a live holder: the stack may be half-changed and wants an operator's eyes.
    Refuse,
    /// Remove it and take the lock: the work is safe to run again.
    TakeOver,
}

impl LockName {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Certs => "certs",
            Self::Backup => "backup",
        }
    }

    /// `certs renew` runs unattended from a timer: a lock left by a run that was killed (reboot,
    /// OOM) would stop every renewal until the certificate expires. Its holder is gone, and a
    /// renewal is safe to run again, so the lock is taken over. A deploy lock stays: a half-done
    /// deploy wants an operator's eyes.
    #[must_use]
    pub fn when_stale(self) -> WhenStale {
        match self {
            Self::Deploy => WhenStale::Refuse,
            Self::Certs | Self::Backup => WhenStale::TakeOver,
        }
    }
}

impl std::fmt::Display for LockName {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Folder(std::io::Error),
    #[error("failed to write the {lock} lock `{}`: {error}", path.display())]
    Write { lock: LockName, path: PathBuf, error: std::io::Error },
    #[error("failed to create the {lock} lock `{}`: {error}", path.display())]
    Create { lock: LockName, path: PathBuf, error: std::io::Error },
    #[error("another command holds the {lock} lock: {holder}")]
    Held { lock: LockName, path: PathBuf, environment: String, holder: String },
    #[error("the {lock} lock `{}` exists but cannot be read", path.display())]
    Unreadable { lock: LockName, path: PathBuf, environment: String },
    #[error("failed to remove `{}`: {error}", path.display())]
    Remove { path: PathBuf, error: std::io::Error },
    /// Taking a dead holder's lock over failed; `stale` describes the holder that was removed.
    #[error("{error}")]
    AfterStaleRemoved { stale: String, error: Box<LockError> },
}

impl LockError {
    /// What the operator can do, as `hint:` lines.
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Held { lock, path, environment, .. } | Self::Unreadable { lock, path, environment } => {
                vec![match lock {
                    LockName::Deploy => format!(
                        "wait for it to finish; if it crashed, check `masstockctl --env {environment} status`, then `masstockctl --env {environment} lock release`"
                    ),
                    LockName::Certs => format!(
                        "wait for it to finish; if it crashed, check `masstockctl --env {environment} certs status`, then remove `{}`",
                        path.display()
                    ),
                    LockName::Backup => format!(
                        "wait for it to finish (a backup, a restore or a drill); if it crashed, check `masstockctl --env {environment} backup ls`, then remove `{}`",
                        path.display()
                    ),
                }]
            }
            Self::AfterStaleRemoved { stale, error } => {
                let mut hints = error.hints();
                hints.push(format!("a stale lock of {stale} was removed first"));
                hints
            }
            Self::Folder(_) | Self::Write { .. } | Self::Create { .. } | Self::Remove { .. } => Vec::new(),
        }
    }
}

/// Who holds the lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub since: DateTime<Utc>,
}

impl Holder {
    fn current(command: &str) -> Self {
        Self {
            user: user_name(),
            host: hostname(),
            pid: std::process::id(),
            command: command.to_owned(),
            since: Utc::now(),
        }
    }

    /// Whether the holder's process still runs (only knowable on this host).
    #[must_use]
    pub fn is_alive(&self) -> Option<bool> {
        (self.host == hostname()).then(|| Path::new(&format!("/proc/{}", self.pid)).exists())
    }

    /// "root@vps (pid 4242, still running) since 2026-11-24 04:10:00 UTC (3m00s ago), for `deploy`"
    #[must_use]
    pub fn describe(&self) -> String {
        let process = match self.is_alive() {
            Some(true) => "still running",
            Some(false) => "no longer running",
            None => "on another host",
        };
        let age = Utc::now().signed_duration_since(self.since).num_seconds().max(0);
        format!(
            "{}@{} (pid {}, {process}) since {} ({} ago), for `{}`",
            self.user,
            self.host,
            self.pid,
            self.since.format("%Y-%m-%d %H:%M:%S UTC"),
            crate::ui::short_duration(u64::try_from(age).unwrap_or(0)),
            self.command
        )
    }
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct DeployLock {
    path: PathBuf,
}

impl DeployLock {
    /// Takes the lock for `command`, or says who holds it.
    pub fn acquire(stack: &Stack, command: &str) -> Result<Self, LockError> {
        Self::acquire_named(stack, LockName::Deploy, command)
    }

    /// Takes the lock called `lock` for `command`.
    #[allow(clippy::disallowed_methods)] // `LockError` names the lock's path; fs_err's would name it twice.
    pub fn acquire_named(stack: &Stack, lock: LockName, command: &str) -> Result<Self, LockError> {
        let path = named_lock_path(stack, lock);
        let parent = path.parent().unwrap_or(Path::new("."));
        fs_err::create_dir_all(parent).map_err(LockError::Folder)?;
        let holder = Holder::current(command);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                let text = serde_json::to_string_pretty(&holder).unwrap_or_default();
                if let Err(error) = file.write_all(text.as_bytes()).and_then(|()| file.sync_all()) {
                    let _ = fs_err::remove_file(&path);
                    return Err(LockError::Write { lock, path, error });
                }
                Ok(Self { path })
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                if lock.when_stale() == WhenStale::TakeOver {
                    if let Some(dead) = read_holder(&path).filter(|holder| holder.is_alive() == Some(false)) {
                        let _ = fs_err::remove_file(&path);
                        return Self::acquire_named(stack, lock, command).map_err(|error| {
                            LockError::AfterStaleRemoved { stale: dead.describe(), error: Box::new(error) }
                        });
                    }
                }
                let environment = stack.environment.clone();
                Err(match read_holder(&path) {
                    Some(holder) => LockError::Held { lock, path, environment, holder: holder.describe() },
                    None => LockError::Unreadable { lock, path, environment },
                })
            }
            Err(error) => Err(LockError::Create { lock, path, error }),
        }
    }
}

impl Drop for DeployLock {
    fn drop(&mut self) {
        let _ = fs_err::remove_file(&self.path);
    }
}

/// Where the deploy lock of `stack` lives.
#[must_use]
pub fn lock_path(stack: &Stack) -> PathBuf {
    named_lock_path(stack, LockName::Deploy)
}

/// Where the lock called `lock` lives: `<state_dir>/<project>.<lock>.lock`.
#[must_use]
pub fn named_lock_path(stack: &Stack, lock: LockName) -> PathBuf {
    stack.config.project.state_dir.join(format!("{}.{lock}.lock", stack.config.project.name))
}

/// Removes the lock at `path`, whoever holds it (`lock release`: the caller has decided that
/// it may go).
#[allow(clippy::disallowed_methods)] // `LockError::Remove` names the path; fs_err's would name it twice.
pub fn remove(path: &Path) -> Result<(), LockError> {
    std::fs::remove_file(path).map_err(|error| LockError::Remove { path: path.to_path_buf(), error })
}

/// The current holder, if the lock is held.
#[must_use]
pub fn read_holder(path: &Path) -> Option<Holder> {
    serde_json::from_slice(&fs_err::read(path).ok()?).ok()
}

/// Who runs this: the user behind `sudo`, else the login name, else the name of our uid.
fn user_name() -> String {
    for variable in ["SUDO_USER", "USER", "LOGNAME"] {
        if let Some(name) = std::env::var(variable).ok().filter(|name| !name.is_empty()) {
            return name;
        }
    }
    let uid = fs_err::read_to_string("/proc/self/status").ok().and_then(|status| {
        status.lines().find_map(|line| line.strip_prefix("Uid:")?.split_whitespace().next().map(str::to_owned))
    });
    let Some(uid) = uid else { return "unknown".to_owned() };
    fs_err::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.get(2) == Some(&uid.as_str())).then(|| fields[0].to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn hostname() -> String {
    fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "localhost".to_owned(), |name| name.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack_in(state_dir: &Path) -> Stack {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml");
        let mut stack = Stack::load(&path, "production").expect("the shipped deploy.toml is valid");
        stack.config.project.state_dir = state_dir.to_path_buf();
        stack
    }

    #[test]
    fn a_second_holder_is_refused_with_who_holds_it() {
        let folder = tempfile::tempdir().unwrap();
        let stack = stack_in(&folder.path().join("state"));
        let held = DeployLock::acquire(&stack, "deploy").unwrap();
        let error = DeployLock::acquire(&stack, "rollback").unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&format!("pid {}, still running", std::process::id())), "{message}");
        assert!(message.contains("for `deploy`"), "{message}");
        assert!(error.hints().iter().any(|hint| hint.contains("lock release")), "{:?}", error.hints());
        drop(held);
        assert!(!lock_path(&stack).exists(), "dropping the lock releases it");
        DeployLock::acquire(&stack, "rollback").unwrap();
    }

    #[test]
    fn a_crashed_holder_is_said_to_be_gone() {
        let holder = Holder { pid: u32::MAX, ..Holder::current("deploy") };
        assert_eq!(holder.is_alive(), Some(false));
        assert!(holder.describe().contains("no longer running"), "{}", holder.describe());
    }

    #[test]
    fn a_dead_holder_blocks_deploys_but_not_the_renewal_timer() {
        let folder = tempfile::tempdir().unwrap();
        let stack = stack_in(&folder.path().join("state"));
        let dead = Holder { pid: u32::MAX, ..Holder::current("certs renew") };
        for lock in [LockName::Deploy, LockName::Certs] {
            let path = named_lock_path(&stack, lock);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        }
        let refused = DeployLock::acquire_named(&stack, LockName::Deploy, "deploy").unwrap_err();
        assert!(refused.to_string().contains("no longer running"), "{refused}");
        let taken = DeployLock::acquire_named(&stack, LockName::Certs, "certs renew")
            .expect("a dead renewal's lock is taken over");
        let holder = read_holder(&named_lock_path(&stack, LockName::Certs)).unwrap();
        assert_eq!(holder.pid, std::process::id());
        drop(taken);
    }
}
