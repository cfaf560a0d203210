//! The restic repository `[backup]` declares, driven through the `restic` binary (Debian's
//! package; 0.14 or newer): its format, encryption, deduplication, retention and checks are
//! restic's, and any backend restic supports works.
//!
//! **Secrets.** The password never reaches an argument list: it is written to a 0600 file in
//! `<state_dir>/backup/` (removed when the command ends; one left by a killed run is removed by
//! the next) and named by `RESTIC_PASSWORD_FILE`. `[backup] env` (a backend's credentials) reaches
//! restic as its environment, which only root and restic's own user can read. restic's words are
//! scrubbed of every secret value before they reach an error.
//!
//! **Processes.** restic runs in a process group of its own, so a Ctrl-C at the terminal reaches
//! masstockctl (which decides what to stop and puts the stack back) and not restic directly, and
//! it is killed when the future waiting for it is dropped: an interrupted backup saves no
//! snapshot, because restic only writes one when its input ends.
//!
//! **Snapshots.** One per component and run, of one file read from standard input, with the tags
//! [`Tags`] defines (`masstock:project=…`, `figure:redis.keys=…`), and the host name
//! `<project>.<environment>`, so that a workstation and the VPS back up into the same history.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{Component, Figures};
use crate::config::{Backup, Stack};
use crate::secrets::{self, ResolveError};

/// The program run; `MASSTOCK_RESTIC` points elsewhere (a newer restic than the distribution's).
fn program() -> String {
    std::env::var("MASSTOCK_RESTIC").unwrap_or_else(|_| "restic".to_owned())
}

/// What went wrong with the repository.
#[derive(Debug, thiserror::Error)]
pub enum ResticError {
    #[error("deploy.toml has no `[backup]` section")]
    NotDeclared,
    #[error("the `[backup]` {what} cannot be resolved: {error}")]
    Secret { what: String, error: ResolveError },
    #[error("`restic` was not found")]
    Missing,
    #[error("failed to run restic: {0}")]
    Spawn(String),
    #[error("failed to write the repository's password file `{path}`: {error}")]
    PasswordFile { path: PathBuf, error: String },
    #[error("the password of the restic repository `{repository}` is wrong")]
    WrongPassword { repository: String },
    #[error("no restic repository at `{repository}`")]
    NoRepository { repository: String },
    #[error("the restic repository `{repository}` cannot be reached: {reason}")]
    Unreachable { repository: String, reason: String },
    #[error("the restic repository `{repository}` is out of space: {reason}")]
    Full { repository: String, reason: String },
    #[error("the restic repository `{repository}` is locked by another restic: {reason}")]
    Locked { repository: String, reason: String },
    #[error("no snapshot `{id}` in `{repository}`")]
    NoSuchSnapshot { id: String, repository: String },
    #[error("`restic {command}` failed ({status}): {reason}")]
    Failed { command: String, status: String, reason: String },
    #[error("`restic {command}` said something unexpected: {reason}")]
    Unexpected { command: String, reason: String },
}

impl ResticError {
    /// What the operator can do, as `hint:` lines.
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::NotDeclared => {
                vec!["add a `[backup]` section with `repository` and `password = \"${RESTIC_PASSWORD}\"` (see README)".to_owned()]
            }
            Self::Secret { .. } => vec!["`masstockctl secrets generate` creates `RESTIC_PASSWORD` in the env file".to_owned()],
            Self::Missing => vec!["install it: `apt install restic` (or set `MASSTOCK_RESTIC` to its path)".to_owned()],
            Self::WrongPassword { .. } => vec![
                "the password is `[backup] password` from the env file: it must be the one the repository was created with".to_owned(),
            ],
            Self::NoRepository { .. } => vec![
                "a stack's first `masstockctl backup` creates it; after that, a missing repository is an error (an unmounted disk must not become a new, empty one)".to_owned(),
                "if it should be there, check the disk or backend it lives on; if it is new on purpose, `masstockctl backup --init` creates it".to_owned(),
            ],
            Self::Unreachable { .. } => {
                vec!["check the backend (for `sftp:`, `ssh` to it as restic would, with `[backup] options`)".to_owned()]
            }
            Self::Full { .. } => vec![
                "free space where the repository lives, or lower `[backup] keep_*` and run `masstockctl backup` again (it forgets and prunes after storing)".to_owned(),
            ],
            Self::Locked { .. } => vec![
                "another backup or check is running; if none is, `restic unlock` on the repository removes a stale lock".to_owned(),
            ],
            Self::NoSuchSnapshot { .. } => vec!["`masstockctl backup ls` lists the snapshots".to_owned()],
            _ => Vec::new(),
        }
    }
}

