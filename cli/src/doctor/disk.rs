//! `doctor`'s disk checks, the reference's "Disk space full" scenario: the free space and inodes of
//! each filesystem that holds the Docker data root, nginx's logs (`edge.log_dir`) or the project's
//! `logs` volume, and, for a filesystem in trouble, what fills it (the engine's usage, the largest
//! logs) and clean-up commands that are safe: they never touch volumes, images in use or
//! containers (truncating a log does throw its contents away).
//!
//! The thresholds are percentages ([`assess`]), so a small test filesystem trips them as a real
//! disk would. Filesystem calls block, so they run on tokio's blocking threads within the
//! context's timeout; the engine's `/system/df`, which can be slow, is only asked when a
//! filesystem is in trouble.
//!
//! - The filesystems of the Docker data root (`docker info`), `edge.log_dir` and the `logs`
//!   volume's mountpoint, grouped by device (not `f_fsid`: tmpfs reports 0 for all), measured with
//!   `statvfs` (rustix). Percentages only, so a small tmpfs and a 2 TB disk are judged alike: under
//!   10 % free is a warning, under 5 % (or 5 % of inodes) an error.
//! - Only then, because `/system/df` makes the engine walk every layer and volume, the engine's
//!   usage as `docker system df` totals it, and the five largest log files (those folders walked
//!   to depth 3 and 10,000 entries, plus the project's containers' json logs).
//! - The fixes are the safe ones (`image prune` of dangling images, `builder prune`,
//!   `truncate -s 0` of the named logs, `journalctl --vacuum`) and say not to prune volumes: Redis
//!   keeps the queue in one.
//! - bollard 0.21 reads only API 1.52's `/system/df` shape; for an older engine (this machine's
//!   20.10 speaks 1.41) this module sends the same read-only `GET /system/df` over the engine's
//!   unix socket itself. That is the one Engine API request not made through bollard, and it is
//!   only made when a filesystem is short of space.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use serde_json::Value;

use super::{Context, Finding, Severity};
use crate::systemd;

/// Below this share of free space or free inodes, the filesystem is in trouble now.
const ERROR_PERCENT: u64 = 5;
/// Below this share of free space, it soon will be.
const WARNING_PERCENT: u64 = 10;
/// How many of the largest log files a finding names.
const LARGEST_LOGS: usize = 5;
/// How deep and how far the log folders are walked.
const WALK_DEPTH: usize = 3;
const WALK_ENTRIES: usize = 10_000;
/// The most of the engine's `/system/df` answer that is read (the legacy format lists every image).
const DF_BODY_LIMIT: u64 = 32 * 1024 * 1024;
/// What the Docker data root is called in a finding; also how it is told from the log folders.
const DOCKER_ROOT: &str = "the Docker data root";
/// The endings of compressed archives: old logs kept on purpose, which `truncate` would leave
/// broken (an empty `.gz` is no archive), so never proposed for it.
const ARCHIVE_EXTENSIONS: [&str; 5] = ["gz", "xz", "zst", "bz2", "zip"];

/// A folder doctor watches, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Watched {
    what: &'static str,
    path: PathBuf,
}

/// What statvfs says of a filesystem: bytes and inodes, in all and available to the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    size: u64,
    available: u64,
    inodes: u64,
    inodes_available: u64,
}

/// One filesystem and the watched folders on it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filesystem {
    device: u64,
    mount_point: PathBuf,
    usage: Usage,
    watched: Vec<Watched>,
}

/// A log file and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogFile {
    path: PathBuf,
    size: u64,
    device: u64,
}

/// One line of the engine's disk usage, as `docker system df` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EngineTotal {
    kind: &'static str,
    count: i64,
    active: i64,
    size: i64,
    reclaimable: Option<i64>,
}

pub async fn examine(context: &Context<'_>) -> Vec<Finding> {
    let watched_paths = watched_folders(context).await;
    let watched = watched_paths.clone();
    let measured = tokio::task::spawn_blocking(move || measure_all(watched));
    // A filesystem that does not answer statvfs in time (a hung network mount) is not one this
    // check can judge; the services' own checks show what it breaks.
    let Ok(Ok(filesystems)) = tokio::time::timeout(context.timeout, measured).await else { return Vec::new() };
    let troubled: Vec<(Filesystem, Severity)> = filesystems
        .into_iter()
        .filter_map(|filesystem| assess(&filesystem.usage).map(|severity| (filesystem, severity)))
        .collect();
    if troubled.is_empty() {
        return Vec::new();
    }

    // The log folders are the watched ones, the data root aside.
    let log_folders: Vec<PathBuf> =
        watched_paths.into_iter().filter(|watched| watched.what != DOCKER_ROOT).map(|watched| watched.path).collect();
    // The engine's usage only matters where its data root is, and `/system/df` can be slow.
    let docker_in_trouble =
        troubled.iter().any(|(filesystem, _)| filesystem.watched.iter().any(|watched| watched.what == DOCKER_ROOT));
    let engine = async {
        if docker_in_trouble {
            engine_usage(context).await
        } else {
            Vec::new()
        }
    };
    let (engine, logs) = tokio::join!(engine, log_files(context, log_folders));
    let systemd = systemd::systemd_runs();
    let journal_device = fs_err::metadata("/var/log").ok().map(|metadata| metadata.dev());
    troubled
        .into_iter()
        .map(|(filesystem, severity)| {
            let largest = largest(&logs, filesystem.device, LARGEST_LOGS);
            let holds_docker = filesystem.watched.iter().any(|watched| watched.what == DOCKER_ROOT);
            let journal = systemd && journal_device.is_none_or(|device| device == filesystem.device);
            finding(&filesystem, severity, holds_docker.then_some(engine.as_slice()), &largest, journal)
        })
        .collect()
}

