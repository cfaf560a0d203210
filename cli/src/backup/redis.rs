//! The `redis` component (the queue): a point-in-time RDB copy with its own figures, put back so
//! that the AOF-on redis service serves exactly it, measured live, and drilled in a throwaway
//! redis (see `crate::backup` for the four functions' contract).
//!
//! # Figures
//!
//! `redis.keys`: the keys without an expiry, every database (`INFO keyspace`: `keys` − `expires`,
//! summed), because keys with a TTL may have expired by the time a restore is checked.
//! `queue.<state>` for `waiting`, `prioritized`, `delayed`, `active`, `completed`, `failed` and
//! `paused`: the counts `queue ls` shows for the workflow queue (`bull:workflow-queue`, read by
//! `masstock_queue::admin::Inspector`), zero when the queue has no key. One function
//! ([`figures`]) reads them for `capture`, `measure` and `drill`.
//!
//! # Capture
//!
//! Redis is reached from this host as `health` reaches it: the redis container's address on the
//! project network, with the password `health::redis_password` finds (never shown: every error
//! is scrubbed of it). The copy is the fork of a `BGSAVE`, and the figures are those of the fork:
//! once no save or rewrite is running, `CLIENT PAUSE <30 s> WRITE` (Redis ≥ 6.2) holds every
//! write and key expiry, the figures are read, `BGSAVE` forks, and `CLIENT UNPAUSE` follows at
//! once (the pause's own timeout frees the clients should we die in between; reading that takes
//! longer than the pause is an error, not a wrong figure). How long writes were held is said with
//! `-v` (the queue's reading costs about 0.2 s per 100,000 jobs, see `queue ls`). Then `INFO persistence` is polled
//! until the save ends: `rdb_bgsave_in_progress:0`, `rdb_last_bgsave_status:ok` and `rdb_saves`
//! (`lastsave` before Redis 7) advanced; a failed save is an error. The RDB (`CONFIG GET dir` /
//! `dbfilename`) is then read by the engine (`GET /containers/…/archive`, a tar of one file) and
//! only the file's bytes are streamed to the sink, never held whole in memory, so the same code
//! works against a remote engine. A save that finished after ours would have replaced the file we
//! read: `INFO persistence` is read again after the copy and such a copy is refused (redis's save
//! points cannot fire within 60 s of our save, so this takes a copy slower than that).
//!
//! # Put back
//!
//! The caller has stopped the worker and the redis container (a running one is refused: two
//! servers on one volume corrupt it). With `appendonly yes`, Redis 7 loads the `appendonlydir`
//! and ignores `dump.rdb`, so copying the RDB in is not enough. Instead, a throwaway container
//! `<project>_redis_restore` from the redis container's image (deploy.toml's reference when there
//! is no container), running as the service's `user`, on no network, mounts the service's data
//! volume (the one at `/data`, created with deploy's labels when absent). The RDB is uploaded into
//! it as `dump.rdb` (owned by that user, through the engine: no host path), and the throwaway runs
//! `redis-server --appendonly no --port 0 --unixsocket /data/.restore.sock`, which loads it. Over
//! `docker exec redis-cli -s …`: `CONFIG SET appendonly yes` makes Redis write a fresh AOF base
//! from the loaded dataset and a new manifest that names only it (the old base and increments
//! become history and are deleted), we wait for that rewrite, and `SHUTDOWN SAVE` leaves
//! `dump.rdb` matching. The throwaway must exit 0; it is removed whatever happened. The service,
//! started again with its normal command, loads the new AOF: exactly the snapshot's data, none of
//! what the volume held before (the test proves both on a fresh volume and on one holding other
//! data). A copy that does not load (its checksum fails) makes the throwaway exit; the error
//! quotes its log, and the service's AOF is left as it was (only `dump.rdb`, which an AOF-on redis
//! does not read, was overwritten). The RDB is spooled first to an anonymous temporary file (0600, unlinked at creation)
//! because a tar entry must state its size before its bytes.
//!
//! # Drill
//!
//! A scratch volume and a throwaway redis (`scratch.name("redis")`, registered in `scratch`
//! before they are created, labelled `scratch.labels()`) on the drill's internal network, from
//! the redis container's image, with `--appendonly no --save ""` (it writes nothing) and a random
//! password in a config file uploaded beside the RDB. Once it answers `PING` (not `LOADING`), the
//! figures are read from this host at its address on that network; a copy tampered with fails
//! redis's RDB checksum, so the throwaway exits and the drill fails quoting its log. Nothing is
//! removed here: `Scratch::remove_all` does it.
//!
//! Both throwaways run as the service's `user` on a read-only root, without capabilities and
//! with `no-new-privileges`: redis writes only to its volume.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use masstock_queue::admin::Inspector;
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncSeekExt as _, AsyncWrite, AsyncWriteExt as _};

use super::{Figures, Scratch, Target};
use crate::docker::{self, labels, AddressError, DockerError};
use crate::health::UnresolvedSecret;

/// The service whose data this is.
const SERVICE: &str = "redis";
/// Where redis keeps its data in its container.
const DATA: &str = "/data";
/// Redis's port in its container.
const PORT: u16 = 6379;
/// How long Redis gets to connect, and to answer each command.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long writes may be held while the figures are read; `CLIENT PAUSE` ends by itself then.
const PAUSE: Duration = Duration::from_secs(30);
/// How long a save, a load or an AOF rewrite may take.
const LONG_WORK: Duration = Duration::from_secs(600);
/// Between two looks at something that is not done yet.
const POLL: Duration = Duration::from_millis(200);
/// How many times `BGSAVE` is tried when another fork got there first.
const SAVE_ATTEMPTS: u32 = 3;
/// The throwaway's socket during a put back: on the volume, which is the one place it may write.
const RESTORE_SOCKET: &str = "/data/.restore.sock";
/// The drill redis's configuration (its password), uploaded beside the RDB.
const DRILL_CONFIG: &str = "drill.conf";
/// The RDB's name in the volumes we fill: the service's default `dbfilename`.
const DUMP: &str = "dump.rdb";
/// The figures' queue states, each with how `Counts` names it.
pub const QUEUE_STATES: [&str; 7] = ["waiting", "prioritized", "delayed", "active", "completed", "failed", "paused"];

