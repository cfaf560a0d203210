//! Where the queue's Redis is, seen from this host (what `masstockctl queue` talks to): `REDIS_URL` when set, otherwise the `REDIS_URL` that
//! deploy.toml gives the worker (or the API), with its secrets taken from the env file.
//!
//! In deploy.toml that URL names the redis container (`redis://:${REDIS_PASSWORD}@redis:6379`),
//! which only other containers can resolve. When the redis service publishes the port, the host
//! reaches it on `edge.upstream_host` (where Docker publishes every port). Production publishes
//! none: then the container's address on the project network, from the Engine API. The password
//! is never shown: messages carry [`RedisTarget::shown`]. Errors are [`QueueTargetError`]; the
//! command adds the hints.
//!
//! `REDIS_URL` from the environment wins. Otherwise the URL deploy.toml gives the worker (or else
//! the API), with its `${NAME}` values from the env file. When the redis service publishes the
//! URL's port, the CLI uses `edge.upstream_host` and the published host port. Production never
//! publishes Redis: there the CLI asks the Engine API for the redis container's address on the
//! project network (the host reaches bridge addresses), as `health` does; when that fails it exits
//! 1 with the reason and hints at `REDIS_URL=redis://:PASSWORD@<container ip>:6379`.
//!
//! The password is `***` in every message (`-v`, errors, `--json` error documents), and redis and
//! bullmq errors are scrubbed of the URL and the password before they are shown. What counts as
//! the password is decided without parsing, so that a password that breaks the URL is still
//! hidden: everything from the first `:` after `scheme://` to the last `@` of the whole string, a
//! user part without `:`, the value of any `pass…=` query parameter to the end of the string, and
//! everything before the last `@` when the string does not start with `scheme://`. On the
//! deploy.toml path a secret that would break the URL (anything but letters, digits and `-._~+=`,
//! the rule `config check` applies) is refused with exit 2, unprinted.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use masstock_queue::admin::redacted_url;

use crate::config::{ConfigError, Stack};
use crate::secrets::{self, EnvFile, EnvFileError, ResolveError};

/// How long Redis gets to connect, and to answer each request or each batch of a long repair.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The port Redis listens on when the URL does not say.
const DEFAULT_PORT: u16 = 6379;

/// The Redis to talk to.
pub struct RedisTarget {
    url: String,
    /// The URL with its password replaced by `***`.
    pub shown: String,
    /// Where the URL came from, for messages.
    pub source: String,
    pub from_environment: bool,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget").field("url", &self.shown).field("source", &self.source).finish_non_exhaustive()
    }
}

impl RedisTarget {
    #[must_use]
    pub fn new(url: String, source: String, from_environment: bool) -> Self {
        Self { shown: redacted_url(&url), url, source, from_environment }
    }

