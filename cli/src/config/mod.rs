//! deploy.toml: its types, and loading it into one resolved, validated [`Stack`].
//!
//! Loading goes parse (TOML syntax) → merge the selected environment over the top level →
//! deserialize with the path of any failing key → validate across keys. Every error becomes a
//! [`Diagnostic`] that points at the line and column where the offending key is written.
//!
//! `Stack` is the only thing commands see: a validated `Config` for one environment, with relative
//! paths made absolute, the secret references it found, and the env file when one exists. It also
//! answers the questions commands ask of a stack: `start_order`, `environment_of` (each
//! container's environment: the services never read deploy.toml), `certificate_paths`,
//! `certificate_lineages`, `image_reference`, `lockdown_of` (a container's hardening: the
//! service's `hardening` table over `[hardening]` over safe defaults, resolved into a `Lockdown`).
//!
//! **Environments are overrides** (Kamal's destinations). Tables merge key by key, while arrays and
//! values are replaced. `enabled = false` removes a service or site in an environment.
//! `config check` validates every environment, not only the selected one; other commands validate
//! only the one they use.
//!
//! **The local environment** (`[environments.local]`): domains are under `.localhost`, the edge
//! listens on 5002 (where the bootstrap's Pebble sends HTTP-01 validations) and 8443, state lives
//! under `.masstock/local/` (ignored by git), redis is built from the host's `redis-server`
//! package, n8n is disabled, and ACME points at the bootstrap's Pebble.

mod source;
pub mod units;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use source::{Diagnostic, KeyPath, Location, Mark, Segment, Source};
pub use units::{ByteSize, Duration, Rate, Size};
pub use validate::eab_key_reference;

use crate::secrets::{EnvFile, SecretReference};

/// The environment used when `--env` is not given.
pub const DEFAULT_ENVIRONMENT: &str = "production";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub project: Project,
    #[serde(default)]
    pub sites: BTreeMap<String, Site>,
    pub services: BTreeMap<String, Service>,
    #[serde(default)]
    #[allow(clippy::zero_sized_map_values, reason = "a volume has no option yet; `Volume` still rejects unknown keys")]
    pub volumes: BTreeMap<String, Volume>,
    pub edge: Edge,
    pub cors: Cors,
    pub rate_limits: RateLimits,
    #[serde(default)]
    pub sessions: Sessions,
    pub acme: Acme,
    /// Every container's lockdown, unless its service's `hardening` table overrides a key.
    #[serde(default)]
    pub hardening: Hardening,
    /// Backups with restic (`masstockctl backup`, `restore`); none when absent.
    #[serde(default)]
    pub backup: Option<Backup>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Compose project name and container prefix.
    pub name: String,
    pub network: String,
    /// Where the secrets live; relative to deploy.toml's folder.
    pub env_file: PathBuf,
    /// Where masstockctl keeps its own state on the host (the deploy lock, the edge's previous
    /// site); relative to deploy.toml's folder.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(".masstock/state")
}

/// A domain served by the edge and the service it proxies to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub domain: String,
    pub service: String,
    /// Which of the service's container ports to proxy to; its only published port by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Whether the edge answers CORS preflight requests with `[cors]`.
    #[serde(default)]
    pub cors: bool,
    pub content_security_policy: String,
    #[serde(default)]
    pub websocket: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_max_body_size: Option<Size>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Image reference; for images we build, the repository (`masstock/api`) tagged per revision.
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, DependencyCondition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Mount>,
    /// Environment variables; `${NAME}` refers to a secret of the env file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How long `stop` waits after SIGTERM before SIGKILL (Docker's default is 10 s): longer than
    /// the service's own shutdown grace, so that it can finish or hand back its work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<Duration>,
    /// Extra `/etc/hosts` entries, as `name:address`; `host-gateway` is the host itself
    /// (`host.docker.internal:host-gateway` reaches a database on the host).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// How `deploy` replaces a running container: `start-first` (the new one serves before the
    /// old one stops; for stateless services behind the edge) or `stop-first`. By default,
    /// start-first for services behind an enabled site that have a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Run once, in a one-off container of the new image with the service's environment, before
    /// the service's container is created or replaced (database migrations); deploy stops when
    /// it fails, and the running container is left as it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release_command: Vec<String>,
    /// The uid the container runs as (compose's `user`), which also owns its secret files under
    /// `/run/secrets`. Unset: the image's user, which must then be numeric or root (n8n's image
    /// runs as the named user `node`, so it sets 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<u32>,
    /// This service's exceptions to `[hardening]`, key by key.
    #[serde(default, skip_serializing_if = "Hardening::is_empty")]
    pub hardening: Hardening,
}

/// How a container is locked down, as compose names it: `[hardening]` for every service, and a
/// service's `hardening` table for its exceptions (each key it sets replaces the default's; the
/// `logging` table merges key by key). What neither sets is the safe default (`Lockdown::resolve`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hardening {
    /// A read-only root filesystem; the service writes only to its volumes and `tmpfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// In-memory folders for a service that must write outside its volumes (charged to its
    /// memory limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<Vec<Tmpfs>>,
    /// Linux capabilities taken away: `["ALL"]`, then `cap_add` gives back what is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_drop: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_add: Option<Vec<String>>,
    /// `no-new-privileges`: no setuid binary or file capability can raise the process's rights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_new_privileges: Option<bool>,
    /// The memory limit; swap is refused too (compose's `memswap_limit` equal to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// CPUs the container may use, such as `0.5` or `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// The most processes and threads the container may have at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
}

