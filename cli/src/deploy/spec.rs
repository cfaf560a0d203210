//! What a service's container must be: its Engine API creation body, resolved from deploy.toml,
//! the env file and the image, and the hashes that let a later deploy tell what changed.
//!
//! The lockdown (`Stack::lockdown_of`: `[hardening]` and the service's `hardening`) goes into
//! `HostConfig`: `ReadonlyRootfs`, `Tmpfs`, `CapDrop`, `CapAdd`, `SecurityOpt`
//! (`no-new-privileges:true`), `Memory` with `MemorySwap` equal to it (no swap), `NanoCpus`,
//! `PidsLimit`, `LogConfig`. Standbys and the one-off
//! release container are made from the same body, so they are locked down alike. The lockdown is
//! part of the settings hash: changing any key of it is a `config` reason in the plan.
//!
//! A variable whose value holds a `${…}` reference is not in the body's environment: it reaches
//! the container as a file (`secret_files.rs`), `NAME_FILE=/run/secrets/NAME` in its stead, and the
//! env hash covers the files' version (a keyed hash of their content, `secret_files::version_key`),
//! never a value.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig, Mount, MountType,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::config::{RestartPolicy as Restart, Rollout, Service, Stack};
use crate::deploy::secret_files::{self, OwnerError, SecretFiles};
use crate::deploy::wait::Readiness;
use crate::docker::{labels, COMPOSE_VERSION};
use crate::secrets::{self, ResolveError};

/// Why a service's container cannot be resolved from deploy.toml and the env file.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no service `{0}` in deploy.toml")]
    NoService(String),
    /// A value `config check` refuses (bad `${` syntax, or a secret that breaks its URL).
    #[error("`{key}` of service `{service}`: {error}")]
    Invalid { service: String, key: String, error: ResolveError },
    /// The service refers to secrets and the env file does not exist; `missing` is sorted.
    #[error("the env file `{}` does not exist; service `{service}` needs {}", .file.display(), .missing.join(", "))]
    NoEnvFile { service: String, file: PathBuf, missing: Vec<String> },
    /// Secrets the env file does not hold, or holds empty; `missing` is sorted.
    #[error("service `{service}` needs {} but `{}` leaves it empty", .missing.join(", "), .file.display())]
    Unset { service: String, file: PathBuf, missing: Vec<String> },
    /// The owner of its secret files cannot be known (a named user in the image).
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// The key the secret files' versions are computed with cannot be read or made.
    #[error(transparent)]
    VersionKey(#[from] secret_files::SecretFilesError),
}

impl SpecError {
    /// Whether the operator's configuration is at fault (exit 2) rather than the host's state.
    #[must_use]
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::NoService(_) | Self::Invalid { .. } | Self::Owner(_))
    }

    /// What the operator can do about it.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        match self {
            // The owner's hint is part of its message.
            Self::NoService(_) | Self::Invalid { .. } | Self::Owner(_) => None,
            Self::NoEnvFile { .. } => Some(
                "create it with `masstockctl secrets generate`, then fill in the values it leaves empty".to_owned(),
            ),
            Self::Unset { file, missing, .. } => Some(format!("set {} in `{}`", missing.join(", "), file.display())),
            Self::VersionKey(_) => Some(
                "deploy makes this file and only root may read it; if it is damaged, remove it (the services \
                 with secrets are then recreated once)"
                    .to_owned(),
            ),
        }
    }
}

/// The image a service runs: the reference containers are created from, and its ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChoice {
    pub reference: String,
    pub id: String,
    /// The image's `Config.User` (empty or `None`: root), which owns the service's secret files
    /// unless deploy.toml sets `user`; `Plan::compute` fills it in.
    pub user: Option<String>,
}

/// Which of a service's containers this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `<project>_<service>`, on the declared ports.
    Primary,
    /// `<project>_<service>_standby`: serves on ports Docker picks while the primary is replaced.
    Standby,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Standby => "standby",
        }
    }
}

/// The hashes stored in a container's labels. `config` covers the three parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    pub image: String,
    pub settings: String,
    pub env: String,
    pub config: String,
}

impl Hashes {
    /// The hashes a container was created with, from its labels.
    #[must_use]
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Self> {
        Some(Self {
            image: labels.get(labels::IMAGE_HASH)?.clone(),
            settings: labels.get(labels::SETTINGS_HASH)?.clone(),
            env: labels.get(labels::ENV_HASH)?.clone(),
            config: labels.get(labels::CONFIG_HASH)?.clone(),
        })
    }