/// The tags of a snapshot, in restic's `key=value` words. [`Tags::parse`] reads them back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags {
    pub project: String,
    pub environment: String,
    pub component: Option<Component>,
    /// The run of `backup` (or of a restore's safety copy) the snapshot belongs to.
    pub run: String,
    /// `backup`, or `safety` for the copy a restore takes of what it replaces.
    pub kind: String,
    /// The git revision of the running images (the api's), `unknown` without one.
    pub revision: String,
    /// The deployed configuration: the first 12 hex digits of a hash of every service's
    /// configuration hash.
    pub release: String,
    pub figures: Figures,
    /// Bytes restic added to the repository for this snapshot, and the bytes it read.
    pub added_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
}

const PROJECT: &str = "masstock:project=";
const ENVIRONMENT: &str = "masstock:env=";
const COMPONENT: &str = "masstock:component=";
const RUN: &str = "masstock:run=";
const KIND: &str = "masstock:kind=";
const REVISION: &str = "masstock:revision=";
const RELEASE: &str = "masstock:release=";
const FIGURE: &str = "figure:";
const ADDED: &str = "stat:added=";
const TOTAL: &str = "stat:total=";

impl Tags {
    /// The tag of a kind (`backup`, `safety`), to select snapshots with.
    #[must_use]
    pub fn kind_tag(kind: &str) -> String {
        format!("{KIND}{kind}")
    }

    /// The tags that find one component's snapshot of one run.
    #[must_use]
    pub fn run_filter(run: &str, component: Component) -> Vec<String> {
        vec![format!("{RUN}{run}"), format!("{COMPONENT}{component}")]
    }

    /// The tags known when a snapshot is started.
    #[must_use]
    pub fn identity(&self) -> Vec<String> {
        let mut tags = vec![
            format!("{PROJECT}{}", self.project),
            format!("{ENVIRONMENT}{}", self.environment),
            format!("{RUN}{}", self.run),
            format!("{KIND}{}", self.kind),
            format!("{REVISION}{}", self.revision),
            format!("{RELEASE}{}", self.release),
        ];
        if let Some(component) = self.component {
            tags.push(format!("{COMPONENT}{component}"));
        }
        tags
    }

    /// The tags added once the snapshot is stored: its figures and sizes.
    #[must_use]
    pub fn results(&self) -> Vec<String> {
        let mut tags: Vec<String> =
            self.figures.iter().map(|(name, value)| format!("{FIGURE}{name}={value}")).collect();
        tags.extend(self.added_bytes.map(|bytes| format!("{ADDED}{bytes}")));
        tags.extend(self.total_bytes.map(|bytes| format!("{TOTAL}{bytes}")));
        tags
    }

    #[must_use]
    pub fn parse(tags: &[String]) -> Self {
        let mut parsed = Self::default();
        for tag in tags {
            if let Some(value) = tag.strip_prefix(PROJECT) {
                value.clone_into(&mut parsed.project);
            } else if let Some(value) = tag.strip_prefix(ENVIRONMENT) {
                value.clone_into(&mut parsed.environment);
            } else if let Some(value) = tag.strip_prefix(COMPONENT) {
                parsed.component = Component::parse(value);
            } else if let Some(value) = tag.strip_prefix(RUN) {
                value.clone_into(&mut parsed.run);
            } else if let Some(value) = tag.strip_prefix(KIND) {
                value.clone_into(&mut parsed.kind);
            } else if let Some(value) = tag.strip_prefix(REVISION) {
                value.clone_into(&mut parsed.revision);
            } else if let Some(value) = tag.strip_prefix(RELEASE) {
                value.clone_into(&mut parsed.release);
            } else if let Some(figure) = tag.strip_prefix(FIGURE) {
                if let Some((name, value)) = figure.split_once('=') {
                    if let Ok(value) = value.parse() {
                        parsed.figures.insert(name.to_owned(), value);
                    }
                }
            } else if let Some(value) = tag.strip_prefix(ADDED) {
                parsed.added_bytes = value.parse().ok();
            } else if let Some(value) = tag.strip_prefix(TOTAL) {
                parsed.total_bytes = value.parse().ok();
            }
        }
        parsed
    }
}