impl Hardening {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A tmpfs mount: `target` in the container, at most `size` (charged to the memory limit).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tmpfs {
    pub target: String,
    pub size: ByteSize,
}

impl Tmpfs {
    /// The mount options Docker and compose take: world-writable with the sticky bit, as `/tmp`
    /// is, and nothing on it can be executed, be setuid or be a device.
    #[must_use]
    pub fn options(&self) -> String {
        format!("size={},mode=1777,noexec,nosuid,nodev", self.size.bytes)
    }
}

/// Log rotation: compose's `logging` with `driver` and `max-size`/`max-file` options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<LogDriver>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file: Option<u32>,
}

/// The log drivers that rotate their files and that `docker logs` (and `masstockctl logs`) read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogDriver {
    JsonFile,
    Local,
}

impl LogDriver {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonFile => "json-file",
            Self::Local => "local",
        }
    }
}

/// A service's lockdown, resolved: its `hardening`, over `[hardening]`, over the safe defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lockdown {
    pub read_only: bool,
    pub tmpfs: Vec<Tmpfs>,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub no_new_privileges: bool,
    pub memory: ByteSize,
    pub cpus: f64,
    pub pids_limit: u32,
    pub log_driver: LogDriver,
    pub log_max_size: ByteSize,
    pub log_max_file: u32,
}

impl Lockdown {
    /// What a deploy.toml without `[hardening]` gets: read-only, no capability, no new
    /// privileges, 512 MiB, one CPU, 256 processes, 3 × 10 MiB of JSON logs.
    fn safe() -> Self {
        Self {
            read_only: true,
            tmpfs: Vec::new(),
            cap_drop: vec!["ALL".to_owned()],
            cap_add: Vec::new(),
            no_new_privileges: true,
            memory: ByteSize::mebibytes(512),
            cpus: 1.0,
            pids_limit: 256,
            log_driver: LogDriver::JsonFile,
            log_max_size: ByteSize::mebibytes(10),
            log_max_file: 3,
        }
    }

    /// `layers` applied in turn over the safe defaults, each key it sets replacing the one below.
    #[must_use]
    pub fn resolve(layers: &[&Hardening]) -> Self {
        let mut lockdown = Self::safe();
        for layer in layers {
            let layer = (*layer).clone();
            lockdown.read_only = layer.read_only.unwrap_or(lockdown.read_only);
            lockdown.tmpfs = layer.tmpfs.unwrap_or(lockdown.tmpfs);
            lockdown.cap_drop = layer.cap_drop.unwrap_or(lockdown.cap_drop);
            lockdown.cap_add = layer.cap_add.unwrap_or(lockdown.cap_add);
            lockdown.no_new_privileges = layer.no_new_privileges.unwrap_or(lockdown.no_new_privileges);
            lockdown.memory = layer.memory.unwrap_or(lockdown.memory);
            lockdown.cpus = layer.cpus.unwrap_or(lockdown.cpus);
            lockdown.pids_limit = layer.pids_limit.unwrap_or(lockdown.pids_limit);
            let logging = layer.logging.unwrap_or_default();
            lockdown.log_driver = logging.driver.unwrap_or(lockdown.log_driver);
            lockdown.log_max_size = logging.max_size.unwrap_or(lockdown.log_max_size);
            lockdown.log_max_file = logging.max_file.unwrap_or(lockdown.log_max_file);
        }
        lockdown
    }

    /// The CPUs in the Engine API's unit, billionths of a CPU.
    #[must_use]
    pub fn nano_cpus(&self) -> i64 {
        // Validation keeps `cpus` between 0.01 and 1024.
        #[allow(clippy::cast_possible_truncation, reason = "validated to at most 1024 CPUs")]
        let nanos = (self.cpus * 1e9).round() as i64;
        nanos
    }

    /// `LogConfig`'s options, as `docker run --log-opt` names them.
    #[must_use]
    pub fn log_options(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("max-size".to_owned(), self.log_max_size.to_string()),
            ("max-file".to_owned(), self.log_max_file.to_string()),
        ])
    }
}

/// compose's `deploy.update_config.order`, by the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rollout {
    StartFirst,
    StopFirst,
}

/// How an image we own is made: from a workspace binary, or from a host package.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// Static files shipped with the binary (for `masstock-web`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_package: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub host: u16,
    pub container: u16,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    Always,
    OnFailure,
    #[default]
    UnlessStopped,
}

impl RestartPolicy {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::Always => "always",
            Self::OnFailure => "on-failure",
            Self::UnlessStopped => "unless-stopped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DependencyCondition {
    /// The dependency's container is running.
    Started,
    /// The dependency's health check passes.
    Healthy,
}