    /// Why a container with `self` must be replaced by one with `wanted`; empty when it need not.
    #[must_use]
    pub fn differences(&self, wanted: &Self) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if self.image != wanted.image {
            reasons.push("image");
        }
        if self.settings != wanted.settings {
            reasons.push("config");
        }
        if self.env != wanted.env {
            reasons.push("env");
        }
        if reasons.is_empty() && self.config != wanted.config {
            reasons.push("config");
        }
        reasons
    }
}

/// A service's container, as deploy.toml, the env file and the image make it.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub service: String,
    pub container: String,
    pub image: ImageChoice,
    pub hashes: Hashes,
    pub rollout: Rollout,
    /// Seconds between SIGTERM and SIGKILL.
    pub stop_timeout: i64,
    /// The secrets its container reads from `/run/secrets`; `None` when it refers to none.
    pub secrets: Option<SecretFiles>,
    readiness: Readiness,
    body: ContainerCreateBody,
}

/// Docker's default stop timeout, when a service declares none.
const DEFAULT_STOP_TIMEOUT_SECS: i64 = 10;

impl ServiceSpec {
    /// Resolves `service` for `image`, on a project network whose gateway is not known yet.
    pub fn resolve(stack: &Stack, name: &str, image: ImageChoice) -> Result<Self, SpecError> {
        Self::resolve_on(stack, name, image, &[])
    }

