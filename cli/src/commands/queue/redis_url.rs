//! Where `masstockctl queue` finds Redis: `REDIS_URL` when set, otherwise the `REDIS_URL` that
//! deploy.toml gives the worker (or the API), with its secrets taken from the env file.
//!
//! In deploy.toml that URL names the redis container (`redis://:${REDIS_PASSWORD}@redis:6379`),
//! which only other containers can resolve. When the redis service publishes the port, the host
//! reaches it on `edge.upstream_host` (where Docker publishes every port). Production publishes
//! none: then the container's address on the project network, from the Engine API. The password
//! is never shown: messages carry [`RedisTarget::shown`].

use std::fmt;

use masstock_queue::admin::redacted_url;

use crate::commands::GlobalArgs;
use crate::config::Stack;
use crate::error::CommandError;
use crate::secrets::{self, EnvFile};

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
    pub(super) fn new(url: String, source: String, from_environment: bool) -> Self {
        Self { shown: redacted_url(&url), url, source, from_environment }
    }

    /// The URL, password included: for the connection only, never for a message.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `REDIS_URL` from the environment, else from deploy.toml.
pub fn resolve(global: &GlobalArgs) -> Result<RedisTarget, CommandError> {
    if let Some(url) = std::env::var("REDIS_URL").ok().filter(|url| !url.is_empty()) {
        return Ok(RedisTarget::new(url, "`REDIS_URL` in the environment".to_owned(), true));
    }
    // Only the secrets in the URL are needed, so the rest of the env file is not checked.
    let stack = global.load_stack_without_env_file()?;
    from_stack(&stack)
}

/// The host-side address of the Redis that deploy.toml gives its services.
fn from_stack(stack: &Stack) -> Result<RedisTarget, CommandError> {
    let environment = &stack.environment;
    let no_redis_url = || {
        CommandError::failure(format!("no service of environment `{environment}` declares `REDIS_URL`"))
            .with_hint("set `REDIS_URL`, e.g. `REDIS_URL=redis://:PASSWORD@127.0.0.1:6379`")
    };
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
        .ok_or_else(no_redis_url)?;

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
        // No published port (production's case): the container's address on the project network.
        let network = &stack.config.project.network;
        let address = crate::docker::block_on(async {
            let docker = crate::docker::connect().await.map_err(|error| error.chain().join(": "))?;
            crate::docker::container_address(&docker, &container, network).await
        })?;
        return match address {
            Ok(address) => {
                let url = resolve_secrets(stack, &parts.with_address(&address, port))?;
                let source = format!("deploy.toml: `REDIS_URL` of service `{service}`, at container `{container}`'s address on `{network}`");
                Ok(RedisTarget::new(url, source, false))
            }
            Err(reason) => Err(CommandError::failure(format!(
                "redis is not reachable from this host: `REDIS_URL` of service `{service}` points at the container \
                 `{}:{port}`, which publishes no port, and its address is unknown: {reason}",
                parts.host
            ))
            .with_hint(format!(
                "set `REDIS_URL` to the container's address, e.g. `REDIS_URL=redis://:PASSWORD@<container ip>:{port}`"
            ))),
        };
    };
    let host = stack.config.edge.upstream_host.to_string();
    let url = resolve_secrets(stack, &parts.with_address(&host, published.host))?;
    let source = format!(
        "deploy.toml: `REDIS_URL` of service `{service}`, through the port service `{redis_name}` publishes on {host}"
    );
    Ok(RedisTarget::new(url, source, false))
}

/// `declared` with each `${NAME}` replaced by its value in the env file.
fn resolve_secrets(stack: &Stack, declared: &str) -> Result<String, CommandError> {
    let names = secrets::references_in(declared).map_err(CommandError::usage)?;
    if names.is_empty() {
        return Ok(secrets::substitute_references(declared, |_| String::new()));
    }
    let path = &stack.config.project.env_file;
    let environment = &stack.environment;
    let generate_hint = format!("run `masstockctl --env {environment} secrets generate`, or set `REDIS_URL`");
    let file = EnvFile::read(path).map_err(CommandError::failure)?.ok_or_else(|| {
        CommandError::failure(format!(
            "the env file `{}` does not exist, and `REDIS_URL` needs `{}` from it",
            path.display(),
            names.join("`, `")
        ))
        .with_hint(generate_hint.clone())
    })?;
    for name in &names {
        if file.get(name).is_none_or(str::is_empty) {
            return Err(
                CommandError::failure(format!("`{name}` is not set in `{}`", path.display())).with_hint(generate_hint)
            );
        }
    }
    // A secret spliced into a URL must leave its shape alone: a `/`, `#`, `?` or `@` would end the
    // password early and the rest would be read (and shown) as host or path. `config check`
    // refuses the same secrets, with the same rule.
    if secrets::map_references(declared, |_| String::new()).contains("://") {
        let url_safe = |value: &str| value.chars().all(|c| c.is_ascii_alphanumeric() || "-._~+=".contains(c));
        if let Some(name) = names.iter().find(|name| !url_safe(file.get(name).unwrap_or_default())) {
            return Err(CommandError::usage(format!(
                "secret `{name}` in `{}` holds characters that break the `REDIS_URL` it is part of",
                path.display()
            ))
            .with_hint("a secret inside a URL may only hold letters, digits and `-._~+=`")
            .with_hint(format!(
                "generate a URL-safe one: remove `{name}` from the env file, then `masstockctl --env {environment} \
                 secrets generate --force`"
            )));
        }
    }
    Ok(secrets::substitute_references(declared, |name| file.get(name).unwrap_or_default().to_owned()))
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