/// A snapshot as `restic snapshots --json` lists it, with its tags read.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: String,
    pub short_id: String,
    pub time: DateTime<Utc>,
    pub tags: Tags,
    /// Stored whole: its figures were recorded after restic saved it. A snapshot without them
    /// is from a run that was interrupted between the two, and is never restored from.
    pub complete: bool,
}

#[derive(Debug, Deserialize)]
struct ListedSnapshot {
    id: String,
    short_id: String,
    time: DateTime<Utc>,
    #[serde(default)]
    tags: Vec<String>,
}

/// What restic said at the end of a backup.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BackupSummary {
    pub snapshot_id: String,
    #[serde(default)]
    pub data_added: u64,
    #[serde(default)]
    pub total_bytes_processed: u64,
}

/// The repository, its secrets resolved.
pub struct Repository {
    /// As restic gets it: its `${NAME}`s resolved (a `rest:` URL's password).
    location: String,
    /// As deploy.toml writes it: what messages show.
    shown: String,
    password: String,
    env: Vec<(String, String)>,
    options: Vec<String>,
    host: String,
    scratch_dir: PathBuf,
    /// Every secret value, to scrub from restic's words.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Repository").field("location", &self.shown).finish_non_exhaustive()
    }
}

/// The password, in a 0600 file that lives as long as the restic it was made for.
#[derive(Debug)]
struct PasswordFile(tempfile::NamedTempFile);

impl Repository {
    /// The repository `[backup]` of `stack` declares.
    pub fn of(stack: &Stack) -> Result<Self, ResticError> {
        let backup: &Backup = stack.config.backup.as_ref().ok_or(ResticError::NotDeclared)?;
        let password = secrets::splice_in(stack, &backup.password)
            .map_err(|error| ResticError::Secret { what: "`password`".to_owned(), error })?;
        let location = secrets::splice_in(stack, &backup.repository)
            .map_err(|error| ResticError::Secret { what: "`repository`".to_owned(), error })?;
        let mut env = Vec::new();
        let mut secret_values = vec![password.clone()];
        if location != backup.repository {
            secret_values.push(location.clone());
        }
        for (name, declared) in &backup.env {
            let value = secrets::splice_in(stack, declared)
                .map_err(|error| ResticError::Secret { what: format!("`env.{name}`"), error })?;
            if value != *declared {
                secret_values.push(value.clone());
            }
            env.push((name.clone(), value));
        }
        secret_values.retain(|value| !value.is_empty());
        Ok(Self {
            location,
            shown: backup.repository.clone(),
            password,
            env,
            options: backup.options.iter().map(|(name, value)| format!("{name}={value}")).collect(),
            host: format!("{}.{}", stack.config.project.name, stack.environment),
            scratch_dir: stack.config.project.state_dir.join("backup"),
            secrets: secret_values,
        })
    }

    /// Where the repository is, as deploy.toml says it (a secret in it stays `${NAME}`).
    #[must_use]
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The host name its snapshots carry: `<project>.<environment>`.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    fn password_file(&self) -> Result<PasswordFile, ResticError> {
        let failed = |error: &dyn std::fmt::Display| ResticError::PasswordFile {
            path: self.scratch_dir.clone(),
            error: error.to_string(),
        };
        private_folder(&self.scratch_dir).map_err(|error| failed(&error))?;
        remove_stale_password_files(&self.scratch_dir);
        // tempfile creates it 0600, with a random name, O_EXCL.
        let mut file = tempfile::Builder::new()
            .prefix(".restic-password-")
            .tempfile_in(&self.scratch_dir)
            .map_err(|error| failed(&error))?;
        file.write_all(self.password.as_bytes()).and_then(|()| file.flush()).map_err(|error| failed(&error))?;
        Ok(PasswordFile(file))
    }