    /// Resolves `service` for `image` on the project network whose gateways are `gateways`
    /// (they make `TRUSTED_PROXIES`, see [`trusted_proxies`]). Fails when a secret it needs is
    /// missing or empty in the env file, naming the variable (never its value).
    pub fn resolve_on(stack: &Stack, name: &str, image: ImageChoice, gateways: &[IpAddr]) -> Result<Self, SpecError> {
        let service = stack.config.services.get(name).ok_or_else(|| SpecError::NoService(name.to_owned()))?;
        let (mut env, secret_values) = resolved_environment(stack, name)?;
        if let Some(trusted) = env.get_mut("TRUSTED_PROXIES") {
            if !gateways.is_empty() {
                *trusted = trusted_proxies(gateways);
            }
        }
        let secrets = if secret_values.is_empty() {
            None
        } else {
            let uid = secret_files::owner(name, service.user, image.user.as_deref())?;
            let key = secret_files::version_key(stack)?;
            Some(SecretFiles::new(stack, name, uid, secret_values, key.as_deref()))
        };
        let env: BTreeMap<String, String> = env
            .into_iter()
            .chain(secrets.iter().flat_map(|files| {
                files
                    .names()
                    .map(|variable| (format!("{variable}_FILE"), format!("{}/{variable}", secret_files::TARGET)))
            }))
            .collect();
        let network = &stack.config.project.network;
        let healthcheck = service.healthcheck.as_ref().map(|check| {
            let test = crate::render::health_test_command(
                service,
                check.test(service.ports.first().map(|port| port.container)),
            );
            HealthConfig {
                test: Some(test),
                interval: Some(nanos(check.interval)),
                timeout: Some(nanos(check.timeout)),
                retries: Some(i64::from(check.retries)),
                start_period: check.start_period.map(nanos),
                start_interval: None,
            }
        });
        let mut mounts: Vec<Mount> = service
            .volumes
            .iter()
            .map(|mount| {
                let named = stack.config.volumes.contains_key(&mount.source);
                Mount {
                    target: Some(mount.target.clone()),
                    source: Some(if named { stack.volume_name(&mount.source) } else { mount.source.clone() }),
                    typ: Some(if named { MountType::VOLUME } else { MountType::BIND }),
                    read_only: Some(mount.read_only),
                    ..Mount::default()
                }
            })
            .collect();
        if let Some(files) = &secrets {
            mounts.push(Mount {
                target: Some(secret_files::TARGET.to_owned()),
                source: Some(files.folder.display().to_string()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Mount::default()
            });
        }
        let lockdown = stack.lockdown_of(name);
        let stop_timeout = service
            .stop_grace_period
            .map_or(DEFAULT_STOP_TIMEOUT_SECS, |grace| i64::try_from(grace.as_secs()).unwrap_or(i64::MAX));
        let settings = json!({
            "command": service.command,
            "ports": service.ports.iter().map(|port| (port.host, port.container)).collect::<Vec<_>>(),
            "upstream_host": stack.config.edge.upstream_host,
            "mounts": service.volumes.iter().map(|mount| (&mount.source, &mount.target, mount.read_only)).collect::<Vec<_>>(),
            "healthcheck": healthcheck.as_ref().map(|check| (&check.test, check.interval, check.timeout, check.retries, check.start_period)),
            "restart": service.restart.as_str(),
            "extra_hosts": service.extra_hosts,
            "stop_timeout": stop_timeout,
            "network": network,
            "lockdown": lockdown,
            "user": service.user,
        });
        let image_hash = image.id.clone();
        let settings_hash = sha256_hex(settings.to_string().as_bytes());
        // The secrets by their files' version: a keyed hash of their content, never a value.
        let env_hash = sha256_hex(
            env.iter()
                .flat_map(|(key, value)| [key.as_str(), "=", value.as_str(), "\n"])
                .chain(secrets.iter().flat_map(|files| ["secrets ", files.version.as_str(), "\n"]))
                .collect::<String>()
                .as_bytes(),
        );
        let config_hash = sha256_hex(format!("{image_hash}\n{settings_hash}\n{env_hash}\n").as_bytes());
        let hashes = Hashes { image: image_hash, settings: settings_hash, env: env_hash, config: config_hash };

        let body = ContainerCreateBody {
            image: Some(image.reference.clone()),
            cmd: (!service.command.is_empty()).then(|| service.command.clone()),
            user: service.user.map(|uid| uid.to_string()),
            env: Some(env.iter().map(|(key, value)| format!("{key}={value}")).collect()),
            exposed_ports: Some(service.ports.iter().map(|port| format!("{}/tcp", port.container)).collect()),
            healthcheck,
            stop_timeout: Some(stop_timeout),
            host_config: Some(HostConfig {
                readonly_rootfs: Some(lockdown.read_only),
                tmpfs: (!lockdown.tmpfs.is_empty())
                    .then(|| lockdown.tmpfs.iter().map(|tmpfs| (tmpfs.target.clone(), tmpfs.options())).collect()),
                cap_drop: Some(lockdown.cap_drop.clone()),
                cap_add: Some(lockdown.cap_add.clone()),
                security_opt: lockdown.no_new_privileges.then(|| vec!["no-new-privileges:true".to_owned()]),
                memory: Some(lockdown.memory.as_i64()),
                memory_swap: Some(lockdown.memory.as_i64()),
                nano_cpus: Some(lockdown.nano_cpus()),
                pids_limit: Some(i64::from(lockdown.pids_limit)),
                log_config: Some(HostConfigLogConfig {
                    typ: Some(lockdown.log_driver.as_str().to_owned()),
                    config: Some(lockdown.log_options().into_iter().collect()),
                }),
                mounts: Some(mounts),
                restart_policy: Some(RestartPolicy {
                    name: Some(match service.restart {
                        Restart::No => RestartPolicyNameEnum::NO,
                        Restart::Always => RestartPolicyNameEnum::ALWAYS,
                        Restart::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
                        Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
                    }),
                    maximum_retry_count: None,
                }),
                extra_hosts: (!service.extra_hosts.is_empty()).then(|| service.extra_hosts.clone()),
                network_mode: Some(network.clone()),
                ..HostConfig::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.clone(),
                    EndpointSettings { aliases: Some(vec![name.to_owned()]), ..EndpointSettings::default() },
                )])),
            }),
            ..ContainerCreateBody::default()
        };
        Ok(Self {
            service: name.to_owned(),
            container: stack.container_name(name),
            image,
            hashes,
            rollout: rollout_of(stack, name, service),
            stop_timeout,
            secrets,
            readiness: readiness_of(service),
            body,
        })
    }

    /// The creation body for this service's container in `role`: the primary binds the declared
    /// host ports, a standby lets Docker pick free ones on the same address.
    #[must_use]
    pub fn create_body(&self, stack: &Stack, role: Role, previous_image: Option<&str>) -> ContainerCreateBody {
        let mut body = self.body.clone();
        let service = &stack.config.services[&self.service];
        let address = stack.config.edge.upstream_host.to_string();
        let bindings = service
            .ports
            .iter()
            .map(|port| {
                let host_port = match role {
                    Role::Primary => port.host.to_string(),
                    Role::Standby => String::new(),
                };
                (
                    format!("{}/tcp", port.container),
                    Some(vec![PortBinding { host_ip: Some(address.clone()), host_port: Some(host_port) }]),
                )
            })
            .collect();
        if let Some(host_config) = body.host_config.as_mut() {
            host_config.port_bindings = Some(bindings);
        }
        let mut container_labels = project_labels(stack, &self.service);
        container_labels.extend([
            (labels::CONTAINER_NUMBER.to_owned(), if role == Role::Primary { "1" } else { "2" }.to_owned()),
            (labels::ONEOFF.to_owned(), "False".to_owned()),
            (labels::CONFIG_HASH.to_owned(), self.hashes.config.clone()),
            (labels::IMAGE_HASH.to_owned(), self.hashes.image.clone()),
            (labels::SETTINGS_HASH.to_owned(), self.hashes.settings.clone()),
            (labels::ENV_HASH.to_owned(), self.hashes.env.clone()),
            (labels::ROLE.to_owned(), role.as_str().to_owned()),
        ]);
        if let Some(previous) = previous_image.filter(|previous| *previous != self.image.id) {
            container_labels.insert(labels::PREVIOUS_IMAGE.to_owned(), previous.to_owned());
        }
        body.labels = Some(container_labels);
        body
    }

    /// What "ready" means for this service's containers.
    #[must_use]
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// The creation body of a one-off container running `command` with this service's image,
    /// environment, volumes and network, and no ports, health check or restart policy.
    #[must_use]
    pub fn one_off_body(&self, stack: &Stack, command: &[String]) -> ContainerCreateBody {
        let mut body = self.body.clone();
        body.cmd = Some(command.to_vec());
        body.healthcheck = Some(HealthConfig { test: Some(vec!["NONE".to_owned()]), ..HealthConfig::default() });
        body.exposed_ports = None;
        if let Some(host_config) = body.host_config.as_mut() {
            host_config.restart_policy = None;
        }
        let mut container_labels = project_labels(stack, &self.service);
        container_labels.insert(labels::ONEOFF.to_owned(), "True".to_owned());
        body.labels = Some(container_labels);
        body
    }

    /// The container name for `role`.
    #[must_use]
    pub fn container_name(&self, role: Role) -> String {
        match role {
            Role::Primary => self.container.clone(),
            Role::Standby => format!("{}_standby", self.container),
        }
    }
}