/// The folders to look at: the Docker data root (when the engine answers), `edge.log_dir`, and the
/// `logs` volume's mount point when the stack declares that volume.
async fn watched_folders(context: &Context<'_>) -> Vec<Watched> {
    let (root, volume) = tokio::join!(docker_root(context), logs_volume(context));
    let mut watched: Vec<Watched> = root.map(|path| Watched { what: DOCKER_ROOT, path }).into_iter().collect();
    let log_dir = &context.stack.config.edge.log_dir;
    if !log_dir.as_os_str().is_empty() {
        watched.push(Watched { what: "nginx's logs (`edge.log_dir`)", path: log_dir.clone() });
    }
    watched.extend(volume.map(|path| Watched { what: "the `logs` volume", path }));
    watched
}

/// The engine's data root (`docker info`'s `Docker Root Dir`), when it answers.
async fn docker_root(context: &Context<'_>) -> Option<PathBuf> {
    let docker = context.docker()?;
    let info = tokio::time::timeout(context.timeout, docker.info()).await.ok()?.ok()?;
    info.docker_root_dir.filter(|root| !root.is_empty()).map(PathBuf::from)
}

/// The mount point of the project's `logs` volume, when the stack declares it and it exists.
async fn logs_volume(context: &Context<'_>) -> Option<PathBuf> {
    let docker = context.docker()?;
    if !context.stack.config.volumes.contains_key("logs") {
        return None;
    }
    let volume = context.stack.volume_name("logs");
    let inspected = tokio::time::timeout(context.timeout, docker.inspect_volume(&volume)).await.ok()?.ok()?;
    Some(PathBuf::from(inspected.mountpoint)).filter(|path| !path.as_os_str().is_empty())
}

/// Measures every watched folder that exists and groups them by filesystem.
fn measure_all(watched: Vec<Watched>) -> Vec<Filesystem> {
    let measured: Vec<(u64, Usage, Watched)> = watched
        .into_iter()
        .filter_map(|watched| {
            let (device, usage) = measure(&watched.path).ok()?;
            Some((device, usage, watched))
        })
        .collect();
    let mut filesystems = group_by_device(measured);
    for filesystem in &mut filesystems {
        if let Some(first) = filesystem.watched.first() {
            filesystem.mount_point = mount_point(&first.path, filesystem.device);
        }
    }
    filesystems
}

/// The device of `path` and its filesystem's usage.
fn measure(path: &Path) -> std::io::Result<(u64, Usage)> {
    let device = fs_err::metadata(path)?.dev();
    let stat = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    let unit = if stat.f_frsize == 0 { stat.f_bsize } else { stat.f_frsize };
    let usage = Usage {
        size: stat.f_blocks.saturating_mul(unit),
        available: stat.f_bavail.saturating_mul(unit),
        inodes: stat.f_files,
        inodes_available: stat.f_favail,
    };
    Ok((device, usage))
}

/// One [`Filesystem`] per device, in the order the folders came; `mount_point` is left empty.
fn group_by_device(measured: Vec<(u64, Usage, Watched)>) -> Vec<Filesystem> {
    let mut filesystems: Vec<Filesystem> = Vec::new();
    for (device, usage, watched) in measured {
        match filesystems.iter_mut().find(|filesystem| filesystem.device == device) {
            Some(filesystem) => {
                if !filesystem.watched.contains(&watched) {
                    filesystem.watched.push(watched);
                }
            }
            None => filesystems.push(Filesystem { device, mount_point: PathBuf::new(), usage, watched: vec![watched] }),
        }
    }
    filesystems
}

/// The highest ancestor of `path` still on `device`: its mount point (or a bind mount's source
/// folder on the same device). `path` itself when it cannot be resolved.
fn mount_point(path: &Path, device: u64) -> PathBuf {
    let Ok(mut mount) = fs_err::canonicalize(path) else { return path.to_path_buf() };
    while let Some(parent) = mount.parent() {
        match fs_err::metadata(parent) {
            Ok(metadata) if metadata.dev() == device => mount = parent.to_path_buf(),
            _ => break,
        }
    }
    mount
}