impl DependencyCondition {
    /// Compose's spelling of the condition.
    #[must_use]
    pub fn compose_condition(self) -> &'static str {
        match self {
            Self::Started => "service_started",
            Self::Healthy => "service_healthy",
        }
    }
}

/// A health check: exactly one of `command`, `shell` or `http`, with Docker's timings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Run in the container without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Run in the container by `/bin/sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// A path that answers 2xx on the container's own port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default = "default_health_interval")]
    pub interval: Duration,
    #[serde(default = "default_health_timeout")]
    pub timeout: Duration,
    #[serde(default = "default_health_retries")]
    pub retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Duration>,
}

/// What a health check runs, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthTest {
    Command(Vec<String>),
    Shell(String),
    Http { path: String, port: u16 },
}

impl HealthCheck {
    /// The check's test; `None` only before validation, which rejects zero or several kinds.
    #[must_use]
    pub fn test(&self, default_port: Option<u16>) -> Option<HealthTest> {
        match (&self.command, &self.shell, &self.http) {
            (Some(command), None, None) => Some(HealthTest::Command(command.clone())),
            (None, Some(shell), None) => Some(HealthTest::Shell(shell.clone())),
            (None, None, Some(path)) => {
                Some(HealthTest::Http { path: path.clone(), port: self.port.or(default_port)? })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// A named volume of `[volumes]`, or an absolute host path.
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// Where `deploy` writes the nginx site.
    pub site_file: PathBuf,
    /// A symlink to the site (Debian's `sites-enabled`); empty for none.
    #[serde(default)]
    pub enabled_link: String,
    pub test_command: Vec<String>,
    pub reload_command: Vec<String>,
    /// Starts nginx when reloading fails because it is not running (the local environment's
    /// nginx); empty for none: a host nginx is the init system's job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start_command: Vec<String>,
    /// Roots to trust, besides the system's, when masstockctl checks the sites through the edge
    /// (`health`): the local environment's own CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<PathBuf>,
    pub http_port: u16,
    pub https_port: u16,
    pub upstream_host: IpAddr,
    /// Listen on IPv6 too.
    #[serde(default = "enabled")]
    pub ipv6: bool,
    /// Refuse TLS handshakes for names the site does not serve (a `default_server` on the HTTPS
    /// port), instead of answering them with the first site. Turn off when another site on the
    /// host owns the HTTPS port's `default_server`.
    #[serde(default = "enabled")]
    pub reject_unknown_hosts: bool,
    pub log_dir: PathBuf,
    pub hsts: String,
    #[serde(default)]
    pub security_headers: BTreeMap<String, String>,
    pub limit_req: LimitReq,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitReq {
    pub enabled: bool,
    pub rate: Rate,
    pub burst: u32,
    pub zone_size: Size,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub max_age: Duration,
    pub credentials: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// The service that enforces them; it receives `RATE_LIMIT_GENERAL` and `RATE_LIMIT_AUTH`.
    pub service: String,
    pub general: Rate,
    pub auth: Rate,
}

/// `TRUSTED_PROXIES` where the project network is not known (`render`'s compose file): loopback
/// and Docker's default address pools (`172.17.0.0/16` to `172.31.0.0/16`, then `192.168.0.0/16`
/// in /20s), one of which holds the bridge gateway the host nginx's connections come from.
pub const DOCKER_DEFAULT_PROXIES: &str = "127.0.0.0/8,::1/128,172.16.0.0/12,192.168.0.0/16";

/// Sign-in sessions, held by the service `[rate_limits] service` names (the API), which
/// receives `SESSION_ABSOLUTE_LIFETIME`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sessions {
    /// How long a session lasts from its sign-in, however often it is refreshed (OWASP's
    /// absolute timeout).
    #[serde(default = "default_absolute_lifetime")]
    pub absolute_lifetime: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Self { absolute_lifetime: default_absolute_lifetime() }
    }
}

fn default_absolute_lifetime() -> Duration {
    Duration::from_secs(30 * 86_400)
}

/// The restic repository the stack is backed up to, what goes in it and how long it is kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// Any location restic accepts: a local path (relative to deploy.toml's folder), `sftp:`,
    /// `s3:`, `rest:`, `b2:`, …
    pub repository: String,
    /// The repository's password: a `${NAME}` reference to the env file, never a value.
    pub password: String,
    /// Environment variables restic gets (a backend's credentials: `AWS_ACCESS_KEY_ID`, …),
    /// each a `${NAME}` reference or a value that is no secret.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// restic's extended options (`-o name=value`), such as `sftp.command`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The components backed up by default: `redis`, `uploads`, `n8n`, `postgres`. Absent: all of
    /// them whose service is enabled.
    #[serde(default)]
    pub include: Option<Vec<String>>,
    #[serde(default = "default_keep_daily")]
    pub keep_daily: u32,
    #[serde(default = "default_keep_weekly")]
    pub keep_weekly: u32,
    #[serde(default = "default_keep_monthly")]
    pub keep_monthly: u32,
    /// When the timer runs `backup` (systemd's `OnCalendar`).
    #[serde(default = "default_backup_schedule")]
    pub schedule: String,
    /// When the timer runs `restore --drill` (systemd's `OnCalendar`).
    #[serde(default = "default_drill_schedule")]
    pub drill_schedule: String,
    /// Where `backup install-timer` writes its units (default `/etc/systemd/system`).
    #[serde(default)]
    pub systemd_dir: Option<PathBuf>,
}

/// restic's backends that are not a local path, by their `scheme:` prefix (restic's
/// `--repo` documentation); any other repository is a folder on this host.
pub const RESTIC_REMOTE_BACKENDS: &[&str] = &["local", "sftp", "rest", "s3", "b2", "azure", "gs", "swift", "rclone"];

impl Backup {
    /// Whether `repository` is a folder on this host: no backend's `scheme:` prefix, or `local:`.
    #[must_use]
    pub fn is_local_repository(&self) -> bool {
        local_repository_path(&self.repository).is_some()
    }