/// What "ready" means for a declared service: its health test passes (run inside the container,
/// as Docker runs it), or it runs when it has none.
#[must_use]
pub fn readiness_of(service: &Service) -> Readiness {
    let check = service.healthcheck.as_ref();
    let test = check.map(|check| {
        crate::render::health_test_command(service, check.test(service.ports.first().map(|port| port.container)))
    });
    let probe = test.as_deref().and_then(crate::deploy::wait::probe_command);
    Readiness { probe, probe_timeout: check.map_or(std::time::Duration::from_secs(10), |check| check.timeout.0) }
}

/// The labels every object of the project carries.
#[must_use]
pub fn project_labels(stack: &Stack, service: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::PROJECT.to_owned(), stack.config.project.name.clone()),
        (labels::SERVICE.to_owned(), service.to_owned()),
        (labels::COMPOSE_VERSION.to_owned(), COMPOSE_VERSION.to_owned()),
        (labels::ENVIRONMENT.to_owned(), stack.environment.clone()),
    ])
}

/// start-first for services behind an enabled site with a health check (the new container must
/// prove itself before it gets traffic), unless deploy.toml says otherwise.
fn rollout_of(stack: &Stack, name: &str, service: &Service) -> Rollout {
    service.rollout.unwrap_or_else(|| {
        let behind_site = stack.sites().any(|(_, site)| site.service == name);
        if behind_site && service.healthcheck.is_some() && !service.ports.is_empty() {
            Rollout::StartFirst
        } else {
            Rollout::StopFirst
        }
    })
}

/// The service's environment with every `${SECRET}` replaced by the env file's value
/// ([`secrets::resolve`]): the variables without a reference, and those with one (which become
/// files). The secrets missing from any variable are reported together.
type Environment = BTreeMap<String, String>;