/// Why the redis component could not be captured, put back, measured or drilled. No message
/// holds the password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read redis's password: {0}")]
    Password(#[from] UnresolvedSecret),
    #[error("redis is not reachable from this host: {0}")]
    Unreachable(#[from] AddressError),
    #[error("cannot connect to redis at `{shown}`: {message}")]
    Connect { shown: String, message: String },
    /// A command redis refused or did not answer.
    #[error("redis refused `{command}`: {message}")]
    Command { command: String, message: String },
    #[error("redis answered `{command}` with something unexpected: {answer}")]
    Unexpected { command: String, answer: String },
    #[error("cannot read the workflow queue's counts: {0}")]
    Queue(String),
    #[error("reading the figures took {seconds}s, longer than writes may be held ({}s)", PAUSE.as_secs())]
    PauseTooShort { seconds: u64 },
    #[error("redis could not write its snapshot (`rdb_last_bgsave_status:{status}`)")]
    SaveFailed { status: String },
    #[error("another save replaced `{path}` while it was copied, so the copy may not match its figures")]
    Superseded { path: String },
    #[error("{what} did not end within {}s", .limit.as_secs())]
    TimedOut { what: String, limit: Duration },
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("the engine's copy of `{path}` is not a tar holding that file: {reason}")]
    NotTheFile { path: String, reason: String },
    #[error("failed to write the copy of `{path}`: {error}")]
    Sink { path: String, error: std::io::Error },
    #[error("failed to read the snapshot to put back: {0}")]
    Source(std::io::Error),
    #[error("failed to hold the snapshot in a temporary file: {0}")]
    Spool(std::io::Error),
    #[error("`{0}` is running: stop it before its data is put back (two redis on one volume corrupt it)")]
    StillRunning(String),
    #[error("service `{SERVICE}` mounts no named volume at `{DATA}` in deploy.toml")]
    NoDataVolume,
    #[error("no randomness for the drill redis's password: {0}")]
    Random(String),
    /// The throwaway redis failed: why, and its last log lines.
    #[error("the throwaway redis `{container}` failed: {reason}")]
    Throwaway { container: String, reason: String, logs: Vec<String> },
}

impl Error {
    /// What the operator can do about it.
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Password(_) => vec!["`masstockctl secrets generate` writes the missing secrets to the env file".to_owned()],
            Self::Unreachable(_) => vec!["`masstockctl health` checks redis; `masstockctl deploy` starts it".to_owned()],
            Self::Connect { .. } => vec![
                "`masstockctl health` checks redis; `masstockctl deploy` starts it".to_owned(),
                "the password is `REDIS_PASSWORD` in the env file: redis runs with the one of its last deploy".to_owned(),
            ],
            Self::SaveFailed { .. } => vec![
                "redis's log says why (`masstockctl logs redis`): often a full disk or too little memory to fork"
                    .to_owned(),
            ],
            Self::Superseded { .. } | Self::PauseTooShort { .. } => {
                vec!["run the backup again: nothing was changed".to_owned()]
            }
            Self::Docker(error) => error.hint().map(str::to_owned).into_iter().collect(),
            Self::StillRunning(_) => vec!["`masstockctl restore` stops the worker and redis before it puts redis back".to_owned()],
            Self::NoDataVolume => vec![format!(
                "declare it: `volumes = [{{ source = \"redis_data\", target = \"{DATA}\" }}]` under [services.redis] and `redis_data = {{}}` under [volumes]"
            )],
            Self::Throwaway { logs, .. } => logs.iter().map(|line| format!("log: {line}")).collect(),
            _ => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The four functions
// ---------------------------------------------------------------------------------------------

/// Writes a point-in-time RDB of the live redis into `sink` and answers its figures.
pub async fn capture(target: &Target<'_>, sink: &mut (dyn AsyncWrite + Unpin + Send)) -> Result<Figures, Error> {
    let live = Live::find(target).await?;
    let mut connection = live.connect().await?;
    let path = rdb_path(&mut connection, &live.secret).await?;

    target.reporter.detail(&format!("redis: holding writes to read the figures and fork a save ({})", live.shown));
    let (figures, saves_before, held) = pause_read_and_save(&live, &mut connection).await?;
    target.reporter.detail(&format!("redis: writes held for {:.2}s", held.as_secs_f64()));
    let saved = wait_for_save(&mut connection, &live.secret, saves_before).await?;

    let container = target.stack.container_name(SERVICE);
    let activity = target.reporter.transfer(&format!("redis: copying `{path}`"), true);
    let copied = download_file(target.docker, &container, &path, sink, activity.as_ref()).await;
    activity.finish();
    copied?;

    let after = info(&mut connection, "persistence", &live.secret).await?;
    if save_marker(&after) != Some(saved) || field(&after, "rdb_bgsave_in_progress") != Some("0") {
        return Err(Error::Superseded { path });
    }
    Ok(figures)
}

/// Replaces the data in the redis service's volume with the RDB from `source`, so that the
/// service, started again with its normal command (AOF on), serves exactly that data.
pub async fn put_back(target: &Target<'_>, source: &mut (dyn AsyncRead + Unpin + Send)) -> Result<(), Error> {
    let (docker, stack) = (target.docker, target.stack);
    let service_container = stack.container_name(SERVICE);
    let image = match docker.inspect_container(&service_container, None).await {
        Ok(inspected) => {
            if inspected.state.as_ref().and_then(|state| state.running) == Some(true) {
                return Err(Error::StillRunning(service_container));
            }
            inspected.image.unwrap_or_else(|| stack.image_reference(SERVICE))
        }
        Err(error) if docker::is_not_found(&error) => stack.image_reference(SERVICE),
        Err(error) => return Err(docker::api_error(format!("failed to inspect `{service_container}`"), &error).into()),
    };
    let volume = data_volume(target).await?;
    let uid = stack.config.services.get(SERVICE).and_then(|service| service.user);
    let spooled = spool(source).await?;

    let name = format!("{service_container}_restore");
    // A put back killed earlier may have left its throwaway: it is ours by its name.
    remove_container(docker, &name).await?;
    let mut container_labels = crate::deploy::spec::project_labels(stack, SERVICE);
    container_labels.insert(labels::ONEOFF.to_owned(), "True".to_owned());
    let command = [
        "redis-server",
        "--dir",
        DATA,
        "--dbfilename",
        DUMP,
        "--appendonly",
        "no",
        "--save",
        "",
        "--port",
        "0",
        "--unixsocket",
        RESTORE_SOCKET,
        "--unixsocketperm",
        "700",
    ];
    let body = throwaway_body(&image, uid, &command, &volume, "none", container_labels);
    target.reporter.detail(&format!("redis: loading the snapshot into `{volume}` with `{name}`"));
    create_container(docker, &name, body).await?;
    let result = rewrite_in(docker, &name, spooled, uid).await;
    let removed = remove_container(docker, &name).await;
    result?;
    removed
}

/// The figures of the live redis.
pub async fn measure(target: &Target<'_>) -> Result<Figures, Error> {
    let live = Live::find(target).await?;
    let mut connection = live.connect().await?;
    figures(&live.url, &mut connection, &live.secret).await
}

/// Loads the RDB from `source` into a throwaway redis on the drill's network and answers its
/// figures. Everything it creates is registered in `scratch` first.
pub async fn drill(
    target: &Target<'_>,
    scratch: &mut Scratch,
    source: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<Figures, Error> {
    let (docker, stack) = (target.docker, target.stack);
    let service_container = stack.container_name(SERVICE);
    let image = match docker.inspect_container(&service_container, None).await {
        Ok(inspected) => inspected.image.unwrap_or_else(|| stack.image_reference(SERVICE)),
        Err(_) => stack.image_reference(SERVICE),
    };
    let uid = stack.config.services.get(SERVICE).and_then(|service| service.user);
    let spooled = spool(source).await?;

    let volume = scratch.name(SERVICE);
    scratch.add_volume(volume.clone());
    let request = VolumeCreateRequest {
        name: Some(volume.clone()),
        labels: Some(scratch.labels()),
        ..VolumeCreateRequest::default()
    };
    docker
        .create_volume(request)
        .await
        .map_err(|error| docker::api_error(format!("failed to create volume `{volume}`"), &error))?;
    let network = scratch.network(docker).await?;

    let name = scratch.name(SERVICE);
    scratch.add_container(name.clone());
    let config = format!("{DATA}/{DRILL_CONFIG}");
    let command = ["redis-server", &config, "--dir", DATA, "--dbfilename", DUMP, "--appendonly", "no", "--save", ""];
    let body = throwaway_body(&image, uid, &command, &volume, &network, scratch.labels());
    target.reporter.detail(&format!("redis: loading the snapshot into `{name}`"));
    create_container(docker, &name, body).await?;

    let password = random_password()?;
    let extra = format!("requirepass \"{password}\"\n");
    upload(docker, &name, spooled, uid, Some(extra.as_bytes())).await?;
    start_container(docker, &name).await?;
    let address = docker::container_address(docker, &name, &network).await?;
    let url = crate::health::redis_url(&address, PORT, Some(&password));
    let secret = Secret::new(&url, Some(&password));
    let mut connection = until_loaded(docker, &name, &url, &secret).await?;
    figures(&url, &mut connection, &secret).await
}

// ---------------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------------

/// `redis.keys` and `queue.<state>` of the redis at `url` (`connection` is a connection to it).
async fn figures(url: &str, connection: &mut MultiplexedConnection, secret: &Secret) -> Result<Figures, Error> {
    let keyspace = info(connection, "keyspace", secret).await?;
    let mut figures = Figures::new();
    figures.insert("redis.keys".to_owned(), keys_without_expiry(&keyspace)?);
    let queue_error = |error: masstock_queue::admin::AdminError| Error::Queue(secret.scrub(&error.to_string()));
    let mut inspector = Inspector::connect(url, TIMEOUT).await.map_err(queue_error)?;
    let queues = inspector.queues(masstock_queue::PREFIX, crate::health::now_ms()).await.map_err(queue_error)?;
    let counts = queues
        .into_iter()
        .find(|queue| queue.name == masstock_queue::QUEUE)
        .map(|queue| queue.counts)
        .unwrap_or_default();
    for (state, count) in QUEUE_STATES.iter().zip([
        counts.wait,
        counts.prioritized,
        counts.delayed,
        counts.active,
        counts.completed,
        counts.failed,
        counts.paused,
    ]) {
        figures.insert(format!("queue.{state}"), count);
    }
    Ok(figures)
}

/// The keys without an expiry in every database of an `INFO keyspace` answer
/// (`db0:keys=3,expires=1,avg_ttl=0`).
fn keys_without_expiry(keyspace: &str) -> Result<u64, Error> {
    let mut total = 0;
    for line in keyspace.lines().filter(|line| line.starts_with("db")) {
        let unexpected = || Error::Unexpected { command: "INFO keyspace".to_owned(), answer: line.to_owned() };
        let (_, counts) = line.split_once(':').ok_or_else(unexpected)?;
        let count = |name: &str| {
            counts
                .split(',')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.trim().parse::<u64>().ok())
                .ok_or_else(unexpected)
        };
        total += count("keys")?.saturating_sub(count("expires")?);
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Talking to redis
// ---------------------------------------------------------------------------------------------

/// What to hide from messages: the URL and the password.
struct Secret {
    values: Vec<String>,
}

impl Secret {
    fn new(url: &str, password: Option<&str>) -> Self {
        let mut values = vec![url.to_owned()];
        values.extend(password.filter(|password| !password.is_empty()).map(str::to_owned));
        // As `health::redis_url` writes it: percent-encoded.
        if let Some((encoded, _)) = url.strip_prefix("redis://:").and_then(|rest| rest.rsplit_once('@')) {
            values.push(encoded.to_owned());
        }
        values.retain(|value| !value.is_empty());
        Self { values }
    }

    fn scrub(&self, text: &str) -> String {
        self.values.iter().fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "***"))
    }
}

/// The live redis service, seen from this host.
struct Live {
    url: String,
    shown: String,
    secret: Secret,
}

impl Live {
    async fn find(target: &Target<'_>) -> Result<Self, Error> {
        let stack = target.stack;
        let password = crate::health::redis_password(stack, SERVICE)?;
        let container = stack.container_name(SERVICE);
        let address = docker::container_address(target.docker, &container, &stack.config.project.network).await?;
        let url = crate::health::redis_url(&address, PORT, password.as_deref());
        let shown = masstock_queue::admin::redacted_url(&url);
        let secret = Secret::new(&url, password.as_deref());
        Ok(Self { url, shown, secret })
    }