    /// `restic <arguments>` for this repository, its password file kept alive by the caller.
    fn command(&self, arguments: &[&str]) -> Result<(Command, PasswordFile), ResticError> {
        let password = self.password_file()?;
        let mut command = Command::new(program());
        command
            .arg("--no-cache")
            .args(self.options.iter().flat_map(|option| ["--option", option.as_str()]))
            .args(arguments)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .env_remove("RESTIC_PASSWORD")
            .env_remove("RESTIC_PASSWORD_COMMAND")
            .env_remove("RESTIC_REPOSITORY_FILE")
            .env("RESTIC_REPOSITORY", &self.location)
            .env("RESTIC_PASSWORD_FILE", password.0.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        Ok((command, password))
    }

    fn spawn(&self, arguments: &[&str], stdin: bool) -> Result<(Running, PasswordFile), ResticError> {
        let (mut command, password) = self.command(arguments)?;
        if stdin {
            command.stdin(Stdio::piped());
        }
        let child = command.spawn().map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => ResticError::Missing,
            _ => ResticError::Spawn(error.to_string()),
        })?;
        Ok((Running(child), password))
    }

    /// Runs `restic <arguments>` to its end: its stdout, or the error its stderr says.
    async fn run(&self, arguments: &[&str]) -> Result<String, ResticError> {
        let (mut running, _password) = self.spawn(arguments, false)?;
        let stdout = running.0.stdout.take();
        let stderr = tokio::spawn(read_all(running.0.stderr.take()));
        let mut text = String::new();
        if let Some(mut stdout) = stdout {
            stdout.read_to_string(&mut text).await.map_err(|error| ResticError::Spawn(error.to_string()))?;
        }
        let status = running.0.wait().await.map_err(|error| ResticError::Spawn(error.to_string()))?;
        if status.success() {
            return Ok(text);
        }
        let stderr = stderr.await.unwrap_or_default();
        Err(self.classify(arguments.first().copied().unwrap_or_default(), &status.to_string(), &stderr))
    }

    /// The error restic's stderr says, its secrets scrubbed.
    fn classify(&self, command: &str, status: &str, stderr: &str) -> ResticError {
        let reason = self.scrub(stderr);
        let repository = self.shown.clone();
        let lower = reason.to_lowercase();
        let unreachable = [
            "connection refused",
            "ssh command exited",
            "no route to host",
            "could not resolve",
            "no such host",
            "i/o timeout",
            "unable to start the sftp session",
            "connection reset",
            "network is unreachable",
        ]
        .iter()
        .any(|marker| lower.contains(marker));
        if lower.contains("wrong password") {
            ResticError::WrongPassword { repository }
        } else if unreachable {
            ResticError::Unreachable { repository, reason: last_lines(&reason) }
        } else if lower.contains("is there a repository at the following location") {
            ResticError::NoRepository { repository }
        } else if lower.contains("no space left on device") || lower.contains("disk quota exceeded") {
            // restic 0.14 follows it with Go's stack trace: the line that says it is the reason.
            let said = reason.lines().map(str::trim).find(|line| {
                let line = line.to_lowercase();
                line.contains("no space left on device") || line.contains("disk quota exceeded")
            });
            ResticError::Full { repository, reason: said.unwrap_or("no space left on device").to_owned() }
        } else if lower.contains("repository is already locked") {
            ResticError::Locked { repository, reason: last_lines(&reason) }
        } else {
            ResticError::Failed {
                command: command.to_owned(),
                status: status.to_owned(),
                reason: last_lines_of(&reason, 12),
            }
        }
    }

    /// `text` with every secret value replaced by `***`.
    #[must_use]
    pub fn scrub(&self, text: &str) -> String {
        crate::health::scrub(text, &self.secrets)
    }

    /// Opens the repository: proves the password and the backend, and removes the locks of
    /// restic processes that died (`restic unlock` touches no live lock). With `create`, makes
    /// the repository when there is none, and says so; without, a missing one is an error, so that
    /// an unmounted backup disk never silently becomes a new, empty repository.
    pub async fn open(&self, create: bool) -> Result<bool, ResticError> {
        match self.run(&["cat", "config"]).await {
            Ok(_) => {
                self.run(&["unlock"]).await?;
                Ok(false)
            }
            Err(ResticError::NoRepository { .. }) if create => {
                self.run(&["init"]).await?;
                Ok(true)
            }
            Err(error) => Err(error),
        }
    }

    /// Starts `restic backup` of one file read from standard input: write the file into
    /// [`Upload::stdin`], then [`Upload::finish`].
    pub fn start_backup(&self, filename: &str, tags: &[String]) -> Result<Upload, ResticError> {
        let tags = tags.join(",");
        let arguments =
            ["backup", "--json", "--stdin", "--stdin-filename", filename, "--host", &self.host, "--tag", &tags];
        let (mut child, password) = self.spawn(&arguments, true)?;
        let stdin = child.0.stdin.take();
        let stdout = child.0.stdout.take();
        let stderr = child.0.stderr.take();
        let stderr = tokio::spawn(read_all(stderr));
        let summary = tokio::spawn(read_summary(stdout));
        Ok(Upload { child, stdin, stderr, summary, _password: password })
    }

    /// Adds `tags` to the snapshot `id` (restic rewrites it under a new id, which this returns).
    pub async fn add_tags(&self, id: &str, tags: &[String], find: &[String]) -> Result<Snapshot, ResticError> {
        let joined = tags.join(",");
        self.run(&["tag", "--add", &joined, id]).await?;
        let mut snapshots = self.snapshots(find).await?;
        snapshots.retain(|snapshot| tags.iter().all(|tag| snapshot_has(snapshot, tag)));
        snapshots.pop().ok_or_else(|| ResticError::Unexpected {
            command: "tag".to_owned(),
            reason: format!("the snapshot tagged from `{id}` is not listed"),
        })
    }

    /// The snapshots carrying every tag of `tags`, oldest first.
    pub async fn snapshots(&self, tags: &[String]) -> Result<Vec<Snapshot>, ResticError> {
        let filter = tags.join(",");
        let mut arguments = vec!["snapshots", "--json"];
        if !filter.is_empty() {
            arguments.extend(["--tag", &filter]);
        }
        let stdout = self.run(&arguments).await?;
        let listed: Vec<ListedSnapshot> = serde_json::from_str(stdout.trim())
            .map_err(|error| ResticError::Unexpected { command: "snapshots".to_owned(), reason: error.to_string() })?;
        let mut snapshots: Vec<Snapshot> = listed
            .into_iter()
            .map(|listed| {
                let complete = listed.tags.iter().any(|tag| tag.starts_with(TOTAL));
                Snapshot {
                    id: listed.id,
                    short_id: listed.short_id,
                    time: listed.time,
                    tags: Tags::parse(&listed.tags),
                    complete,
                }
            })
            .collect();
        snapshots.sort_by_key(|snapshot| snapshot.time);
        Ok(snapshots)
    }

    /// Streams the file `filename` of snapshot `id` (`restic dump`). The stream ends with an
    /// error, never a clean end, when restic stops with one (a damaged pack, a lost backend): a
    /// reader never takes a cut copy for a whole one. [`Dump::finish`] then says restic's reason.
    pub fn dump(&self, id: &str, filename: &str) -> Result<Dump, ResticError> {
        let path = format!("/{filename}");
        let (mut child, password) = self.spawn(&["dump", id, &path], false)?;
        let stdout = child.0.stdout.take();
        let stderr = tokio::spawn(read_all(child.0.stderr.take()));
        Ok(Dump { child, stdout, stderr, status: None, _password: password })
    }

    /// Forgets the snapshots of `filter` that `policy` (restic's `--keep-*` options) does not
    /// keep, each host and path (component) on its own. How many it forgot; the data goes at the
    /// next [`Repository::prune`].
    pub async fn forget(&self, filter: &[String], policy: &[&str]) -> Result<usize, ResticError> {
        let filter = filter.join(",");
        let mut arguments = vec!["forget", "--json", "--tag", &filter, "--group-by", "host,paths"];
        arguments.extend_from_slice(policy);
        let stdout = self.run(&arguments).await?;
        // restic prints nothing when no snapshot matches the filter.
        if stdout.trim().is_empty() {
            return Ok(0);
        }
        let groups: Vec<Group> = serde_json::from_str(stdout.trim())
            .map_err(|error| ResticError::Unexpected { command: "forget".to_owned(), reason: error.to_string() })?;
        Ok(groups.iter().map(|group| group.remove.as_ref().map_or(0, Vec::len)).sum())
    }

    /// Removes the data no snapshot uses any more.
    pub async fn prune(&self) -> Result<(), ResticError> {
        self.run(&["prune"]).await.map(drop)
    }

    /// Forgets the snapshots `ids` (their data goes at the next prune).
    pub async fn forget_ids(&self, ids: &[String]) -> Result<(), ResticError> {
        let mut arguments = vec!["forget"];
        arguments.extend(ids.iter().map(String::as_str));
        self.run(&arguments).await.map(drop)
    }

    /// `restic check` (with `--read-data-subset` when given): what it said, or why it failed.
    pub async fn check(&self, read_data_subset: Option<&str>) -> Result<String, ResticError> {
        let mut arguments = vec!["check"];
        if let Some(subset) = read_data_subset {
            arguments.extend(["--read-data-subset", subset]);
        }
        self.run(&arguments).await.map(|stdout| self.scrub(&stdout))
    }
}