/// How bad a filesystem's state is: an error under 5 % of free space or of free inodes, a
/// warning under 10 % of free space. `None` for pseudo-filesystems that report no size.
fn assess(usage: &Usage) -> Option<Severity> {
    let below = |part: u64, whole: u64, percent: u64| {
        whole > 0 && u128::from(part) * 100 < u128::from(whole) * u128::from(percent)
    };
    if below(usage.available, usage.size, ERROR_PERCENT) || below(usage.inodes_available, usage.inodes, ERROR_PERCENT) {
        Some(Severity::Error)
    } else if below(usage.available, usage.size, WARNING_PERCENT) {
        Some(Severity::Warning)
    } else {
        None
    }
}

/// The share of `whole` that is not `available`, in whole percents rounded up (`df`'s way).
fn percent_used(available: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    let used = u128::from(whole.saturating_sub(available));
    let percent = (used * 100).div_ceil(u128::from(whole));
    u64::try_from(percent).unwrap_or(100)
}

/// `0 B`, `512 B`, `15.9 MiB`, `1.0 GiB`: binary units, one decimal.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Tenths of the unit, in integers: exact for every u64.
    let mut unit = 0;
    let mut scale: u128 = 1024;
    while unit + 1 < UNITS.len() && u128::from(bytes) >= scale * 1024 {
        scale *= 1024;
        unit += 1;
    }
    let tenths = (u128::from(bytes) * 10 + scale / 2) / scale;
    // Rounding may reach the next unit (1023.96 KiB → 1024.0 KiB): show it as 1.0 MiB instead.
    if tenths >= 10_240 && unit + 1 < UNITS.len() {
        return format!("1.0 {}", UNITS[unit + 1]);
    }
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

fn human_signed(bytes: i64) -> String {
    human(u64::try_from(bytes).unwrap_or(0))
}