    /// Where `backup install-timer` writes its units.
    #[must_use]
    pub fn systemd_dir(&self) -> PathBuf {
        self.systemd_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_SYSTEMD_DIR))
    }
}

/// The folder of a local repository (`/srv/restic`, `local:/srv/restic`, `backups/restic`);
/// `None` for a remote backend (`sftp:host:/srv`, `s3:…`).
#[must_use]
pub fn local_repository_path(repository: &str) -> Option<&str> {
    if let Some(path) = repository.strip_prefix("local:") {
        return Some(path);
    }
    let remote = repository.split_once(':').is_some_and(|(scheme, _)| RESTIC_REMOTE_BACKENDS.contains(&scheme));
    (!remote).then_some(repository)
}

fn default_keep_daily() -> u32 {
    7
}

fn default_keep_weekly() -> u32 {
    4
}

fn default_keep_monthly() -> u32 {
    6
}

fn default_backup_schedule() -> String {
    "*-*-* 03:00:00".to_owned()
}

fn default_drill_schedule() -> String {
    "Sun *-*-* 04:30:00".to_owned()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    pub directory: String,
    pub email: String,
    pub cert_dir: PathBuf,
    pub webroot: PathBuf,
    /// An extra root certificate to trust (for test CAs such as Pebble).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<PathBuf>,
    #[serde(default)]
    pub certificates: CertificateLayout,
    /// The lineage name of the shared certificate (`live/<cert_name>/`), as certbot's
    /// `--cert-name`; the shortest domain (the apex) by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_name: Option<String>,
    /// The CA that `certs renew --dry-run` runs the whole flow against (Let's Encrypt's staging
    /// directory in production, the test CA locally); the dry run refuses to run without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_directory: Option<String>,
    /// External Account Binding (RFC 8555 §7.3.4), for CAs that require one: the key identifier
    /// the CA gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eab_kid: Option<String>,
    /// The EAB HMAC key (base64url, as CAs hand it out): a secret, so only a `${NAME}` reference
    /// to the env file is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eab_hmac_key: Option<String>,
    /// Where `certs install-timer` writes its systemd units; `/etc/systemd/system` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_dir: Option<PathBuf>,
}

impl Acme {
    /// Where `certs install-timer` writes its systemd units.
    #[must_use]
    pub fn systemd_dir(&self) -> PathBuf {
        self.systemd_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_SYSTEMD_DIR))
    }
}

/// systemd's folder for the administrator's units.
pub const DEFAULT_SYSTEMD_DIR: &str = "/etc/systemd/system";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateLayout {
    /// One certificate naming every domain, stored under the first domain's name.
    #[default]
    San,
    /// One certificate per domain.
    PerDomain,
}

fn enabled() -> bool {
    true
}

fn default_health_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_health_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_health_retries() -> u32 {
    3
}

/// The configuration of one environment, validated, with its paths made absolute.
#[derive(Debug, Clone)]
pub struct Stack {
    pub environment: String,
    /// deploy.toml itself.
    pub path: PathBuf,
    pub config: Config,
    pub secrets: Secrets,
    pub warnings: Vec<Diagnostic>,
}

/// The secrets the stack refers to, and what the env file holds.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub references: Vec<SecretReference>,
    /// `None` when the env file does not exist yet.
    pub env_file: Option<EnvFile>,
}

impl Secrets {
    /// The names of every referenced secret, sorted, once each.
    #[must_use]
    pub fn names(&self) -> BTreeSet<&str> {
        self.references.iter().map(|reference| reference.name.as_str()).collect()
    }
}

/// Whether loading reads the env file to check the secrets deploy.toml refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvFileCheck {
    Read,
    Skip,
}

/// Why deploy.toml could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is invalid ({} problem{})", diagnostics.len(), if diagnostics.len() == 1 { "" } else { "s" })]
    Invalid { path: PathBuf, diagnostics: Vec<Diagnostic> },
}

impl Stack {
    /// Reads, resolves and validates `path` for `environment`.
    pub fn load(path: &Path, environment: &str) -> Result<Self, ConfigError> {
        Self::from_source(&read_source(path)?, environment)
    }

    /// Resolves and validates `source` for `environment`, checking secrets against the env file.
    pub fn from_source(source: &Source, environment: &str) -> Result<Self, ConfigError> {
        Self::resolve(source, environment, EnvFileCheck::Read)
    }