/// A group of `restic forget --json`: what it removes.
#[derive(Deserialize)]
struct Group {
    #[serde(default)]
    remove: Option<Vec<serde_json::Value>>,
}

fn snapshot_has(snapshot: &Snapshot, tag: &str) -> bool {
    snapshot.tags.identity().iter().chain(snapshot.tags.results().iter()).any(|own| own == tag)
}

/// A `restic backup --stdin` under way.
#[derive(Debug)]
pub struct Upload {
    child: Running,
    stdin: Option<ChildStdin>,
    stderr: tokio::task::JoinHandle<String>,
    summary: tokio::task::JoinHandle<Option<BackupSummary>>,
    _password: PasswordFile,
}

impl Upload {
    /// Where the file goes.
    pub fn stdin(&mut self) -> Option<&mut ChildStdin> {
        self.stdin.as_mut()
    }

    /// Ends the input and waits for restic to store the snapshot.
    pub async fn finish(mut self, repository: &Repository) -> Result<BackupSummary, ResticError> {
        drop(self.stdin.take());
        let status = self.child.0.wait().await.map_err(|error| ResticError::Spawn(error.to_string()))?;
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        let summary = (&mut self.summary).await.ok().flatten();
        match summary {
            Some(summary) if status.success() => Ok(summary),
            _ => Err(repository.classify("backup", &status.to_string(), &stderr)),
        }
    }