/// The finding of one filesystem in trouble.
fn finding(
    filesystem: &Filesystem,
    severity: Severity,
    engine: Option<&[String]>,
    largest: &[LogFile],
    journal: bool,
) -> Finding {
    let usage = &filesystem.usage;
    let mount = filesystem.mount_point.display().to_string();
    let holds = filesystem
        .watched
        .iter()
        .map(|watched| format!("{} `{}`", watched.what, watched.path.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let space_percent = percent_used(usage.available, usage.size);
    let inodes_low = usage.inodes > 0
        && u128::from(usage.inodes_available) * 100 < u128::from(usage.inodes) * u128::from(WARNING_PERCENT);
    let space_alone = Usage { inodes: 0, inodes_available: 0, ..*usage };
    let summary = if inodes_low && assess(&space_alone).is_none() {
        format!(
            "the filesystem at `{mount}` has used {} % of its inodes; it holds {holds}",
            percent_used(usage.inodes_available, usage.inodes)
        )
    } else {
        format!("the filesystem at `{mount}` is {space_percent} % full; it holds {holds}")
    };

    let mut evidence = vec![format!(
        "space: {} of {} used ({space_percent} %), {} free",
        human(usage.size.saturating_sub(usage.available)),
        human(usage.size),
        human(usage.available)
    )];
    if inodes_low {
        evidence.push(format!(
            "inodes: {} of {} used ({} %), {} free",
            usage.inodes.saturating_sub(usage.inodes_available),
            usage.inodes,
            percent_used(usage.inodes_available, usage.inodes),
            usage.inodes_available
        ));
    }
    if let Some(engine) = engine {
        evidence.extend(engine.iter().cloned());
    }
    if !largest.is_empty() {
        evidence.push("largest logs on it:".to_owned());
        evidence.extend(largest.iter().map(|file| format!("{} {}", human(file.size), file.path.display())));
    }

    let mut commands: Vec<String> = Vec::new();
    if engine.is_some() {
        commands.push("`docker image prune -f` (dangling images)".to_owned());
        commands.push("`docker builder prune -f` (build cache)".to_owned());
    }
    for file in largest.iter().filter(|file| file.size > 0 && !is_rotated_or_compressed(&file.path)).take(3) {
        commands.push(format!("`truncate -s 0 {}` ({})", shell_quote(&file.path.to_string_lossy()), human(file.size)));
    }
    if journal {
        commands.push("`journalctl --vacuum-time=7d` (the system journal)".to_owned());
    }
    if commands.is_empty() {
        commands.push(format!(
            "`du -xh --max-depth=2 {} | sort -h | tail` shows what takes the space",
            shell_quote(&mount)
        ));
    }
    let fix = format!(
        "free space with these commands, which never touch volumes, images in use or containers \
         (truncating a log throws its contents away): {}; do not prune volumes, Redis keeps the job queue in one",
        commands.join(", ")
    );
    let id = format!("disk-low:{mount}");
    let finding = match severity {
        Severity::Error => Finding::error(id, summary, fix),
        Severity::Warning => Finding::warning(id, summary, fix),
    };
    finding.with_evidence(evidence)
}

/// Whether `path` is a compressed archive (`access.log.2.gz`) or a rotated log (`access.log.1`):
/// not a log being written, so not one to truncate.
fn is_rotated_or_compressed(path: &Path) -> bool {
    path.extension().and_then(|extension| extension.to_str()).is_some_and(|extension| {
        ARCHIVE_EXTENSIONS.iter().any(|archive| extension.eq_ignore_ascii_case(archive))
            || (!extension.is_empty() && extension.bytes().all(|byte| byte.is_ascii_digit()))
    })
}

/// `text` as one shell word: itself when it holds only `[A-Za-z0-9_./-]`, else in single quotes
/// with each `'` written `'\''`.
pub(crate) fn shell_quote(text: &str) -> String {
    let plain = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'/' | b'-');
    if !text.is_empty() && text.bytes().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The engine's disk usage as `docker system df` shows it, one line per kind; a line saying why
/// when the engine does not answer.
async fn engine_usage(context: &Context<'_>) -> Vec<String> {
    let Some(docker) = context.docker() else { return Vec::new() };
    let totals = match tokio::time::timeout(context.timeout, docker.df(None)).await {
        Ok(Ok(usage)) => {
            let totals = current_usage(&usage);
            if totals.is_empty() {
                // Engines before API 1.52 answer in the older format, which bollard does not read.
                legacy_df(context.timeout).await
            } else {
                Ok(totals)
            }
        }
        Ok(Err(error)) => Err(DiskUsageError::Engine(crate::docker::engine_message(&error))),
        Err(_) => Err(DiskUsageError::Timeout(context.timeout)),
    };
    match totals {
        Ok(totals) => totals.iter().map(engine_line).collect(),
        Err(reason) => vec![format!("engine disk usage (`/system/df`): {reason}")],
    }
}

fn engine_line(total: &EngineTotal) -> String {
    let reclaimable =
        total.reclaimable.map(|bytes| format!(", {} reclaimable", human_signed(bytes))).unwrap_or_default();
    format!(
        "engine {}: {} ({} in use), {}{reclaimable}",
        total.kind,
        total.count,
        total.active,
        human_signed(total.size)
    )
}

/// The totals of API 1.52's `/system/df` (`ImageUsage`, `ContainerUsage`, …).
fn current_usage(usage: &bollard::models::SystemDataUsageResponse) -> Vec<EngineTotal> {
    let mut totals = Vec::new();
    let mut add = |kind, count: Option<i64>, active: Option<i64>, size: Option<i64>, reclaimable: Option<i64>| {
        if count.is_some() || size.is_some() {
            totals.push(EngineTotal {
                kind,
                count: count.unwrap_or(0),
                active: active.unwrap_or(0),
                size: size.unwrap_or(0),
                reclaimable,
            });
        }
    };
    if let Some(images) = &usage.image_usage {
        add("images", images.total_count, images.active_count, images.total_size, images.reclaimable);
    }
    if let Some(containers) = &usage.container_usage {
        add(
            "containers",
            containers.total_count,
            containers.active_count,
            containers.total_size,
            containers.reclaimable,
        );
    }
    if let Some(volumes) = &usage.volume_usage {
        add("local volumes", volumes.total_count, volumes.active_count, volumes.total_size, volumes.reclaimable);
    }
    if let Some(cache) = &usage.build_cache_usage {
        add("build cache", cache.total_count, cache.active_count, cache.total_size, cache.reclaimable);
    }
    totals
}

/// Why the engine's disk usage could not be read.
#[derive(Debug, thiserror::Error)]
enum DiskUsageError {
    /// The engine's own words (`crate::docker::engine_message`).
    #[error("{0}")]
    Engine(String),
    #[error("no answer within {}s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("this engine's format is only read over a unix socket, not `{0}`")]
    NotUnixSocket(String),
    #[error("`{}`: {error}", .socket.display())]
    Socket { socket: PathBuf, error: std::io::Error },
    #[error("the engine's answer has no body")]
    NoBody,
    #[error("the engine answered `{0}`")]
    Status(String),
    #[error("unreadable answer: {error}")]
    Unreadable { error: serde_json::Error },
}

/// `/system/df` in the engine's own format, over its unix socket (`DOCKER_HOST=unix://…` or the
/// default socket): the format engines before API 1.52 answer in, which bollard no longer reads.
async fn legacy_df(timeout: Duration) -> Result<Vec<EngineTotal>, DiskUsageError> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let socket = match std::env::var("DOCKER_HOST") {
        Ok(host) => match host.strip_prefix("unix://") {
            Some(path) => PathBuf::from(path),
            None => return Err(DiskUsageError::NotUnixSocket(host)),
        },
        Err(_) => PathBuf::from("/var/run/docker.sock"),
    };
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(&socket).await?;
        stream.write_all(b"GET /system/df HTTP/1.0\r\nHost: docker\r\n\r\n").await?;
        let mut response = Vec::new();
        stream.take(DF_BODY_LIMIT).read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => return Err(DiskUsageError::Socket { socket, error }),
        Err(_) => return Err(DiskUsageError::Timeout(timeout)),
    };
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or(DiskUsageError::NoBody)?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(DiskUsageError::Status(status.to_owned()));
    }
    let document: Value = serde_json::from_str(body).map_err(|error| DiskUsageError::Unreadable { error })?;
    Ok(legacy_usage(&document))
}