fn resolved_environment(stack: &Stack, name: &str) -> Result<(Environment, Environment), SpecError> {
    let env_file = stack.secrets.env_file.as_ref();
    let file = &stack.config.project.env_file;
    let mut missing = Vec::new();
    let (mut plain, mut with_secrets) = (BTreeMap::new(), BTreeMap::new());
    for (key, value) in stack.environment_of(name) {
        let refers = secrets::references_in(&value).is_ok_and(|names| !names.is_empty());
        match secrets::resolve(&value, env_file, file) {
            Ok(resolved) => {
                if refers { &mut with_secrets } else { &mut plain }.insert(key, resolved);
            }
            Err(ResolveError::NoEnvFile { names, .. } | ResolveError::Unset { names, .. }) => missing.extend(names),
            // A validated stack has neither: `config check` refuses both.
            Err(error @ (ResolveError::Syntax(_) | ResolveError::BreaksUrl { .. })) => {
                return Err(SpecError::Invalid { service: name.to_owned(), key, error });
            }
        }
    }
    if missing.is_empty() {
        return Ok((plain, with_secrets));
    }
    missing.sort();
    missing.dedup();
    let (service, file) = (name.to_owned(), file.clone());
    Err(if env_file.is_none() {
        SpecError::NoEnvFile { service, file, missing }
    } else {
        SpecError::Unset { service, file, missing }
    })
}

/// `TRUSTED_PROXIES` for a service on a network with `gateways`: loopback, and each gateway
/// alone. The host nginx reaches a published port through Docker's proxy (or its NAT), so the API
/// sees the connection come from the network's gateway; trusting that one address rather than a
/// whole private range keeps the other containers of the network (or of another network) from
/// choosing the client address the limits count.
#[must_use]
pub fn trusted_proxies(gateways: &[IpAddr]) -> String {
    let mut cidrs = vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()];
    for gateway in gateways {
        let cidr = match gateway {
            IpAddr::V4(address) => format!("{address}/32"),
            IpAddr::V6(address) => format!("{address}/128"),
        };
        if !cidrs.contains(&cidr) {
            cidrs.push(cidr);
        }
    }
    cidrs.join(",")
}

/// The gateways of an inspected network (every IPAM pool's), in the engine's order.
#[must_use]
pub fn gateways_of(network: &bollard::models::NetworkInspect) -> Vec<IpAddr> {
    let pools = network.ipam.as_ref().and_then(|ipam| ipam.config.as_ref());
    pools.into_iter().flatten().filter_map(|pool| pool.gateway.as_deref()?.split('/').next()?.parse().ok()).collect()
}

fn nanos(duration: crate::config::Duration) -> i64 {
    i64::try_from(duration.0.as_nanos()).unwrap_or(i64::MAX)
}