    /// Like [`Stack::from_source`], without reading the env file (for the command that writes it).
    pub fn from_source_without_env_file(source: &Source, environment: &str) -> Result<Self, ConfigError> {
        Self::resolve(source, environment, EnvFileCheck::Skip)
    }

    fn resolve(source: &Source, environment: &str, env_file: EnvFileCheck) -> Result<Self, ConfigError> {
        let invalid = |diagnostics| ConfigError::Invalid { path: source.path.clone(), diagnostics };
        let document = parse(source).map_err(|diagnostic| invalid(vec![diagnostic]))?;
        let merged = select_environment(source, document, environment).map_err(|d| invalid(vec![d]))?;
        let mut config = deserialize(source, merged, environment).map_err(|d| invalid(vec![d]))?;
        let base = source.path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
        make_paths_absolute(&mut config, &absolute(&base));
        validate::stack(source, config, environment, env_file).map_err(invalid)
    }

    /// The environments deploy.toml declares.
    pub fn environments(source: &Source) -> Result<Vec<String>, ConfigError> {
        let document = parse(source)
            .map_err(|diagnostic| ConfigError::Invalid { path: source.path.clone(), diagnostics: vec![diagnostic] })?;
        Ok(match document.get("environments") {
            Some(toml::Value::Table(environments)) => environments.keys().cloned().collect(),
            _ => Vec::new(),
        })
    }

    /// Enabled services, by name.
    pub fn services(&self) -> impl Iterator<Item = (&str, &Service)> {
        self.config
            .services
            .iter()
            .filter(|(_, service)| service.enabled)
            .map(|(name, service)| (name.as_str(), service))
    }

    /// Enabled sites, by name.
    pub fn sites(&self) -> impl Iterator<Item = (&str, &Site)> {
        self.config.sites.iter().filter(|(_, site)| site.enabled).map(|(name, site)| (name.as_str(), site))
    }

    /// The image a service runs: images we build are tagged `latest` unless a tag is given.
    #[must_use]
    pub fn image_reference(&self, service: &str) -> String {
        let Some(service) = self.config.services.get(service) else { return String::new() };
        let last_part = service.image.rsplit('/').next().unwrap_or_default();
        if service.build.is_some() && !last_part.contains(':') && !last_part.contains('@') {
            format!("{}:latest", service.image)
        } else {
            service.image.clone()
        }
    }

    /// Why this environment has no `component` to back up (its service disabled, no volume, no
    /// `DATABASE_URL`); `None` when it has one.
    #[must_use]
    pub fn backup_component_unavailable(&self, component: crate::backup::Component) -> Option<String> {
        validate::component_unavailable(&self.config, component)
    }

    /// The components `backup` stores when none is named: `[backup] include`, or every component
    /// this environment has (validation refused an `include` naming one it has not); none
    /// without `[backup]`.
    #[must_use]
    pub fn backup_components(&self) -> Vec<crate::backup::Component> {
        let Some(backup) = &self.config.backup else { return Vec::new() };
        match &backup.include {
            Some(include) => include.iter().filter_map(|name| crate::backup::Component::parse(name)).collect(),
            None => crate::backup::Component::ALL
                .into_iter()
                .filter(|component| validate::component_unavailable(&self.config, *component).is_none())
                .collect(),
        }
    }

    /// How a service's containers are locked down: its `hardening` over `[hardening]`.
    #[must_use]
    pub fn lockdown_of(&self, service: &str) -> Lockdown {
        let defaults = &self.config.hardening;
        match self.config.services.get(service) {
            Some(service) => Lockdown::resolve(&[defaults, &service.hardening]),
            None => Lockdown::resolve(&[defaults]),
        }
    }

    /// Container name of a service: `<project>_<service>`.
    #[must_use]
    pub fn container_name(&self, service: &str) -> String {
        format!("{}_{service}", self.config.project.name)
    }

    /// The Docker name of a volume of `[volumes]`: `<project>_<volume>`, as compose names it, so
    /// that volumes created by the reference's `docker-compose up` are the ones we keep using.
    #[must_use]
    pub fn volume_name(&self, volume: &str) -> String {
        format!("{}_{volume}", self.config.project.name)
    }

    /// Enabled services in start order: each after everything it depends on, ties by name.
    #[must_use]
    pub fn start_order(&self) -> Vec<&str> {
        let mut order: Vec<&str> = Vec::new();
        let mut remaining: BTreeMap<&str, &Service> = self.services().collect();
        while !remaining.is_empty() {
            let ready: Vec<&str> = remaining
                .iter()
                .filter(|(_, service)| service.depends_on.keys().all(|dependency| order.contains(&dependency.as_str())))
                .map(|(name, _)| *name)
                .collect();
            // Validation rejects cycles; should one slip through, start the rest in name order.
            let ready = if ready.is_empty() { remaining.keys().copied().collect() } else { ready };
            for name in ready {
                remaining.remove(name);
                order.push(name);
            }
        }
        order
    }