/// `docker system df`'s totals from the legacy `/system/df` document (`LayersSize`, `Images`,
/// `Containers`, `Volumes`, `BuildCache`), computed as the docker CLI does.
fn legacy_usage(document: &Value) -> Vec<EngineTotal> {
    let list = |key: &str| document.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let number = |value: &Value, key: &str| value.get(key).and_then(Value::as_i64).unwrap_or(0);
    let count = |items: usize| i64::try_from(items).unwrap_or(i64::MAX);
    let mut totals = Vec::new();

    let images = list("Images");
    let layers = number(document, "LayersSize");
    // An image is in use when a container runs from it; only its own layers would not come back.
    let active_images: Vec<&Value> = images.iter().filter(|image| number(image, "Containers") > 0).collect();
    let used: i64 = active_images
        .iter()
        .filter(|image| number(image, "Size") >= 0 && number(image, "SharedSize") >= 0)
        .map(|image| number(image, "Size") - number(image, "SharedSize"))
        .sum();
    totals.push(EngineTotal {
        kind: "images",
        count: count(images.len()),
        active: count(active_images.len()),
        size: layers,
        reclaimable: Some((layers - used).max(0)),
    });

    let containers = list("Containers");
    let running = |container: &Value| container.get("State").and_then(Value::as_str) == Some("running");
    totals.push(EngineTotal {
        kind: "containers",
        count: count(containers.len()),
        active: count(containers.iter().filter(|container| running(container)).count()),
        size: containers.iter().map(|container| number(container, "SizeRw").max(0)).sum(),
        reclaimable: Some(
            containers.iter().filter(|container| !running(container)).map(|c| number(c, "SizeRw").max(0)).sum(),
        ),
    });

    let volumes = list("Volumes");
    let usage = |volume: &Value, key: &str| volume.get("UsageData").map_or(0, |data| number(data, key));
    totals.push(EngineTotal {
        kind: "local volumes",
        count: count(volumes.len()),
        active: count(volumes.iter().filter(|volume| usage(volume, "RefCount") > 0).count()),
        size: volumes.iter().map(|volume| usage(volume, "Size").max(0)).sum(),
        reclaimable: Some(
            volumes.iter().filter(|volume| usage(volume, "RefCount") == 0).map(|v| usage(v, "Size").max(0)).sum(),
        ),
    });

    let cache = list("BuildCache");
    let flag = |record: &Value, key: &str| record.get(key).and_then(Value::as_bool).unwrap_or(false);
    totals.push(EngineTotal {
        kind: "build cache",
        count: count(cache.len()),
        active: count(cache.iter().filter(|record| flag(record, "InUse")).count()),
        size: cache.iter().filter(|record| !flag(record, "Shared")).map(|record| number(record, "Size").max(0)).sum(),
        reclaimable: Some(
            cache
                .iter()
                .filter(|record| !flag(record, "Shared") && !flag(record, "InUse"))
                .map(|record| number(record, "Size").max(0))
                .sum(),
        ),
    });
    totals
}

/// The log files that may fill a disk: those under `edge.log_dir` and the `logs` volume (walked
/// to a bounded depth and count), and the project's containers' json-file logs.
async fn log_files(context: &Context<'_>, roots: Vec<PathBuf>) -> Vec<LogFile> {
    let container_logs = container_log_paths(context).await;
    let walked = tokio::task::spawn_blocking(move || {
        let mut files = walk(&roots.iter().map(PathBuf::as_path).collect::<Vec<_>>(), WALK_DEPTH, WALK_ENTRIES);
        for path in container_logs {
            if let Ok(metadata) = fs_err::metadata(&path) {
                if metadata.is_file() && !files.iter().any(|file| file.path == path) {
                    files.push(LogFile { size: metadata.len(), device: metadata.dev(), path });
                }
            }
        }
        files
    });
    match tokio::time::timeout(context.timeout, walked).await {
        Ok(Ok(files)) => files,
        Ok(Err(_)) | Err(_) => Vec::new(),
    }
}