#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    secrets::hex(&digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::EnvFile;

    /// One state folder for every stack of these tests, so they share the secret files' version
    /// key (and none is made under the production `state_dir` of this machine).
    static STATE_DIR: std::sync::LazyLock<tempfile::TempDir> =
        std::sync::LazyLock::new(|| tempfile::tempdir().expect("a temporary state_dir"));

    fn stack(env_file: &str) -> Stack {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml");
        let mut stack = Stack::load(&path, "production").expect("the shipped deploy.toml is valid");
        stack.config.project.state_dir = STATE_DIR.path().to_path_buf();
        secret_files::ensure_version_key(&stack).expect("a version key");
        stack.secrets.env_file = Some(EnvFile::parse(std::path::Path::new("/nowhere/.env"), env_file).unwrap());
        stack
    }

    const SECRETS: &str = "DATABASE_URL=postgres://u:database-secret@db/masstock\nREDIS_PASSWORD=redis-secret\nJWT_SECRET=jwt-secret\nGEMINI_API_KEY=gemini-secret\nENCRYPTION_KEY=n8n-secret\n";

    fn image(id: &str) -> ImageChoice {
        ImageChoice { reference: format!("masstock/api:{id}"), id: format!("sha256:{id}"), user: Some("10001".into()) }
    }

    #[test]
    fn secrets_reach_the_container_as_files_and_nothing_else_holds_them() {
        let stack = stack(SECRETS);
        let spec = ServiceSpec::resolve(&stack, "api", image("a")).unwrap();
        let body = spec.create_body(&stack, Role::Primary, None);
        let env = body.env.clone().unwrap();
        assert!(env.contains(&"REDIS_URL_FILE=/run/secrets/REDIS_URL".to_owned()), "{env:?}");
        assert!(env.contains(&"JWT_SECRET_FILE=/run/secrets/JWT_SECRET".to_owned()), "{env:?}");
        assert!(env.contains(&"CORS_ORIGIN=https://app.masstock.fr".to_owned()), "derived variables too: {env:?}");
        assert!(!env.iter().any(|entry| entry.starts_with("REDIS_URL=")), "{env:?}");
        let whole = serde_json::to_string(&body).unwrap();
        assert!(!whole.contains("-secret"), "no value anywhere in the body: {whole}");
        let files = spec.secrets.as_ref().unwrap();
        assert_eq!(files.uid, 10001, "the image's user");
        assert_eq!(files.names().collect::<Vec<_>>(), ["DATABASE_URL", "JWT_SECRET", "REDIS_URL"]);
        let mounts = body.host_config.as_ref().unwrap().mounts.clone().unwrap();
        let mount = mounts.iter().find(|mount| mount.target.as_deref() == Some("/run/secrets")).unwrap();
        assert_eq!(mount.source.as_deref(), Some(files.folder.to_str().unwrap()));
        assert_eq!((mount.typ, mount.read_only), (Some(MountType::BIND), Some(true)));
        assert!(files.folder.starts_with(STATE_DIR.path().join("secrets/masstock/api")), "{files:?}");
        let labels = serde_json::to_string(&body.labels).unwrap();
        assert!(!labels.contains("secret"), "labels hold hashes, never values: {labels}");
        // A service that refers to no secret mounts nothing.
        let vitrine = ServiceSpec::resolve(&stack, "vitrine", image("a")).unwrap();
        assert!(vitrine.secrets.is_none());
        // A named user needs a numeric `user` in deploy.toml; n8n declares one.
        let named = ImageChoice { user: Some("node".into()), ..image("a") };
        let mut undeclared = stack.clone();
        undeclared.config.services.get_mut("n8n").unwrap().user = None;
        let error = ServiceSpec::resolve(&undeclared, "n8n", named.clone()).unwrap_err();
        assert!(matches!(error, SpecError::Owner(_)) && error.is_usage(), "{error:?}");
        let n8n = ServiceSpec::resolve(&stack, "n8n", named).unwrap();
        assert_eq!(n8n.secrets.as_ref().unwrap().uid, 1000);
        assert_eq!(n8n.create_body(&stack, Role::Primary, None).user.as_deref(), Some("1000"));
        let ports = serde_json::to_string(&body.host_config.unwrap().port_bindings).unwrap();
        assert!(ports.contains(r#""HostIp":"127.0.0.1","HostPort":"3000""#), "{ports}");
    }

    #[test]
    fn a_standby_lets_docker_pick_its_ports() {
        let stack = stack(SECRETS);
        let spec = ServiceSpec::resolve(&stack, "api", image("a")).unwrap();
        let body = spec.create_body(&stack, Role::Standby, Some("sha256:old"));
        let ports = serde_json::to_string(&body.host_config.unwrap().port_bindings).unwrap();
        assert!(ports.contains(r#""HostIp":"127.0.0.1","HostPort":"""#), "{ports}");
        let labels = body.labels.unwrap();
        assert_eq!(labels[labels::ROLE], "standby");
        assert_eq!(labels[labels::PREVIOUS_IMAGE], "sha256:old");
        assert_eq!(spec.container_name(Role::Standby), "masstock_api_standby");
    }

    #[test]
    fn the_hashes_say_what_changed() {
        let before = ServiceSpec::resolve(&stack(SECRETS), "api", image("a")).unwrap().hashes;
        let new_image = ServiceSpec::resolve(&stack(SECRETS), "api", image("b")).unwrap().hashes;
        assert_eq!(before.differences(&new_image), ["image"]);
        let rotated = SECRETS.replace("jwt-secret", "jwt-rotated");
        let new_env = ServiceSpec::resolve(&stack(&rotated), "api", image("a")).unwrap().hashes;
        assert_eq!(before.differences(&new_env), ["env"]);
        // A rotated secret changes exactly the services that read it.
        let worker = |secrets: &str| ServiceSpec::resolve(&stack(secrets), "worker", image("a")).unwrap().hashes;
        assert!(worker(SECRETS).differences(&worker(&rotated)).is_empty(), "the worker reads no JWT_SECRET");
        let new_redis = SECRETS.replace("redis-secret", "redis-rotated");
        assert_eq!(worker(SECRETS).differences(&worker(&new_redis)), ["env"]);
        let mut moved = stack(SECRETS);
        moved.config.services.get_mut("api").unwrap().ports[0].host = 3001;
        let new_settings = ServiceSpec::resolve(&moved, "api", image("a")).unwrap().hashes;
        assert_eq!(before.differences(&new_settings), ["config"]);
        assert!(before.differences(&before.clone()).is_empty());
    }

    #[test]
    fn every_container_is_locked_down_as_deploy_toml_says() {
        let stack = stack(SECRETS);
        let spec = ServiceSpec::resolve(&stack, "worker", image("a")).unwrap();
        for body in [
            spec.create_body(&stack, Role::Primary, None),
            spec.create_body(&stack, Role::Standby, None),
            spec.one_off_body(&stack, &["true".to_owned()]),
        ] {
            let host = body.host_config.unwrap();
            assert_eq!(host.readonly_rootfs, Some(true));
            assert_eq!(host.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
            assert_eq!(host.cap_add.as_deref(), Some(&[][..]));
            assert_eq!(host.security_opt.as_deref(), Some(&["no-new-privileges:true".to_owned()][..]));
            let lockdown = stack.lockdown_of("worker");
            assert_eq!(host.memory, Some(lockdown.memory.as_i64()));
            assert_eq!(host.memory_swap, host.memory, "no swap beyond the memory limit");
            assert_eq!(host.nano_cpus, Some(lockdown.nano_cpus()));
            assert_eq!(host.pids_limit, Some(i64::from(lockdown.pids_limit)));
            let log = host.log_config.unwrap();
            assert_eq!(log.typ.as_deref(), Some("json-file"));
            let options = log.config.unwrap();
            assert!(options.contains_key("max-size") && options.contains_key("max-file"), "{options:?}");
        }
        let n8n = ServiceSpec::resolve(&stack, "n8n", image("a")).unwrap().create_body(&stack, Role::Primary, None);
        let tmpfs = n8n.host_config.unwrap().tmpfs.unwrap();
        assert!(tmpfs["/tmp"].starts_with("size=") && tmpfs["/tmp"].contains("noexec"), "{tmpfs:?}");
        let redis = ServiceSpec::resolve(&stack, "redis", image("a")).unwrap().create_body(&stack, Role::Primary, None);
        assert_eq!(redis.user.as_deref(), Some("999"), "redis:7-alpine runs as root unless told otherwise");
    }

    #[test]
    fn a_change_of_the_lockdown_is_a_config_reason() {
        let before = ServiceSpec::resolve(&stack(SECRETS), "worker", image("a")).unwrap().hashes;
        let changes: [fn(&mut crate::config::Hardening); 7] = [
            |hardening| hardening.memory = Some("64m".parse().unwrap()),
            |hardening| hardening.cpus = Some(0.25),
            |hardening| hardening.pids_limit = Some(64),
            |hardening| hardening.read_only = Some(false),
            |hardening| hardening.cap_add = Some(vec!["NET_BIND_SERVICE".to_owned()]),
            |hardening| hardening.no_new_privileges = Some(false),
            |hardening| {
                hardening.logging =
                    Some(crate::config::Logging { max_file: Some(9), ..crate::config::Logging::default() });
            },
        ];
        for change in changes {
            let mut changed = stack(SECRETS);
            change(&mut changed.config.services.get_mut("worker").unwrap().hardening);
            let after = ServiceSpec::resolve(&changed, "worker", image("a")).unwrap().hashes;
            assert_eq!(before.differences(&after), ["config"], "{:?}", changed.config.services["worker"].hardening);
        }
        // The defaults reach every service that does not override them.
        let mut changed = stack(SECRETS);
        changed.config.hardening.pids_limit = Some(100);
        let after = ServiceSpec::resolve(&changed, "api", image("a")).unwrap().hashes;
        let before = ServiceSpec::resolve(&stack(SECRETS), "api", image("a")).unwrap().hashes;
        assert_eq!(before.differences(&after), ["config"]);
    }

    #[test]
    fn a_missing_secret_is_named_without_any_value() {
        let stack = stack(&SECRETS.replace("JWT_SECRET=jwt-secret\n", "JWT_SECRET=\n"));
        let error = ServiceSpec::resolve(&stack, "api", image("a")).unwrap_err();
        let message = crate::error::chain(&error).join(" ");
        assert!(message.contains("JWT_SECRET") && message.contains("leaves it empty"), "{message}");
        assert!(!message.contains("secret-"), "{message}");
        assert!(!error.is_usage(), "the host's env file is at fault, not deploy.toml");
        assert!(error.hint().is_some_and(|hint| hint.starts_with("set JWT_SECRET in `")), "{:?}", error.hint());
    }

    #[test]
    fn no_env_file_names_every_secret_the_service_needs_and_an_unknown_service_is_usage() {
        let mut stack = stack(SECRETS);
        stack.secrets.env_file = None;
        let error = ServiceSpec::resolve(&stack, "api", image("a")).unwrap_err();
        let SpecError::NoEnvFile { service, missing, .. } = &error else { panic!("{error:?}") };
        assert_eq!(service, "api");
        assert!(missing.is_sorted() && missing.contains(&"JWT_SECRET".to_owned()), "{missing:?}");
        assert!(!error.is_usage());
        let unknown = ServiceSpec::resolve(&stack, "nope", image("a")).unwrap_err();
        assert!(matches!(unknown, SpecError::NoService(_)) && unknown.is_usage(), "{unknown:?}");
    }

    #[test]
    fn services_behind_a_site_with_a_health_check_roll_out_start_first() {
        let stack = stack(SECRETS);
        let rollout = |name: &str| ServiceSpec::resolve(&stack, name, image("a")).unwrap().rollout;
        assert_eq!(rollout("api"), Rollout::StartFirst);
        assert_eq!(rollout("app"), Rollout::StartFirst);
        assert_eq!(rollout("worker"), Rollout::StopFirst, "no site");
        assert_eq!(rollout("redis"), Rollout::StopFirst, "no site");
        assert_eq!(rollout("n8n"), Rollout::StopFirst, "declared: two n8n must never share their volume");
    }

    #[test]
    fn trusted_proxies_are_loopback_and_the_network_gateway_alone() {
        let v4: IpAddr = "192.168.48.1".parse().unwrap();
        let v6: IpAddr = "fd00:dead:beef::1".parse().unwrap();
        assert_eq!(trusted_proxies(&[v4]), "127.0.0.0/8,::1/128,192.168.48.1/32");
        assert_eq!(trusted_proxies(&[v4, v6, v4]), "127.0.0.0/8,::1/128,192.168.48.1/32,fd00:dead:beef::1/128");
        let network: bollard::models::NetworkInspect = serde_json::from_value(json!({
            "IPAM": { "Driver": "default", "Config": [{ "Subnet": "192.168.48.0/20", "Gateway": "192.168.48.1" }, { "Subnet": "fd00:dead:beef::/64" }] }
        }))
        .unwrap();
        assert_eq!(gateways_of(&network), [v4]);

        let stack = stack(SECRETS);
        let on_network = ServiceSpec::resolve_on(&stack, "api", image("a"), &[v4]).unwrap();
        let unknown = ServiceSpec::resolve(&stack, "api", image("a")).unwrap();
        let env = |spec: &ServiceSpec| spec.body.env.clone().unwrap_or_default();
        assert!(env(&on_network).contains(&"TRUSTED_PROXIES=127.0.0.0/8,::1/128,192.168.48.1/32".to_owned()));
        assert!(env(&unknown).contains(&format!("TRUSTED_PROXIES={}", crate::config::DOCKER_DEFAULT_PROXIES)));
        assert_ne!(on_network.hashes.env, unknown.hashes.env, "a new gateway is a change of environment");
        let worker = ServiceSpec::resolve_on(&stack, "worker", image("a"), &[v4]).unwrap();
        assert!(!env(&worker).iter().any(|variable| variable.starts_with("TRUSTED_PROXIES=")), "the API's only");
    }

    #[test]
    fn health_tests_become_exec_command_lines() {
        let stack = stack(SECRETS);
        let probe = |name: &str| readiness_of(&stack.config.services[name]).probe.unwrap();
        assert_eq!(probe("api"), ["masstock-api", "healthcheck", "--url", "http://127.0.0.1:3000/health"]);
        assert_eq!(probe("worker"), ["masstock-worker", "healthcheck"]);
        assert_eq!(probe("redis")[..2], ["/bin/sh", "-c"]);
    }
}