    /// The environment of a service as the container gets it: declared variables, plus those
    /// masstockctl derives (`CORS_ORIGIN`, `RATE_LIMIT_*`, `SESSION_ABSOLUTE_LIFETIME`,
    /// `TRUSTED_PROXIES`). Secret references stay `${NAME}`.
    #[must_use]
    pub fn environment_of(&self, service: &str) -> BTreeMap<String, String> {
        let mut environment = self.config.services.get(service).map(|service| service.env.clone()).unwrap_or_default();
        environment.extend(self.derived_environment(service));
        environment
    }

    /// Variables masstockctl sets itself so that the edge and the services agree.
    #[must_use]
    pub fn derived_environment(&self, service: &str) -> BTreeMap<String, String> {
        let mut derived = BTreeMap::new();
        if self.sites().any(|(_, site)| site.cors && site.service == service) {
            derived.insert("CORS_ORIGIN".to_owned(), self.config.cors.origins.join(","));
        }
        let limits = &self.config.rate_limits;
        if limits.service == service {
            derived.insert("RATE_LIMIT_GENERAL".to_owned(), limits.general.to_string());
            derived.insert("RATE_LIMIT_AUTH".to_owned(), limits.auth.to_string());
            derived.insert("SESSION_ABSOLUTE_LIFETIME".to_owned(), self.config.sessions.absolute_lifetime.to_string());
            // Deploy replaces it with the project network's own gateway (`deploy::spec`); a
            // compose file has no network to look at yet, so it gets Docker's default pools.
            derived.insert("TRUSTED_PROXIES".to_owned(), DOCKER_DEFAULT_PROXIES.to_owned());
        }
        derived
    }

    /// The host port a site's traffic goes to.
    #[must_use]
    pub fn upstream_port(&self, site: &Site) -> Option<u16> {
        let service = self.config.services.get(&site.service)?;
        match site.port {
            Some(container) => service.ports.iter().find(|port| port.container == container).map(|port| port.host),
            None => service.ports.first().map(|port| port.host),
        }
    }

    /// The certificate lineages deploy.toml implies, each with the domains it must cover, in
    /// site order: one shared lineage (`certificates = "san"`), or one per domain.
    #[must_use]
    pub fn certificate_lineages(&self) -> Vec<(String, Vec<String>)> {
        let mut lineages: Vec<(String, Vec<String>)> = Vec::new();
        for (_, site) in self.sites() {
            let (fullchain, _) = self.certificate_paths(&site.domain);
            let name = fullchain
                .parent()
                .and_then(Path::file_name)
                .map_or_else(|| site.domain.clone(), |name| name.to_string_lossy().into_owned());
            match lineages.iter_mut().find(|(existing, _)| *existing == name) {
                Some((_, domains)) => domains.push(site.domain.clone()),
                None => lineages.push((name, vec![site.domain.clone()])),
            }
        }
        lineages
    }

    /// Where the certificate of `domain` lives: `(fullchain, privkey)`.
    #[must_use]
    pub fn certificate_paths(&self, domain: &str) -> (PathBuf, PathBuf) {
        let acme = &self.config.acme;
        let name = match acme.certificates {
            CertificateLayout::San => acme.cert_name.clone().unwrap_or_else(|| {
                self.sites()
                    .map(|(_, site)| site.domain.as_str())
                    .min_by_key(|domain| (domain.len(), *domain))
                    .unwrap_or(domain)
                    .to_owned()
            }),
            CertificateLayout::PerDomain => domain.to_owned(),
        };
        let live = acme.cert_dir.join("live").join(&name);
        (live.join("fullchain.pem"), live.join("privkey.pem"))
    }
}

/// Reads deploy.toml. Bytes that are not UTF-8 make an invalid file, located like any other.
#[allow(clippy::disallowed_methods)] // `ConfigError::Read` names the path; fs_err's would name it twice.
pub fn read_source(path: &Path) -> Result<Source, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    source_from_bytes(path, bytes)
}

/// The source of deploy.toml from its bytes, which must be UTF-8.
pub fn source_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Source, ConfigError> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::new(path, text)),
        Err(error) => {
            let valid_up_to = error.utf8_error().valid_up_to();
            let source = Source::new(path, String::from_utf8_lossy(error.as_bytes()).into_owned());
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                diagnostics: vec![Diagnostic::new(
                    "the file is not valid UTF-8",
                    Some(source.location_of(valid_up_to..valid_up_to + 1)),
                    vec!["TOML files are UTF-8 text; save it as UTF-8".into()],
                )],
            })
        }
    }
}

/// Parses the TOML syntax.
fn parse(source: &Source) -> Result<toml::Table, Diagnostic> {
    toml::from_str::<toml::Table>(&source.text).map_err(|error| {
        Diagnostic::new(
            &format!("invalid TOML: {}", error.message().trim_end().replace('\n', ": ")),
            error.span().map(|span| source.location_of(span)),
            vec!["TOML is `key = value` lines under `[section]` headers; strings are quoted".into()],
        )
    })
}