/// The `LogPath` of each of the project's containers (json-file logs; empty for other drivers).
async fn container_log_paths(context: &Context<'_>) -> Vec<PathBuf> {
    let Some(docker) = context.docker() else { return Vec::new() };
    let project = &context.stack.config.project.name;
    let listed = tokio::time::timeout(context.timeout, crate::docker::project_containers(docker, project)).await;
    let Ok(Ok(containers)) = listed else { return Vec::new() };
    let inspections =
        containers.iter().filter_map(|container| container.id.clone()).map(|id| log_path(docker, id, context.timeout));
    futures_util::future::join_all(inspections).await.into_iter().flatten().collect()
}

async fn log_path(docker: &Docker, id: String, timeout: Duration) -> Option<PathBuf> {
    let inspected = tokio::time::timeout(timeout, docker.inspect_container(&id, None)).await.ok()?.ok()?;
    inspected.log_path.filter(|path| !path.is_empty()).map(PathBuf::from)
}

/// The regular files under `roots`, `max_depth` folders deep at most (a root's own files are
/// depth 1), looking at `max_entries` entries at most; symbolic links are not followed.
fn walk(roots: &[&Path], max_depth: usize, max_entries: usize) -> Vec<LogFile> {
    let mut files = Vec::new();
    let mut seen = 0;
    let mut pending: Vec<(PathBuf, usize)> = roots.iter().map(|root| (root.to_path_buf(), 1)).collect();
    while let Some((folder, depth)) = pending.pop() {
        let Ok(entries) = fs_err::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            if seen >= max_entries {
                return files;
            }
            seen += 1;
            let Ok(metadata) = entry.path().symlink_metadata() else { continue };
            if metadata.is_file() {
                files.push(LogFile { path: entry.path(), size: metadata.len(), device: metadata.dev() });
            } else if metadata.is_dir() && depth < max_depth {
                pending.push((entry.path(), depth + 1));
            }
        }
    }
    files
}