    async fn connect(&self) -> Result<MultiplexedConnection, Error> {
        connect(&self.url, &self.secret).await
    }
}

async fn connect(url: &str, secret: &Secret) -> Result<MultiplexedConnection, Error> {
    let shown = masstock_queue::admin::redacted_url(url);
    let failed = |message: String| Error::Connect { shown: shown.clone(), message: secret.scrub(&message) };
    let client = redis::Client::open(url).map_err(|error| failed(error.to_string()))?;
    let config =
        redis::AsyncConnectionConfig::new().set_connection_timeout(Some(TIMEOUT)).set_response_timeout(Some(TIMEOUT));
    let mut connection = tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection_with_config(&config))
        .await
        .map_err(|_| failed(format!("no answer within {}s", TIMEOUT.as_secs())))?
        .map_err(|error| failed(error.to_string()))?;
    // A wrong password shows on the first command.
    let _: String = redis::cmd("PING").query_async(&mut connection).await.map_err(|error| failed(error.to_string()))?;
    Ok(connection)
}

/// Runs `command` (its words), failing with what redis said.
async fn run<T: redis::FromRedisValue>(
    connection: &mut MultiplexedConnection,
    command: &[&str],
    secret: &Secret,
) -> Result<T, Error> {
    let mut cmd = redis::cmd(command[0]);
    for arg in &command[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(connection)
        .await
        .map_err(|error| Error::Command { command: command.join(" "), message: secret.scrub(&error.to_string()) })
}

/// One section of `INFO`.
async fn info(connection: &mut MultiplexedConnection, section: &str, secret: &Secret) -> Result<String, Error> {
    run(connection, &["INFO", section], secret).await
}

/// A `name:value` field of an `INFO` answer.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

/// What says a save has completed since: `rdb_saves` (Redis ≥ 7), else `rdb_last_save_time`.
fn save_marker(info: &str) -> Option<u64> {
    field(info, "rdb_saves").or_else(|| field(info, "rdb_last_save_time"))?.parse().ok()
}

/// Whether a fork (save or AOF rewrite) is running.
fn forking(info: &str) -> bool {
    field(info, "rdb_bgsave_in_progress") != Some("0") || field(info, "aof_rewrite_in_progress") == Some("1")
}

/// Where redis writes its RDB, in its container: `CONFIG GET dir` / `dbfilename`.
async fn rdb_path(connection: &mut MultiplexedConnection, secret: &Secret) -> Result<String, Error> {
    let mut values = Vec::new();
    for name in ["dir", "dbfilename"] {
        let command = ["CONFIG", "GET", name];
        let answer: Vec<String> = run(connection, &command, secret).await?;
        let value = answer
            .into_iter()
            .nth(1)
            .ok_or_else(|| Error::Unexpected { command: command.join(" "), answer: "nothing".to_owned() })?;
        values.push(value);
    }
    Ok(format!("{}/{}", values[0].trim_end_matches('/'), values[1]))
}

/// Waits until no fork runs, holds writes, reads the figures, forks a `BGSAVE`, and lets writes
/// go: the figures, the `save_marker` before the save, and how long writes were held.
async fn pause_read_and_save(
    live: &Live,
    connection: &mut MultiplexedConnection,
) -> Result<(Figures, u64, Duration), Error> {
    let secret = &live.secret;
    let mut attempt = 1;
    loop {
        let deadline = Instant::now() + LONG_WORK;
        let before = loop {
            let persistence = info(connection, "persistence", secret).await?;
            if !forking(&persistence) {
                break persistence;
            }
            if Instant::now() >= deadline {
                return Err(Error::TimedOut { what: "redis's running save or rewrite".to_owned(), limit: LONG_WORK });
            }
            tokio::time::sleep(POLL).await;
        };
        let marker = save_marker(&before).ok_or_else(|| Error::Unexpected {
            command: "INFO persistence".to_owned(),
            answer: "no `rdb_saves` or `rdb_last_save_time`".to_owned(),
        })?;
        let millis = PAUSE.as_millis().to_string();
        let paused_at = Instant::now();
        let () = run(connection, &["CLIENT", "PAUSE", &millis, "WRITE"], secret).await?;
        let held = async {
            let figures = figures(&live.url, connection, secret).await?;
            let seconds = paused_at.elapsed().as_secs();
            if paused_at.elapsed() >= PAUSE.saturating_sub(Duration::from_secs(1)) {
                return Err(Error::PauseTooShort { seconds });
            }
            let saved: Result<String, Error> = run(connection, &["BGSAVE"], secret).await;
            Ok((figures, saved))
        }
        .await;
        let unpaused: Result<(), Error> = run(connection, &["CLIENT", "UNPAUSE"], secret).await;
        let held_for = paused_at.elapsed();
        let (figures, saved) = held?;
        unpaused?;
        match saved {
            Ok(_) => return Ok((figures, marker, held_for)),
            // Another fork started between our look and our save: look again.
            Err(Error::Command { message, .. }) if attempt < SAVE_ATTEMPTS && message.contains("in progress") => {
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Waits until the save forked after `marker` ends: its `save_marker`, or why it failed.
async fn wait_for_save(connection: &mut MultiplexedConnection, secret: &Secret, marker: u64) -> Result<u64, Error> {
    let deadline = Instant::now() + LONG_WORK;
    loop {
        let persistence = info(connection, "persistence", secret).await?;
        if field(&persistence, "rdb_bgsave_in_progress") == Some("0") {
            let status = field(&persistence, "rdb_last_bgsave_status").unwrap_or("?");
            match save_marker(&persistence) {
                Some(now) if now > marker && status == "ok" => return Ok(now),
                _ => return Err(Error::SaveFailed { status: status.to_owned() }),
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::TimedOut { what: "redis's BGSAVE".to_owned(), limit: LONG_WORK });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Connects to a throwaway redis once it has loaded its data (`PING` answers, not `LOADING`).
async fn until_loaded(
    docker: &Docker,
    container: &str,
    url: &str,
    secret: &Secret,
) -> Result<MultiplexedConnection, Error> {
    let deadline = Instant::now() + LONG_WORK;
    loop {
        let last = match connect(url, secret).await {
            Ok(connection) => return Ok(connection),
            Err(error) => error.to_string(),
        };
        if !running(docker, container).await? {
            return Err(throwaway_failed(docker, container, "it exited before it answered".to_owned()).await);
        }
        if Instant::now() >= deadline {
            return Err(throwaway_failed(
                docker,
                container,
                format!("not loaded after {}s: {last}", LONG_WORK.as_secs()),
            )
            .await);
        }
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Put back: the throwaway on the service's volume
// ---------------------------------------------------------------------------------------------

/// The Docker name of the service's volume mounted at `/data`, created with deploy's labels when
/// it does not exist.
async fn data_volume(target: &Target<'_>) -> Result<String, Error> {
    let stack = target.stack;
    let source = stack
        .config
        .services
        .get(SERVICE)
        .and_then(|service| service.volumes.iter().find(|mount| mount.target.trim_end_matches('/') == DATA))
        .map(|mount| mount.source.clone())
        .filter(|source| stack.config.volumes.contains_key(source))
        .ok_or(Error::NoDataVolume)?;
    let volume = stack.volume_name(&source);
    match target.docker.inspect_volume(&volume).await {
        Ok(_) => return Ok(volume),
        Err(error) if docker::is_not_found(&error) => {}
        Err(error) => return Err(docker::api_error(format!("failed to inspect volume `{volume}`"), &error).into()),
    }
    let mut volume_labels = crate::deploy::spec::project_labels(stack, SERVICE);
    volume_labels.remove(labels::SERVICE);
    volume_labels.insert(labels::VOLUME.to_owned(), source);
    let request = VolumeCreateRequest {
        name: Some(volume.clone()),
        labels: Some(volume_labels),
        ..VolumeCreateRequest::default()
    };
    target
        .docker
        .create_volume(request)
        .await
        .map_err(|error| docker::api_error(format!("failed to create volume `{volume}`"), &error))?;
    Ok(volume)
}

/// In the created throwaway `name`: the RDB in, loaded, a fresh AOF written from it, saved, and
/// the throwaway stopped, exiting 0.
async fn rewrite_in(docker: &Docker, name: &str, spooled: tokio::fs::File, uid: Option<u32>) -> Result<(), Error> {
    upload(docker, name, spooled, uid, None).await?;
    start_container(docker, name).await?;
    let cli = |words: &[&str]| -> Vec<String> {
        ["redis-cli", "-s", RESTORE_SOCKET].iter().chain(words).map(|word| (*word).to_owned()).collect()
    };

    let deadline = Instant::now() + LONG_WORK;
    loop {
        let said = exec_output(docker, name, &cli(&["PING"])).await;
        if said.as_deref().is_ok_and(|said| said.trim() == "PONG") {
            break;
        }
        if !running(docker, name).await? {
            return Err(throwaway_failed(docker, name, "it exited while loading the snapshot".to_owned()).await);
        }
        if Instant::now() >= deadline {
            let reason = format!("not loaded after {}s", LONG_WORK.as_secs());
            return Err(throwaway_failed(docker, name, reason).await);
        }
        tokio::time::sleep(POLL).await;
    }

    let said = exec_output(docker, name, &cli(&["CONFIG", "SET", "appendonly", "yes"])).await?;
    if said.trim() != "OK" {
        return Err(
            throwaway_failed(docker, name, format!("`CONFIG SET appendonly yes` answered `{}`", said.trim())).await
        );
    }
    loop {
        let persistence = exec_output(docker, name, &cli(&["INFO", "persistence"])).await?;
        let done = field(&persistence, "aof_rewrite_in_progress") == Some("0")
            && field(&persistence, "aof_rewrite_scheduled") == Some("0")
            && field(&persistence, "aof_rewrites").and_then(|count| count.parse::<u64>().ok()).unwrap_or(0) > 0;
        if done {
            match field(&persistence, "aof_last_bgrewrite_status") {
                Some("ok") => break,
                status => {
                    let reason =
                        format!("writing the AOF failed (`aof_last_bgrewrite_status:{}`)", status.unwrap_or("?"));
                    return Err(throwaway_failed(docker, name, reason).await);
                }
            }
        }
        if Instant::now() >= deadline {
            let reason = format!("the AOF was not written after {}s", LONG_WORK.as_secs());
            return Err(throwaway_failed(docker, name, reason).await);
        }
        tokio::time::sleep(POLL).await;
    }

    // The connection closes as redis exits: its exit status is the answer.
    let _ = exec_output(docker, name, &cli(&["SHUTDOWN", "SAVE"])).await;
    let options = WaitContainerOptionsBuilder::default().condition("not-running").build();
    let mut waited = docker.wait_container(name, Some(options));
    let code = match tokio::time::timeout(LONG_WORK, waited.next()).await {
        Ok(Some(Ok(response))) => response.status_code,
        // bollard reports a non-zero exit as an error that carries the code.
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
        Ok(Some(Err(error))) => return Err(docker::api_error(format!("failed to wait for `{name}`"), &error).into()),
        Ok(None) | Err(_) => {
            let reason = format!("did not stop within {}s of `SHUTDOWN SAVE`", LONG_WORK.as_secs());
            return Err(throwaway_failed(docker, name, reason).await);
        }
    };
    if code != 0 {
        return Err(throwaway_failed(docker, name, format!("`SHUTDOWN SAVE` ended with exit code {code}")).await);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Engine helpers
// ---------------------------------------------------------------------------------------------

/// A throwaway redis container's body: `image` running `command` as `uid`, `volume` at `/data`,
/// on `network` (`none` for none), no restart, no health check.
fn throwaway_body(
    image: &str,
    uid: Option<u32>,
    command: &[&str],
    volume: &str,
    network: &str,
    container_labels: HashMap<String, String>,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(command.iter().map(|word| (*word).to_owned()).collect()),
        user: uid.map(|uid| uid.to_string()),
        labels: Some(container_labels),
        healthcheck: Some(bollard::models::HealthConfig { test: Some(vec!["NONE".to_owned()]), ..Default::default() }),
        host_config: Some(HostConfig {
            mounts: Some(vec![Mount {
                target: Some(DATA.to_owned()),
                source: Some(volume.to_owned()),
                typ: Some(MountType::VOLUME),
                ..Mount::default()
            }]),
            network_mode: Some(network.to_owned()),
            // Redis writes to its volume only.
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

async fn create_container(docker: &Docker, name: &str, body: ContainerCreateBody) -> Result<(), Error> {
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    docker
        .create_container(Some(options), body)
        .await
        .map_err(|error| docker::api_error(format!("failed to create `{name}`"), &error))?;
    Ok(())
}

async fn start_container(docker: &Docker, name: &str) -> Result<(), Error> {
    docker
        .start_container(name, None)
        .await
        .map_err(|error| docker::api_error(format!("failed to start `{name}`"), &error))?;
    Ok(())
}

/// Removes a container, gone already or not.
async fn remove_container(docker: &Docker, name: &str) -> Result<(), Error> {
    let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(error) if docker::is_not_found(&error) => Ok(()),
        Err(error) => Err(docker::api_error(format!("failed to remove `{name}`"), &error).into()),
    }
}

async fn running(docker: &Docker, name: &str) -> Result<bool, Error> {
    let inspected = docker
        .inspect_container(name, None)
        .await
        .map_err(|error| docker::api_error(format!("failed to inspect `{name}`"), &error))?;
    Ok(inspected.state.and_then(|state| state.running) == Some(true))
}

/// A throwaway failed: `reason`, with its last log lines.
async fn throwaway_failed(docker: &Docker, container: &str, reason: String) -> Error {
    let logs = crate::deploy::wait::last_log_lines(docker, container, 10).await;
    Error::Throwaway { container: container.to_owned(), reason, logs }
}

/// Runs `command` in `container` and answers what it printed (stdout and stderr).
async fn exec_output(docker: &Docker, container: &str, command: &[String]) -> Result<String, Error> {
    let failed = |error: bollard::errors::Error| {
        Error::from(docker::api_error(format!("failed to run `{}` in `{container}`", command.join(" ")), &error))
    };
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(command.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..CreateExecOptions::default()
            },
        )
        .await
        .map_err(failed)?;
    let mut said = String::new();
    let run = async {
        if let StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&exec.id, None).await.map_err(failed)?
        {
            while let Some(Ok(chunk)) = output.next().await {
                said.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        Ok::<(), Error>(())
    };
    tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| Error::TimedOut { what: format!("`{}` in `{container}`", command.join(" ")), limit: TIMEOUT })??;
    Ok(said)
}

// ---------------------------------------------------------------------------------------------
// The RDB through the engine
// ---------------------------------------------------------------------------------------------

/// Copies `source` into an anonymous temporary file (0600, already unlinked), rewound.
async fn spool(source: &mut (dyn AsyncRead + Unpin + Send)) -> Result<tokio::fs::File, Error> {
    let file = tokio::task::spawn_blocking(tempfile::tempfile)
        .await
        .map_err(|error| Error::Spool(std::io::Error::other(error)))?
        .map_err(Error::Spool)?;
    let mut file = tokio::fs::File::from_std(file);
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let read = source.read(&mut buffer).await.map_err(Error::Source)?;
        if read == 0 {
            break;
        }
        file.write_all(&buffer[..read]).await.map_err(Error::Spool)?;
    }
    file.flush().await.map_err(Error::Spool)?;
    file.rewind().await.map_err(Error::Spool)?;
    Ok(file)
}

/// A tar header for `name` (`size` bytes, 0600, owned by `uid`).
fn tar_header(name: &str, size: u64, uid: Option<u32>) -> Result<Bytes, Error> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).map_err(Error::Spool)?;
    header.set_size(size);
    header.set_mode(0o600);
    let owner = u64::from(uid.unwrap_or(0));
    header.set_uid(owner);
    header.set_gid(owner);
    header.set_mtime(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs()),
    );
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(Bytes::copy_from_slice(header.as_bytes()))
}

/// Zeros up to the next 512-byte boundary after `size` bytes.
fn padding(size: u64) -> Bytes {
    let rest = usize::try_from(size % 512).unwrap_or(0);
    Bytes::from(vec![0_u8; if rest == 0 { 0 } else { 512 - rest }])
}

/// Uploads `spooled` as `/data/dump.rdb` into the created container `name`, owned by `uid`, and
/// the drill's configuration beside it when `config` is given. Streamed from the file.
async fn upload(
    docker: &Docker,
    name: &str,
    spooled: tokio::fs::File,
    uid: Option<u32>,
    config: Option<&[u8]>,
) -> Result<(), Error> {
    let size = spooled.metadata().await.map_err(Error::Spool)?.len();
    let mut head = Vec::new();
    if let Some(config) = config {
        let length = u64::try_from(config.len()).unwrap_or(u64::MAX);
        head.push(tar_header(DRILL_CONFIG, length, uid)?);
        head.push(Bytes::copy_from_slice(config));
        head.push(padding(length));
    }
    head.push(tar_header(DUMP, size, uid)?);
    let body = futures_util::stream::unfold(spooled, |mut file| async move {
        let mut buffer = vec![0_u8; 256 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok(Bytes::from(buffer)), file))
            }
            Err(error) => Some((Err(error), file)),
        }
    });
    let tail = [padding(size), Bytes::from(vec![0_u8; 1024])];
    let stream = futures_util::stream::iter(head.into_iter().map(Ok))
        .chain(body)
        .chain(futures_util::stream::iter(tail.into_iter().map(Ok)));
    let options = UploadToContainerOptionsBuilder::default().path(DATA).build();
    docker
        .upload_to_container(name, Some(options), bollard::body_try_stream(stream))
        .await
        .map_err(|error| docker::api_error(format!("failed to copy the snapshot into `{name}`"), &error))?;
    Ok(())
}

/// Streams the file at `path` in `container` into `sink`, through the engine's tar of it.
async fn download_file(
    docker: &Docker,
    container: &str,
    path: &str,
    sink: &mut (dyn AsyncWrite + Unpin + Send),
    activity: &dyn crate::report::Activity,
) -> Result<u64, Error> {
    let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
    let stream = docker.download_from_container(container, Some(options));
    let mut tar = TarStream { stream: Box::pin(stream), pending: Bytes::new() };
    let not_the_file = |reason: String| Error::NotTheFile { path: path.to_owned(), reason };
    let engine = |error: bollard::errors::Error| {
        Error::from(docker::api_error(format!("failed to copy `{path}` out of `{container}`"), &error))
    };
    // Extension headers (PAX, GNU long names) come first; PAX may give the real size.
    let mut pax_size = None;
    let size = loop {
        let block = tar.take(512).await.map_err(engine)?.ok_or_else(|| not_the_file("it ended early".to_owned()))?;
        let header = tar::Header::from_byte_slice(&block);
        let size = header.entry_size().map_err(|error| not_the_file(error.to_string()))?;
        match header.entry_type() {
            tar::EntryType::XHeader
            | tar::EntryType::XGlobalHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {
                let length = usize::try_from(size).map_err(|error| not_the_file(error.to_string()))?;
                let data =
                    tar.take(length).await.map_err(engine)?.ok_or_else(|| not_the_file("it ended early".to_owned()))?;
                tar.take(padding(size).len()).await.map_err(engine)?;
                if header.entry_type() == tar::EntryType::XHeader {
                    for extension in tar::PaxExtensions::new(&data).flatten() {
                        if extension.key() == Ok("size") {
                            pax_size = extension.value().ok().and_then(|value| value.parse::<u64>().ok());
                        }
                    }
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => break pax_size.unwrap_or(size),
            other => return Err(not_the_file(format!("its first entry is a {other:?}, not a file"))),
        }
    };
    let sink_error = |error| Error::Sink { path: path.to_owned(), error };
    let mut copied = 0;
    while copied < size {
        let wanted = usize::try_from((size - copied).min(1 << 20)).unwrap_or(1 << 20);
        let chunk =
            tar.up_to(wanted).await.map_err(engine)?.ok_or_else(|| not_the_file("it ended early".to_owned()))?;
        sink.write_all(&chunk).await.map_err(sink_error)?;
        copied += u64::try_from(chunk.len()).unwrap_or(0);
        activity.bytes(copied, size);
    }
    sink.flush().await.map_err(sink_error)?;
    Ok(copied)
}

/// A tar read from the engine's byte stream, a chunk at a time.
struct TarStream<S> {
    stream: std::pin::Pin<Box<S>>,
    pending: Bytes,
}

impl<S: Stream<Item = Result<Bytes, bollard::errors::Error>>> TarStream<S> {
    /// At most `wanted` bytes (at least one); `None` at the end.
    async fn up_to(&mut self, wanted: usize) -> Result<Option<Bytes>, bollard::errors::Error> {
        while self.pending.is_empty() {
            match self.stream.next().await {
                Some(chunk) => self.pending = chunk?,
                None => return Ok(None),
            }
        }
        let length = wanted.min(self.pending.len());
        Ok(Some(self.pending.split_to(length)))
    }

    /// Exactly `length` bytes; `None` when the stream ends first.
    async fn take(&mut self, length: usize) -> Result<Option<Vec<u8>>, bollard::errors::Error> {
        let mut taken = Vec::with_capacity(length);
        while taken.len() < length {
            match self.up_to(length - taken.len()).await? {
                Some(chunk) => taken.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
        Ok(Some(taken))
    }
}

/// 32 random hex digits: the drill redis's password, which only this process knows.
fn random_password() -> Result<String, Error> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| Error::Random(error.to_string()))?;
    Ok(crate::secrets::hex(&bytes))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bollard::models::NetworkCreateRequest;
    use bollard::query_parameters::{
        ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, RemoveVolumeOptionsBuilder,
    };
    use redis::AsyncCommands as _;

    use super::*;
    use crate::config::Stack;
    use crate::deploy::spec::{Role, ServiceSpec};
    use crate::deploy::{apply, secret_files, wait};
    use crate::docker::build::BuildOptions;
    use crate::report::Silent;

    /// Every object whose name holds the test's project name, removed on drop, failed or not.
    struct Cleanup {
        project: String,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let project = self.project.clone();
            let cleaning = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    let docker = docker::connect().await.unwrap();
                    let filters = HashMap::from([("name".to_owned(), vec![project.clone()])]);
                    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
                    for container in docker.list_containers(Some(options)).await.unwrap_or_default() {
                        let _ = remove_container(&docker, container.id.as_deref().unwrap_or_default()).await;
                    }
                    let options = ListVolumesOptionsBuilder::default().filters(&filters).build();
                    let volumes = docker.list_volumes(Some(options)).await.ok().and_then(|list| list.volumes);
                    for volume in volumes.unwrap_or_default() {
                        let options = RemoveVolumeOptionsBuilder::default().force(true).build();
                        let _ = docker.remove_volume(&volume.name, Some(options)).await;
                    }
                    let options = ListNetworksOptionsBuilder::default().filters(&filters).build();
                    for network in docker.list_networks(Some(options)).await.unwrap_or_default() {
                        let _ = docker.remove_network(network.id.as_deref().unwrap_or_default()).await;
                    }
                });
            });
            let _ = cleaning.join();
        }
    }

    /// The shipped deploy.toml's local environment as project `project`, with its own network,
    /// env file and state folder in `folder`.
    fn stack_in(folder: &Path, project: &str, password: &str) -> Stack {
        let shipped = fs_err::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy.toml")).unwrap();
        let config = shipped.replacen("name = \"masstock\"", &format!("name = \"{project}\""), 1).replacen(
            "network = \"masstock_network\"",
            &format!("network = \"{project}_network\""),
            1,
        );
        fs_err::write(folder.join("deploy.toml"), config).unwrap();
        let env = format!(
            "REDIS_PASSWORD={password}\nDATABASE_URL=postgres://u:p@127.0.0.1/none\nJWT_SECRET=0123456789abcdef0123456789abcdef\nGEMINI_API_KEY=unused\nENCRYPTION_KEY=unused\n"
        );
        crate::atomic::write_file(&folder.join(".env.local"), env.as_bytes(), 0o600).unwrap();
        Stack::from_source(&crate::config::read_source(&folder.join("deploy.toml")).unwrap(), "local").unwrap()
    }

    /// The redis service as deploy makes it: its image built or reused, its network, its secret
    /// files; the container is created by [`start_redis`].
    async fn prepare_redis(docker: &Docker, stack: &Stack) -> ServiceSpec {
        let images =
            crate::deploy::rollout::images_for(docker, stack, &[SERVICE.to_owned()], &BuildOptions::default(), &Silent)
                .await
                .unwrap();
        let network = stack.config.project.network.clone();
        let request = NetworkCreateRequest {
            name: network,
            driver: Some("bridge".to_owned()),
            ..NetworkCreateRequest::default()
        };
        docker.create_network(request).await.unwrap();
        secret_files::ensure_version_key(stack).unwrap();
        let spec = ServiceSpec::resolve(stack, SERVICE, images[SERVICE].clone()).unwrap();
        spec.secrets.as_ref().unwrap().install(SERVICE).unwrap();
        spec
    }

    async fn start_redis(docker: &Docker, stack: &Stack, spec: &ServiceSpec, create: bool) {
        let container = stack.container_name(SERVICE);
        if create {
            apply::create_and_start(docker, stack, spec, Role::Primary, None).await.unwrap();
        } else {
            docker.start_container(&container, None).await.unwrap();
        }
        let ready = wait::until_ready(docker, &container, &spec.readiness(), Duration::from_secs(60)).await;
        assert!(ready.is_ok(), "{}", ready.unwrap_err().to_text());
    }

    async fn connection_to(docker: &Docker, stack: &Stack, password: &str) -> (String, MultiplexedConnection) {
        let container = stack.container_name(SERVICE);
        let address = docker::container_address(docker, &container, &stack.config.project.network).await.unwrap();
        let url = crate::health::redis_url(&address, PORT, Some(password));
        let connection = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        (url, connection)
    }

    /// The paths under `path` in `container` (running or not) and their owners, as the engine
    /// reads them.
    async fn files_in(docker: &Docker, container: &str, path: &str) -> Vec<(String, u64)> {
        let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
        let mut stream = docker.download_from_container(container, Some(options));
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        let mut archive = tar::Archive::new(bytes.as_slice());
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let path = entry.path().unwrap().display().to_string();
                (path, entry.header().uid().unwrap())
            })
            .collect()
    }

    /// The keys without a TTL, counted one by one (not by `INFO`, which the code reads).
    async fn keys_without_ttl(connection: &mut MultiplexedConnection) -> u64 {
        let keys: Vec<String> = connection.keys("*").await.unwrap();
        let mut count = 0;
        for key in keys {
            let ttl: i64 = connection.ttl(&key).await.unwrap();
            count += u64::from(ttl == -1);
        }
        count
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_capture_is_put_back_measured_and_drilled_with_the_same_figures() {
        let project = format!("mstb{}", random_password().unwrap().get(..10).unwrap());
        let _cleanup = Cleanup { project: project.clone() };
        let folder = tempfile::tempdir().unwrap();
        let password = random_password().unwrap();
        let stack = stack_in(folder.path(), &project, &password);
        let docker = docker::connect().await.unwrap();
        let target = Target { stack: &stack, docker: &docker, reporter: &Silent };
        let container = stack.container_name(SERVICE);

        let spec = prepare_redis(&docker, &stack).await;
        start_redis(&docker, &stack, &spec, true).await;
        let (url, mut connection) = connection_to(&docker, &stack, &password).await;
        for index in 0..40 {
            let () = connection.set(format!("kept:{index}"), index).await.unwrap();
        }
        let () = connection.hset("kept:hash", "field", "value").await.unwrap();
        for index in 0..5 {
            let () = connection.set_ex(format!("ttl:{index}"), index, 3600).await.unwrap();
        }
        // Gone by the time the copy is put back: keys with a TTL are not a figure.
        let () = redis::cmd("SET").arg("short").arg(1).arg("PX").arg(1500).query_async(&mut connection).await.unwrap();
        let queue = masstock_queue::WorkflowQueue::connect(&url, masstock_queue::PREFIX, TIMEOUT).await.unwrap();
        for premium in [true, false] {
            let job = masstock_queue::WorkflowJob {
                execution_id: uuid::Uuid::new_v4(),
                prompts: vec!["a cat".to_owned()],
                config: serde_json::json!({}),
            };
            queue.add(&job, premium, TIMEOUT).await.unwrap();
        }
        let expected_keys = keys_without_ttl(&mut connection).await;

        let mut rdb = Vec::new();
        let captured = capture(&target, &mut rdb).await.unwrap();
        assert!(rdb.starts_with(b"REDIS"), "not an RDB: {:?}", &rdb[..rdb.len().min(16)]);
        let mut expected: Figures = QUEUE_STATES.iter().map(|state| (format!("queue.{state}"), 0)).collect();
        expected.insert("queue.prioritized".to_owned(), 2);
        expected.insert("redis.keys".to_owned(), expected_keys);
        assert_eq!(captured, expected);
        assert!(expected_keys > 41, "the queue's keys count too: {expected_keys}");

        // Changes after the capture must not survive putting it back.
        let () = connection.set("after-capture", 1).await.unwrap();
        let () = connection.del("kept:7").await.unwrap();
        drop(connection);

        // A wrong password is said without the password, the right one or the wrong one.
        let other_folder = tempfile::tempdir().unwrap();
        let wrong = random_password().unwrap();
        let wrong_stack = stack_in(other_folder.path(), &project, &wrong);
        let wrong_target = Target { stack: &wrong_stack, docker: &docker, reporter: &Silent };
        let refused = measure(&wrong_target).await.unwrap_err().to_string();
        assert!(refused.to_lowercase().contains("password"), "{refused}");
        assert!(!refused.contains(&wrong) && !refused.contains(&password), "{refused}");

        // A running redis is refused.
        let refused = put_back(&target, &mut rdb.as_slice()).await;
        assert!(matches!(refused, Err(Error::StillRunning(_))), "{refused:?}");

        // Into the volume holding other data.
        apply::stop(&docker, &container, 10).await.unwrap();
        put_back(&target, &mut rdb.as_slice()).await.unwrap();
        // Redis's user owns every file, and the AOF is one new base and its increment.
        let files = files_in(&docker, &container, DATA).await;
        assert!(files.iter().all(|(_, uid)| *uid == 999), "{files:?}");
        let aof: Vec<&str> = files
            .iter()
            .filter_map(|(path, _)| path.strip_prefix("data/appendonlydir/"))
            .filter(|name| !name.is_empty())
            .collect();
        assert_eq!(aof.len(), 3, "{files:?}");
        assert!(aof.iter().any(|name| name.ends_with(".base.rdb")) && aof.contains(&"appendonly.aof.manifest"));
        start_redis(&docker, &stack, &spec, false).await;
        assert_eq!(measure(&target).await.unwrap(), captured);
        let (_, mut connection) = connection_to(&docker, &stack, &password).await;
        let (after, kept): (bool, u64) =
            redis::pipe().exists("after-capture").get("kept:7").query_async(&mut connection).await.unwrap();
        assert_eq!((after, kept), (false, 7));
        let persistence: String = redis::cmd("INFO").arg("persistence").query_async(&mut connection).await.unwrap();
        assert_eq!(field(&persistence, "aof_enabled"), Some("1"), "{persistence}");
        drop(connection);

        // Into a fresh volume (after `down --volumes`, say).
        apply::remove(&docker, &container).await.unwrap();
        let volume = stack.volume_name("redis_data");
        docker.remove_volume(&volume, None::<bollard::query_parameters::RemoveVolumeOptions>).await.unwrap();
        put_back(&target, &mut rdb.as_slice()).await.unwrap();
        let created = docker.inspect_volume(&volume).await.unwrap();
        assert_eq!(created.labels.get(labels::PROJECT), Some(&project));
        start_redis(&docker, &stack, &spec, true).await;
        assert_eq!(measure(&target).await.unwrap(), captured);

        // The drill reads the same figures from a throwaway redis, and leaves nothing behind.
        let mut scratch = Scratch::new(&stack);
        let drilled = drill(&target, &mut scratch, &mut rdb.as_slice()).await;
        let problems = scratch.remove_all(&docker).await;
        assert_eq!(drilled.unwrap(), captured);
        assert_eq!(problems, Vec::<String>::new());

        // A copy tampered with fails its checksum: the drill says the throwaway did not load it.
        let mut tampered = rdb.clone();
        let middle = tampered.len() / 2;
        tampered[middle] ^= 0xff;
        let mut scratch = Scratch::new(&stack);
        let drilled = drill(&target, &mut scratch, &mut tampered.as_slice()).await;
        let problems = scratch.remove_all(&docker).await;
        assert!(matches!(&drilled, Err(Error::Throwaway { .. })), "{drilled:?}");
        let hints = drilled.unwrap_err().hints();
        assert!(hints.iter().any(|line| line.contains("checksum") || line.contains("RDB")), "{hints:?}");
        assert_eq!(problems, Vec::<String>::new());

        // Putting back a copy that does not load fails, and the service still serves what it had:
        // its AOF was not touched.
        apply::stop(&docker, &container, 10).await.unwrap();
        let failed = put_back(&target, &mut tampered.as_slice()).await;
        assert!(matches!(&failed, Err(Error::Throwaway { .. })), "{failed:?}");
        start_redis(&docker, &stack, &spec, false).await;
        assert_eq!(measure(&target).await.unwrap(), captured);
    }

    #[test]
    fn keys_without_expiry_sum_every_database() {
        let keyspace = "# Keyspace\r\ndb0:keys=12,expires=2,avg_ttl=100\r\ndb3:keys=5,expires=0,avg_ttl=0\r\n";
        assert_eq!(keys_without_expiry(keyspace).unwrap(), 15);
        assert_eq!(keys_without_expiry("# Keyspace\r\n").unwrap(), 0);
        assert!(keys_without_expiry("db0:nonsense").is_err());
    }

    #[test]
    fn saves_are_told_apart_by_their_count() {
        let redis_7 = "# Persistence\r\nrdb_bgsave_in_progress:0\r\nrdb_saves:4\r\nrdb_last_save_time:1700000000\r\naof_rewrite_in_progress:0\r\n";
        assert_eq!((save_marker(redis_7), forking(redis_7)), (Some(4), false));
        let redis_6 = "rdb_bgsave_in_progress:1\r\nrdb_last_save_time:1700000000\r\n";
        assert_eq!((save_marker(redis_6), forking(redis_6)), (Some(1_700_000_000), true));
        assert!(forking("rdb_bgsave_in_progress:0\r\naof_rewrite_in_progress:1\r\n"));
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let secret = Secret::new("redis://:pw-123@10.0.0.2:6379", Some("pw-123"));
        assert_eq!(secret.scrub("failed: redis://:pw-123@10.0.0.2:6379 (pw-123)"), "failed: *** (***)");
        let url = crate::health::redis_url("10.0.0.2", PORT, Some("a/b@c"));
        let secret = Secret::new(&url, Some("a/b@c"));
        assert_eq!(secret.scrub("at :a%2Fb%40c@10.0.0.2 (a/b@c)"), "at :***@10.0.0.2 (***)");
    }
}