/// Merges `[environments.<environment>]` over the top level and drops `[environments]`.
fn select_environment(
    source: &Source,
    mut document: toml::Table,
    environment: &str,
) -> Result<toml::Table, Diagnostic> {
    let environments = match document.remove("environments") {
        None => toml::Table::new(),
        Some(toml::Value::Table(environments)) => environments,
        Some(other) => {
            return Err(Diagnostic {
                message: format!("`environments` must be a table, found {}", other.type_str()),
                location: source.locate(&KeyPath::new(["environments"]), Mark::Value, None),
                hints: vec!["declare each environment as `[environments.<name>]`".into()],
            })
        }
    };
    let names: Vec<String> = environments.keys().cloned().collect();
    // The name reaches rendered files and the env file's header: it must be a plain word.
    if let Some(bad) = names.iter().find(|name| !validate::is_object_name(name)) {
        return Err(Diagnostic::new(
            &format!("invalid environment name `{}`", bad.escape_debug()),
            source.locate(&KeyPath::new(["environments", bad]), Mark::Key, None),
            vec!["use lower-case letters, digits, `_` and `-`, starting with a letter or digit".into()],
        ));
    }
    match environments.get(environment) {
        Some(toml::Value::Table(overrides)) => {
            if overrides.contains_key("environments") {
                return Err(Diagnostic {
                    message: format!("environment `{environment}` cannot declare environments of its own"),
                    location: source.locate(
                        &KeyPath::new(["environments", environment, "environments"]),
                        Mark::Key,
                        None,
                    ),
                    hints: Vec::new(),
                });
            }
            merge(&mut document, overrides);
        }
        Some(other) => {
            return Err(Diagnostic {
                message: format!("environment `{environment}` must be a table, found {}", other.type_str()),
                location: source.locate(&KeyPath::new(["environments", environment]), Mark::Value, None),
                hints: Vec::new(),
            })
        }
        None => {
            let environment = environment.escape_debug().to_string();
            let environment = environment.as_str();
            let mut hints = vec![if names.is_empty() {
                "deploy.toml declares no environment; add `[environments.<name>]`".to_owned()
            } else {
                format!(
                    "declared environments: {}",
                    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
                )
            }];
            if let Some(closest) = closest(environment, names.iter().map(String::as_str)) {
                hints.insert(0, format!("did you mean `{closest}`?"));
            }
            return Err(Diagnostic { message: format!("unknown environment `{environment}`"), location: None, hints });
        }
    }
    Ok(document)
}