/// The `count` largest files on `device`, largest first (ties by path); each file once.
fn largest(files: &[LogFile], device: u64, count: usize) -> Vec<LogFile> {
    let mut unique: BTreeMap<&Path, &LogFile> = BTreeMap::new();
    for file in files.iter().filter(|file| file.device == device) {
        unique.entry(file.path.as_path()).or_insert(file);
    }
    let mut on_device: Vec<LogFile> = unique.into_values().cloned().collect();
    on_device.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    on_device.truncate(count);
    on_device
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn usage(size: u64, available: u64, inodes: u64, inodes_available: u64) -> Usage {
        Usage { size, available, inodes, inodes_available }
    }

    #[test]
    fn severity_follows_the_shares_of_free_space_and_inodes() {
        // 16 MiB, plenty of inodes: the thresholds are 5 % and 10 % of the size, whatever it is.
        assert_eq!(assess(&usage(16 * MIB, 16 * MIB, 4096, 4096)), None);
        assert_eq!(assess(&usage(1000, 100, 4096, 4096)), None, "10 % free is not below 10 %");
        assert_eq!(assess(&usage(1000, 99, 4096, 4096)), Some(Severity::Warning));
        assert_eq!(assess(&usage(1000, 50, 4096, 4096)), Some(Severity::Warning), "5 % is not below 5 %");
        assert_eq!(assess(&usage(1000, 49, 4096, 4096)), Some(Severity::Error));
        assert_eq!(assess(&usage(16 * MIB, 0, 4096, 4000)), Some(Severity::Error));
        // Inodes: only running out counts, and a filesystem without inode counts (btrfs) is fine.
        assert_eq!(assess(&usage(1000, 900, 1000, 49)), Some(Severity::Error));
        assert_eq!(assess(&usage(1000, 900, 1000, 60)), None);
        assert_eq!(assess(&usage(1000, 900, 0, 0)), None);
        // Pseudo-filesystems (`/proc`) report no size.
        assert_eq!(assess(&usage(0, 0, 0, 0)), None);
        // Real sizes do not overflow.
        assert_eq!(assess(&usage(u64::MAX, u64::MAX / 100, u64::MAX, u64::MAX)), Some(Severity::Error));
    }

    #[test]
    fn bytes_and_percents_read_as_df_prints_them() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(16 * MIB), "16.0 MiB");
        assert_eq!(human(16 * MIB - 100 * 1024), "15.9 MiB");
        assert_eq!(human(1024 * 1024 - 1), "1.0 MiB", "rounding up to the next unit");
        assert_eq!(human(12 * 1024 * MIB + 512 * MIB), "12.5 GiB");
        assert_eq!(human(u64::MAX), "16.0 EiB");
        assert_eq!(percent_used(0, 16 * MIB), 100);
        assert_eq!(percent_used(16 * MIB, 16 * MIB), 0);
        assert_eq!(percent_used(999, 1000), 1, "rounded up, as df does");
        assert_eq!(percent_used(0, 0), 0);
    }

    fn watched(what: &'static str, path: &str) -> Watched {
        Watched { what, path: PathBuf::from(path) }
    }

    #[test]
    fn folders_are_grouped_by_device() {
        let root = usage(100, 3, 10, 10);
        let logs = usage(50, 40, 10, 10);
        let grouped = group_by_device(vec![
            (1, root, watched(DOCKER_ROOT, "/var/lib/docker")),
            (2, logs, watched("nginx's logs (`edge.log_dir`)", "/var/log/nginx")),
            (1, root, watched("the `logs` volume", "/var/lib/docker/volumes/masstock_logs/_data")),
            (1, root, watched(DOCKER_ROOT, "/var/lib/docker")),
        ]);
        assert_eq!(grouped.len(), 2);
        assert_eq!((grouped[0].device, grouped[0].usage), (1, root));
        assert_eq!(
            grouped[0].watched.iter().map(|watched| watched.path.to_str().unwrap()).collect::<Vec<_>>(),
            ["/var/lib/docker", "/var/lib/docker/volumes/masstock_logs/_data"],
            "each folder once"
        );
        assert_eq!((grouped[1].device, grouped[1].watched.len()), (2, 1));
    }

    #[test]
    fn folders_are_measured_on_their_filesystem_and_missing_ones_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, volume) = (dir.path().join("logs"), dir.path().join("volume"));
        fs_err::create_dir(&logs).unwrap();
        fs_err::create_dir(&volume).unwrap();
        let filesystems = measure_all(vec![
            Watched { what: "nginx's logs (`edge.log_dir`)", path: logs.clone() },
            Watched { what: "the proc filesystem", path: PathBuf::from("/proc") },
            Watched { what: "the `logs` volume", path: volume.clone() },
            Watched { what: DOCKER_ROOT, path: dir.path().join("absent") },
        ]);
        assert_eq!(filesystems.len(), 2, "{filesystems:#?}");
        let temporary = &filesystems[0];
        assert_eq!(temporary.watched.iter().map(|watched| &watched.path).collect::<Vec<_>>(), [&logs, &volume]);
        assert!(temporary.usage.size > 0 && temporary.usage.available <= temporary.usage.size, "{temporary:#?}");
        let canonical = fs_err::canonicalize(&logs).unwrap();
        assert!(canonical.starts_with(&temporary.mount_point), "{temporary:#?}");
        assert_eq!(filesystems[1].mount_point, Path::new("/proc"));
        assert_eq!(assess(&filesystems[1].usage), None, "procfs has no size");
    }

    #[test]
    fn the_largest_logs_are_found_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |path: &str, size: usize| {
            let path = root.join(path);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(&path, vec![b'x'; size]).unwrap();
        };
        write("access.log", 700);
        write("error.log", 300);
        write("api/app.log", 900);
        write("api/old/app.log.1", 800);
        write("api/old/older/app.log.2", 5000); // depth 4: beyond the walk
        write("small.log", 10);
        write("empty.log", 0);
        fs_err::os::unix::fs::symlink("/etc/passwd", root.join("link.log")).unwrap();

        let files = walk(&[root], WALK_DEPTH, WALK_ENTRIES);
        let device = fs_err::metadata(root).unwrap().dev();
        let top = largest(&files, device, 3);
        assert_eq!(
            top.iter()
                .map(|file| (file.size, file.path.strip_prefix(root).unwrap().to_str().unwrap()))
                .collect::<Vec<_>>(),
            [(900, "api/app.log"), (800, "api/old/app.log.1"), (700, "access.log")]
        );
        assert_eq!(files.len(), 6, "no symbolic link, nothing deeper than 3: {files:#?}");
        assert!(largest(&files, device.wrapping_add(1), 5).is_empty(), "another device's files are not counted");
        // The same file found twice (a container log under a walked folder) counts once.
        let twice: Vec<LogFile> = files.iter().chain(files.iter()).cloned().collect();
        assert_eq!(largest(&twice, device, 10).len(), 6);
        // The walk stops after its entry budget.
        assert!(walk(&[root], WALK_DEPTH, 2).len() <= 2);
    }

    #[test]
    fn the_legacy_engine_usage_is_totalled_as_docker_system_df_does() {
        let document: Value = serde_json::json!({
            "LayersSize": 1000,
            "Images": [
                { "Containers": 1, "Size": 600, "SharedSize": 100 },
                { "Containers": 0, "Size": 300, "SharedSize": 100 },
            ],
            "Containers": [
                { "State": "running", "SizeRw": 10 },
                { "State": "exited", "SizeRw": 30 },
            ],
            "Volumes": [
                { "UsageData": { "RefCount": 1, "Size": 200 } },
                { "UsageData": { "RefCount": 0, "Size": 50 } },
                { "UsageData": { "RefCount": 0, "Size": -1 } },
            ],
            "BuildCache": null,
        });
        let totals = legacy_usage(&document);
        assert_eq!(
            totals.iter().map(engine_line).collect::<Vec<_>>(),
            [
                "engine images: 2 (1 in use), 1000 B, 500 B reclaimable",
                "engine containers: 2 (1 in use), 40 B, 30 B reclaimable",
                "engine local volumes: 3 (1 in use), 250 B, 50 B reclaimable",
                "engine build cache: 0 (0 in use), 0 B, 0 B reclaimable",
            ]
        );
    }

    #[test]
    fn a_full_filesystem_names_its_folders_its_largest_logs_and_safe_commands() {
        let filesystem = Filesystem {
            device: 7,
            mount_point: PathBuf::from("/srv/small"),
            usage: usage(16 * MIB, 0, 4096, 4000),
            watched: vec![
                watched(DOCKER_ROOT, "/srv/small/docker"),
                watched("nginx's logs (`edge.log_dir`)", "/srv/small/nginx"),
            ],
        };
        let logs = [
            LogFile { path: PathBuf::from("/srv/small/nginx/access.log"), size: 12 * MIB, device: 7 },
            LogFile { path: PathBuf::from("/srv/small/nginx/error.log"), size: MIB, device: 7 },
        ];
        let engine = ["engine images: 2 (1 in use), 1000 B, 500 B reclaimable".to_owned()];
        let full = finding(&filesystem, Severity::Error, Some(&engine), &logs, true);
        assert_eq!((full.id.as_str(), full.severity), ("disk-low:/srv/small", Severity::Error));
        assert_eq!(
            full.summary,
            "the filesystem at `/srv/small` is 100 % full; it holds the Docker data root `/srv/small/docker`, \
             nginx's logs (`edge.log_dir`) `/srv/small/nginx`"
        );
        assert_eq!(
            full.evidence,
            [
                "space: 16.0 MiB of 16.0 MiB used (100 %), 0 B free",
                "engine images: 2 (1 in use), 1000 B, 500 B reclaimable",
                "largest logs on it:",
                "12.0 MiB /srv/small/nginx/access.log",
                "1.0 MiB /srv/small/nginx/error.log",
            ]
        );
        for command in [
            "`docker image prune -f`",
            "`docker builder prune -f`",
            "`truncate -s 0 /srv/small/nginx/access.log`",
            "`journalctl --vacuum-time=7d`",
            "do not prune volumes",
        ] {
            assert!(full.fix.contains(command), "{command} in {}", full.fix);
        }
        assert!(!full.fix.contains("--volumes") && !full.fix.contains("system prune"), "{}", full.fix);

        // A log folder alone, short of inodes: no Docker command, the inodes in the evidence.
        let inodes = Filesystem {
            usage: usage(16 * MIB, 8 * MIB, 1000, 10),
            watched: vec![watched("nginx's logs (`edge.log_dir`)", "/srv/small/nginx")],
            ..filesystem
        };
        let short = finding(&inodes, Severity::Error, None, &[], false);
        assert!(short.summary.contains("has used 99 % of its inodes"), "{}", short.summary);
        assert_eq!(short.evidence[1], "inodes: 990 of 1000 used (99 %), 10 free");
        assert!(!short.fix.contains("docker") && short.fix.contains("`du -xh"), "{}", short.fix);
    }

    #[test]
    fn archives_are_not_truncated_and_odd_paths_are_quoted() {
        let filesystem = Filesystem {
            device: 7,
            mount_point: PathBuf::from("/srv/my disk"),
            usage: usage(16 * MIB, 0, 4096, 4000),
            watched: vec![watched("nginx's logs (`edge.log_dir`)", "/srv/my disk/nginx")],
        };
        let log = |name: &str, size: u64| LogFile { path: Path::new("/srv/my disk/nginx").join(name), size, device: 7 };
        let logs = [
            log("access.log.2.gz", 9 * MIB),
            log("access.log.1", 8 * MIB),
            log("error.log.zst", 7 * MIB),
            log("it's.log", 2 * MIB),
            log("error.log", MIB),
        ];
        let full = finding(&filesystem, Severity::Error, None, &logs, false);
        assert!(full.evidence.contains(&"9.0 MiB /srv/my disk/nginx/access.log.2.gz".to_owned()), "{full:#?}");
        assert!(
            full.fix.contains(r"`truncate -s 0 '/srv/my disk/nginx/it'\''s.log'` (2.0 MiB)")
                && full.fix.contains("`truncate -s 0 '/srv/my disk/nginx/error.log'` (1.0 MiB)"),
            "{}",
            full.fix
        );
        assert!(
            !full.fix.contains(".gz") && !full.fix.contains(".log.1") && !full.fix.contains(".zst"),
            "{}",
            full.fix
        );

        assert!(is_rotated_or_compressed(Path::new("app.log.12")) && is_rotated_or_compressed(Path::new("logs.ZIP")));
        assert!(
            !is_rotated_or_compressed(Path::new("app.log"))
                && !is_rotated_or_compressed(Path::new("v1.log"))
                && !is_rotated_or_compressed(Path::new("1"))
        );
        assert_eq!(shell_quote("/var/log/nginx/access.log"), "/var/log/nginx/access.log");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