    /// The URL, password included: for the connection only, never for a message.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Why the queue's Redis cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum QueueTargetError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no service of environment `{environment}` declares `REDIS_URL`")]
    NoRedisUrl { environment: String },
    /// The URL names a container that publishes no port, and its address could not be learnt.
    #[error(
        "redis is not reachable from this host: `REDIS_URL` of service `{service}` points at the container \
         `{host}:{port}`, which publishes no port, and its address is unknown: {reason}"
    )]
    Unreachable { service: String, host: String, port: u16, reason: String },
    #[error(transparent)]
    EnvFile(#[from] EnvFileError),
    /// The URL's secrets cannot be taken from the env file (`path`).
    #[error(transparent)]
    Secret(#[from] ResolveError),
}

/// `REDIS_URL` from the environment, else from `config` (deploy.toml) for `environment`.
pub fn resolve(config: &Path, environment: &str) -> Result<RedisTarget, QueueTargetError> {
    if let Some(url) = std::env::var("REDIS_URL").ok().filter(|url| !url.is_empty()) {
        return Ok(RedisTarget::new(url, "`REDIS_URL` in the environment".to_owned(), true));
    }
    // Only the secrets in the URL are needed, so the rest of the env file is not checked.
    let source = crate::config::read_source(config)?;
    let stack = Stack::from_source_without_env_file(&source, environment)?;
    from_stack(&stack)
}

/// The host-side address of the Redis that deploy.toml gives its services.
fn from_stack(stack: &Stack) -> Result<RedisTarget, QueueTargetError> {
    // The worker consumes the queue, the API adds to it: either one names the queue's Redis.
    let mut services: Vec<(&str, &crate::config::Service)> = stack.services().collect();
    services.sort_by_key(|(name, _)| match *name {
        "worker" => 0,
        "api" => 1,
        _ => 2,
    });
    let (service, declared) = services
        .iter()
        .find_map(|(name, service)| service.env.get("REDIS_URL").map(|url| (*name, url.as_str())))
        .ok_or_else(|| QueueTargetError::NoRedisUrl { environment: stack.environment.clone() })?;

    // The address is looked at before the secrets, so that an unreachable Redis is reported as
    // such even where the env file is missing.
    let Some(parts) = UrlParts::parse(declared) else {
        // A socket path or an unusual URL: used as written.
        let url = resolve_secrets(stack, declared)?;
        return Ok(RedisTarget::new(url, format!("deploy.toml (`REDIS_URL` of service `{service}`)"), false));
    };
    let port = parts.port.unwrap_or(DEFAULT_PORT);
    let redis_service =
        stack.services().find(|(name, _)| *name == parts.host || stack.container_name(name) == parts.host);
    let Some((redis_name, redis)) = redis_service else {
        // Not a container of the stack (a managed Redis, say): reachable as written.
        let url = resolve_secrets(stack, declared)?;
        return Ok(RedisTarget::new(url, format!("deploy.toml (`REDIS_URL` of service `{service}`)"), false));
    };
    let container = stack.container_name(redis_name);
    let Some(published) = redis.ports.iter().find(|published| published.container == port) else {
        // No published port (production's case): the container's address on the project network,
        // the one answer that needs the engine (and so a runtime).
        let network = &stack.config.project.network;
        let address = crate::runtime::block_on(async {
            match crate::docker::connect().await {
                Ok(docker) => crate::docker::container_address(&docker, &container, network)
                    .await
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.chain().join(": ")),
            }
        })
        .map_err(|error| error.to_string())
        .and_then(|address| address);
        return match address {
            Ok(address) => {
                let url = resolve_secrets(stack, &parts.with_address(&address, port))?;
                let source = format!("deploy.toml: `REDIS_URL` of service `{service}`, at container `{container}`'s address on `{network}`");
                Ok(RedisTarget::new(url, source, false))
            }
            Err(reason) => Err(QueueTargetError::Unreachable {
                service: service.to_owned(),
                host: parts.host.to_owned(),
                port,
                reason,
            }),
        };
    };
    let host = stack.config.edge.upstream_host.to_string();
    let url = resolve_secrets(stack, &parts.with_address(&host, published.host))?;
    let source = format!(
        "deploy.toml: `REDIS_URL` of service `{service}`, through the port service `{redis_name}` publishes on {host}"
    );
    Ok(RedisTarget::new(url, source, false))
}

/// `declared` with each `${NAME}` replaced by its value in the env file, read only when
/// `declared` refers to a secret.
fn resolve_secrets(stack: &Stack, declared: &str) -> Result<String, QueueTargetError> {
    let path = &stack.config.project.env_file;
    let refers_to_secrets = secrets::references_in(declared).is_ok_and(|names| !names.is_empty());
    let file = if refers_to_secrets { EnvFile::read(path)? } else { None };
    Ok(secrets::resolve(declared, file.as_ref(), path)?)
}

/// A URL cut around its host and port: `scheme://[userinfo@]host[:port][/rest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlParts<'a> {
    /// Up to and including the `@`, or the `://`.
    before: &'a str,
    host: &'a str,
    port: Option<u16>,
    after: &'a str,
}

impl<'a> UrlParts<'a> {
    fn parse(url: &'a str) -> Option<Self> {
        let authority_start = url.find("://")? + 3;
        let authority_end = url[authority_start..].find(['/', '?', '#']).map_or(url.len(), |end| authority_start + end);
        let host_start =
            url[authority_start..authority_end].rfind('@').map_or(authority_start, |at| authority_start + at + 1);
        let address = &url[host_start..authority_end];
        let (host, port) = if address.starts_with('[') {
            let close = address.find(']')?;
            (&address[..=close], address[close + 1..].strip_prefix(':'))
        } else {
            match address.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (address, None),
            }
        };
        let port = match port {
            Some(port) => Some(port.parse().ok()?),
            None => None,
        };
        (!host.is_empty()).then_some(Self { before: &url[..host_start], host, port, after: &url[authority_end..] })
    }

    fn with_address(&self, host: &str, port: u16) -> String {
        format!("{}{host}:{port}{}", self.before, self.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_cut_around_the_address() {
        let parts = UrlParts::parse("redis://:pw@redis:6379/0").unwrap();
        assert_eq!((parts.before, parts.host, parts.port, parts.after), ("redis://:pw@", "redis", Some(6379), "/0"));
        assert_eq!(parts.with_address("127.0.0.1", 16379), "redis://:pw@127.0.0.1:16379/0");
        let parts = UrlParts::parse("redis://redis").unwrap();
        assert_eq!((parts.host, parts.port, parts.after), ("redis", None, ""));
        let parts = UrlParts::parse("redis://u:p@[::1]:7000?x=1").unwrap();
        assert_eq!((parts.host, parts.port, parts.after), ("[::1]", Some(7000), "?x=1"));
        assert_eq!(UrlParts::parse("/var/run/redis.sock"), None);
        assert_eq!(UrlParts::parse("redis://h:notaport"), None);
    }
}