/// Tables merge key by key; anything else in `overrides` replaces what `base` had. This is how an
/// environment applies over the top level.
pub fn merge(base: &mut toml::Table, overrides: &toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(override_table)) => {
                merge(base_table, override_table);
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Deserializes the merged table, turning serde's message and path into a located diagnostic.
fn deserialize(source: &Source, merged: toml::Table, environment: &str) -> Result<Config, Diagnostic> {
    serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|error| {
        let mut path = KeyPath(
            error
                .path()
                .iter()
                .filter_map(|segment| match segment {
                    serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
                    serde_path_to_error::Segment::Map { key } | serde_path_to_error::Segment::Enum { variant: key } => {
                        Some(Segment::Key(key.clone()))
                    }
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect(),
        );
        let message = error.inner().message().trim_end().to_owned();
        let mut hints = Vec::new();
        let (message, mark) = if let Some((unknown, expected)) = parse_unknown(&message, "field") {
            // The path may or may not already end with the unknown key.
            if path.0.last() != Some(&Segment::Key(unknown.clone())) {
                path = path.key(&unknown);
            }
            let parent = KeyPath(path.0[..path.0.len() - 1].to_vec());
            if let Some(closest) = closest(&unknown, expected.iter().map(String::as_str)) {
                hints.push(format!("did you mean `{closest}`?"));
            } else if !expected.is_empty() {
                hints.push(format!("valid keys here: {}", quoted_list(&expected)));
            }
            let place = if parent.is_empty() { "at the top level".to_owned() } else { format!("in `{parent}`") };
            (format!("unknown key `{unknown}` {place}"), Mark::Key)
        } else if let Some((unknown, expected)) = parse_unknown(&message, "variant") {
            if let Some(closest) = closest(&unknown, expected.iter().map(String::as_str)) {
                hints.push(format!("did you mean `{closest}`?"));
            }
            hints.push(format!("valid values: {}", quoted_list(&expected)));
            (format!("`{path}`: invalid value `{unknown}`"), Mark::Value)
        } else if let Some(field) = message.strip_prefix("missing field `").and_then(|rest| rest.strip_suffix('`')) {
            let message = if path.is_empty() {
                format!("missing key `{field}` at the top level")
            } else {
                format!("missing key `{field}` in `{path}`")
            };
            (message, Mark::Key)
        } else {
            let message = in_toml_terms(&message);
            if let Some(hint) = type_hint(&message) {
                hints.push(hint.to_owned());
            }
            let message = if path.is_empty() { message } else { format!("`{path}`: {message}") };
            (message, Mark::Value)
        };
        Diagnostic::new(&message, source.locate(&path, mark, Some(environment)), hints)
    })
}

/// Rewords serde's Rust-flavoured type names as TOML calls them.
fn in_toml_terms(message: &str) -> String {
    let mut message = message.replace("invalid type: ", "wrong type: found ");
    for (rust, toml) in [
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
        ("sequence", "array"),
        ("map", "table"),
        ("expected a borrowed string", "expected a string"),
        ("expected IP address", "expected an IP address, like `127.0.0.1`"),
    ] {
        message = message.replace(rust, toml);
    }
    if let Some(struct_start) = message.find("expected struct ") {
        message.replace_range(struct_start.., "expected a table");
    }
    message
}

/// How to write the type a "wrong type" message expects.
fn type_hint(message: &str) -> Option<&'static str> {
    let expected = message.rsplit("expected ").next()?;
    Some(if expected.starts_with("a whole number") {
        "write a number without quotes, like `3`"
    } else if expected.starts_with("a string") {
        "quote it, like `\"value\"`"
    } else if expected.starts_with("a boolean") {
        "write `true` or `false`, without quotes"
    } else if expected.starts_with("an array") {
        "write a list in brackets, like `[\"a\", \"b\"]`"
    } else if expected.starts_with("a table") {
        "write a table: `{ key = value }`, or a `[section]`"
    } else if expected.starts_with("an IP address") {
        "quote it, like `\"127.0.0.1\"`"
    } else {
        return None;
    })
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" into `x` and `[a, b]`.
fn parse_unknown(message: &str, what: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(&format!("unknown {what} `"))?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    Some((unknown.to_owned(), expected))
}

/// The candidate closest to `wanted`, when it is close enough to be a typo.
pub(crate) fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(wanted, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

pub(crate) fn quoted_list<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(|item| format!("`{}`", item.as_ref())).collect::<Vec<_>>().join(", ")
}

pub(crate) fn absolute(path: &Path) -> PathBuf {
    // `deploy.toml`'s parent is the empty path, which means the current folder.
    let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Resolves relative paths against deploy.toml's folder, so rendered files do not depend on the
/// working directory.
fn make_paths_absolute(config: &mut Config, base: &Path) {
    let resolve = |path: &mut PathBuf| {
        if path.is_relative() && !path.as_os_str().is_empty() {
            *path = base.join(&*path);
        }
    };
    resolve(&mut config.project.env_file);
    resolve(&mut config.project.state_dir);
    if let Some(bundle) = &mut config.edge.ca_bundle {
        resolve(bundle);
    }
    resolve(&mut config.edge.site_file);
    resolve(&mut config.edge.log_dir);
    if !config.edge.enabled_link.is_empty() && Path::new(&config.edge.enabled_link).is_relative() {
        config.edge.enabled_link = base.join(&config.edge.enabled_link).display().to_string();
    }
    resolve(&mut config.acme.cert_dir);
    resolve(&mut config.acme.webroot);
    if let Some(bundle) = &mut config.acme.ca_bundle {
        resolve(bundle);
    }
    if let Some(dir) = &mut config.acme.systemd_dir {
        resolve(dir);
    }
    if let Some(backup) = &mut config.backup {
        if let Some(dir) = &mut backup.systemd_dir {
            resolve(dir);
        }
        // A local repository's folder, like the other paths; `local:` keeps its prefix.
        if let Some(folder) = local_repository_path(&backup.repository).map(PathBuf::from) {
            if folder.is_relative() && !folder.as_os_str().is_empty() {
                let prefix = if backup.repository.starts_with("local:") { "local:" } else { "" };
                backup.repository = format!("{prefix}{}", base.join(folder).display());
            }
        }
    }
    for service in config.services.values_mut() {
        if let Some(assets) = service.build.as_mut().and_then(|build| build.assets.as_mut()) {
            resolve(assets);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_messages_are_split() {
        let (unknown, expected) =
            parse_unknown("unknown field `prots`, expected one of `image`, `ports`", "field").unwrap();
        assert_eq!(unknown, "prots");
        assert_eq!(expected, ["image", "ports"]);
        assert_eq!(closest("prots", expected.iter().map(String::as_str)), Some("ports"));
        assert_eq!(closest("zzz", expected.iter().map(String::as_str)), None);
    }

    #[test]
    fn local_repositories_are_told_from_restic_backends() {
        assert_eq!(local_repository_path("/var/backups/restic"), Some("/var/backups/restic"));
        assert_eq!(local_repository_path("backups/restic"), Some("backups/restic"));
        assert_eq!(local_repository_path("local:/srv/restic"), Some("/srv/restic"));
        assert_eq!(local_repository_path("/srv/odd:name"), Some("/srv/odd:name"));
        for remote in ["sftp:backup@host:/srv/restic", "s3:s3.amazonaws.com/bucket", "rest:https://h:8000/", "b2:b:p"] {
            assert_eq!(local_repository_path(remote), None, "{remote}");
        }
    }

    #[test]
    fn environments_merge_tables_and_replace_the_rest() {
        let mut base: toml::Table = toml::from_str("a = 1\n[t]\nx = [1, 2]\ny = 'keep'\n").unwrap();
        let overrides: toml::Table = toml::from_str("[t]\nx = [3]\nz = true\n").unwrap();
        merge(&mut base, &overrides);
        assert_eq!(base.to_string(), "a = 1\n\n[t]\nx = [3]\ny = \"keep\"\nz = true\n");
    }
}