    /// After the input failed midway: restic's own error when it stopped with one (a full
    /// disk, a lost connection: the cause of a broken pipe), else `None`. Either way restic is
    /// stopped before its input ended, so no snapshot is saved.
    pub async fn failure(mut self, repository: &Repository) -> Option<ResticError> {
        let exited = tokio::time::timeout(std::time::Duration::from_secs(2), self.child.0.wait()).await;
        match exited {
            Ok(Ok(status)) if !status.success() => {
                let stderr = (&mut self.stderr).await.unwrap_or_default();
                Some(repository.classify("backup", &status.to_string(), &stderr))
            }
            _ => {
                stop(&mut self.child.0).await;
                None
            }
        }
    }
}

/// All of restic's stderr, read as it comes so that restic never blocks writing it.
async fn read_all(stderr: Option<tokio::process::ChildStderr>) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = stderr {
        let _ = stderr.read_to_string(&mut text).await;
    }
    text
}

async fn read_summary(stdout: Option<ChildStdout>) -> Option<BackupSummary> {
    #[derive(Deserialize)]
    struct Message {
        message_type: String,
    }
    let mut lines = BufReader::new(stdout?).lines();
    let mut summary = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if serde_json::from_str::<Message>(&line).is_ok_and(|message| message.message_type == "summary") {
            summary = serde_json::from_str::<BackupSummary>(&line).ok();
        }
    }
    summary
}

/// A `restic dump` under way: read it (it is an `AsyncRead`), then [`Dump::finish`].
#[derive(Debug)]
pub struct Dump {
    child: Running,
    stdout: Option<ChildStdout>,
    stderr: tokio::task::JoinHandle<String>,
    /// Set once the output ended: whether restic exited well.
    status: Option<std::process::ExitStatus>,
    _password: PasswordFile,
}

impl tokio::io::AsyncRead for Dump {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        let Some(stdout) = this.stdout.as_mut() else { return Poll::Ready(Ok(())) };
        let before = buffer.filled().len();
        match std::pin::Pin::new(stdout).poll_read(context, buffer) {
            Poll::Ready(Ok(())) if buffer.filled().len() == before => {
                // The end of restic's output: it is the end of the file only if restic says so.
                let status = match this.child.0.try_wait() {
                    Ok(Some(status)) => status,
                    Ok(None) => {
                        // Exiting: look again shortly rather than block the runtime.
                        let waker = context.waker().clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            waker.wake();
                        });
                        return Poll::Pending;
                    }
                    Err(error) => return Poll::Ready(Err(error)),
                };
                this.status = Some(status);
                if status.success() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(std::io::Error::other(format!(
                        "restic stopped before the end of the file ({status})"
                    ))))
                }
            }
            other => other,
        }
    }
}

impl Dump {
    /// Waits for restic: whether it read the whole file without an error (a damaged pack is
    /// one), in restic's words.
    pub async fn finish(mut self, repository: &Repository) -> Result<(), ResticError> {
        // What the reader left unread is drained so that restic is not blocked writing it.
        if let Some(mut stdout) = self.stdout.take() {
            let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
        }
        let status = match self.status {
            Some(status) => status,
            None => self.child.0.wait().await.map_err(|error| ResticError::Spawn(error.to_string()))?,
        };
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(repository.classify("dump", &status.to_string(), &stderr))
        }
    }
}

impl Drop for Upload {
    /// Dropped before `finish` (a capture that failed, an interrupted run): restic is interrupted
    /// while its input is still open, and given a moment to stop, so that it can never take the
    /// end of its input for the end of the file and save a snapshot of part of it.
    fn drop(&mut self) {
        if self.stdin.is_none() {
            return;
        }
        self.child.interrupt();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while matches!(self.child.0.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A restic process that is interrupted (SIGINT to its process group) when dropped before it
/// ended: restic then cancels its work, saves no snapshot and removes its repository lock, where
/// a SIGKILL would leave a stale lock behind.
#[derive(Debug)]
struct Running(Child);

impl Running {
    /// SIGINT to restic's process group, when it still runs.
    fn interrupt(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            if let Some(group) =
                self.0.id().and_then(|pid| i32::try_from(pid).ok()).and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::INT);
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// Stops a restic that must not finish: SIGINT first, on which restic cancels its work without
/// saving a snapshot and removes its repository lock, then SIGKILL after ten seconds. (A killed
/// restic leaves a stale lock, which [`Repository::ensure_initialized`] removes next time.)
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()).and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        if tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// The last few lines of restic's words: the part that says what failed.
fn last_lines(text: &str) -> String {
    last_lines_of(text, 3)
}

/// The last `count` non-empty lines, joined (a damaged repository's list of bad packs).
fn last_lines_of(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    lines[lines.len().saturating_sub(count)..].join(" / ")
}

/// Creates `folder` (and its parents) when missing, and makes it 0700: it holds password files.
pub fn private_folder(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::create_dir_all(folder)?;
    fs_err::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
}

/// Removes password files more than an hour old that a killed run left behind.
fn remove_stale_password_files(folder: &Path) {
    let Ok(entries) = fs_err::read_dir(folder) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let old = entry
            .metadata()
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 3600);
        if old && name.to_string_lossy().starts_with(".restic-password-") {
            let _ = fs_err::remove_file(entry.path());
        }
    }
}
