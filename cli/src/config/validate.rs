//! Checks that span several keys of deploy.toml: names, references between services, ports,
//! cycles, secrets. Each finding points at the key that has to change.
//!
//! `config check` passing means the tools accept the output: anything a valid deploy.toml can say
//! must render into a site that `nginx -t` accepts and a file `docker-compose config` reads as
//! written. So:
//!
//! - Names and paths written unquoted into nginx (environment, project, site and volume names,
//!   log, certificate and webroot paths, `cert_name`, header names) are restricted to characters
//!   that cannot change the meaning of the file.
//! - Every YAML key is JSON-quoted (in the template), so a service `on` or a variable `NO` is not
//!   read as a boolean.
//! - Images must follow Docker's reference grammar. Mounts cannot hold `:`, and compose-bound
//!   strings cannot hold control characters.
//! - Sizes are byte counts nginx accepts (k or m, at most 1 GiB; zones at least 32k).
//! - `*` is refused as a CORS origin because the API sends credentials. `upstream_host` must be
//!   IPv4, because that is where Docker publishes the ports.
//! - A value is declared once: `CORS_ORIGIN` comes from `[cors] origins`, `RATE_LIMIT_*` from
//!   `[rate_limits]`, `SESSION_ABSOLUTE_LIFETIME` from `[sessions]` and `TRUSTED_PROXIES` from
//!   the project network's gateway; declaring them in a service is an error, so the edge and the
//!   API cannot disagree.
//! - `[sessions] absolute_lifetime` is between an hour and a year.
//! - A stop period shorter than a service's `SHUTDOWN_GRACE_SECONDS` plus 10 s is refused.
//! - A secret spliced into a URL must be URL-safe (see `crate::secrets`).
//! - `[hardening]` and each service's `hardening`: capabilities are Linux's names (with or
//!   without `CAP_`, or `ALL`), a memory limit is at least Docker's 6 MiB, `cpus` between 0.01
//!   and 1024, `pids_limit` at least 16 (a Rust runtime alone starts one thread per core), a
//!   tmpfs target absolute and free of `:` and `,` (compose's separators), and log files at
//!   least 1 KiB. A service's `user` is a numeric uid (its type says so).
//! - `[backup]`: `password` is exactly one `${NAME}` (a value written there is refused and never
//!   repeated), and so is every `env` variable whose name looks secret (`*KEY*`, `*SECRET*`,
//!   `*PASSWORD*`, `*TOKEN*`); both count among the stack's secret references (`secrets
//!   generate` creates them, `config check` reports them unset). `include` names components
//!   (`crate::backup::Component`), at least one, each once, each present in this environment (its service
//!   enabled; `uploads` a declared volume some enabled service mounts; `postgres` a service with
//!   `DATABASE_URL`). Retention keeps something (all of `keep_*` at 0 would forget every
//!   snapshot); the schedules and the repository are non-empty single lines.
//! - A check reports every problem it finds instead of stopping at the first.

use std::collections::BTreeMap;

use super::{
    closest, quoted_list, Config, Diagnostic, Duration, EnvFileCheck, KeyPath, Mark, Secrets, Service, Source, Stack,
};
use crate::backup::Component;
use crate::secrets::{self, EnvFile, SecretReference};

/// Variables masstockctl sets itself; declaring them in a service is an error.
const DERIVED_VARIABLES: &[(&str, &str)] = &[
    ("CORS_ORIGIN", "[cors] origins"),
    ("RATE_LIMIT_GENERAL", "[rate_limits] general"),
    ("RATE_LIMIT_AUTH", "[rate_limits] auth"),
    ("SESSION_ABSOLUTE_LIFETIME", "[sessions] absolute_lifetime"),
    ("TRUSTED_PROXIES", "[project] network"),
];

struct Checker<'a> {
    source: &'a Source,
    environment: &'a str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn diagnostic(&self, path: &KeyPath, mark: Mark, message: &str, hints: Vec<String>) -> Diagnostic {
        Diagnostic::new(message, self.source.locate(path, mark, Some(self.environment)), hints)
    }

    fn error(&mut self, path: &KeyPath, mark: Mark, message: impl Into<String>, hints: Vec<String>) {
        let diagnostic = self.diagnostic(path, mark, &message.into(), hints);
        self.errors.push(diagnostic);
    }

    /// An error about a value that may be a secret written inline: the snippet shows `"***"`.
    fn secret_error(&mut self, path: &KeyPath, message: impl Into<String>, hints: Vec<String>) {
        let location = self.source.locate(path, Mark::Value, Some(self.environment)).map(super::Location::masked);
        self.errors.push(Diagnostic::new(&message.into(), location, hints));
    }

    fn warn(&mut self, path: &KeyPath, mark: Mark, message: impl Into<String>, hints: Vec<String>) {
        let diagnostic = self.diagnostic(path, mark, &message.into(), hints);
        self.warnings.push(diagnostic);
    }
}

/// Validates `config` and gathers what the stack needs from the env file.
pub(super) fn stack(
    source: &Source,
    config: Config,
    environment: &str,
    env_file: EnvFileCheck,
) -> Result<Stack, Vec<Diagnostic>> {
    let mut checker = Checker { source, environment, errors: Vec::new(), warnings: Vec::new() };
    project(&mut checker, &config);
    paths(&mut checker, &config);
    services(&mut checker, &config);
    dependencies(&mut checker, &config);
    ports(&mut checker, &config);
    sites(&mut checker, &config);
    edge(&mut checker, &config);
    cors(&mut checker, &config);
    acme(&mut checker, &config);
    hardening(&mut checker, &config);
    backup(&mut checker, &config);
    let secrets = secrets(&mut checker, &config, env_file);
    if checker.errors.is_empty() {
        Ok(Stack {
            environment: environment.to_owned(),
            path: source.path.clone(),
            config,
            secrets,
            warnings: checker.warnings,
        })
    } else {
        Err(checker.errors)
    }
}

/// `[a-z0-9][a-z0-9_-]*`: safe in container, volume and network names.
pub(super) fn is_object_name(name: &str) -> bool {
    name.bytes().next().is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit())
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_' || byte == b'-')
}

/// Why `image` is not a Docker image reference (`[host[:port]/]path[:tag][@sha256:digest]`).
fn image_problem(image: &str) -> Option<&'static str> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let valid = digest
            .strip_prefix("sha256:")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if !valid {
            return Some("the digest must be `sha256:` and 64 hex digits");
        }
    }
    let last_slash = name.rfind('/').map_or(0, |index| index + 1);
    let (path, tag) = match name[last_slash..].rfind(':') {
        Some(colon) => (&name[..last_slash + colon], Some(&name[last_slash + colon + 1..])),
        None => (name, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && tag.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid {
            return Some("a tag is up to 128 letters, digits, `_`, `.` and `-`");
        }
    }
    let mut components: Vec<&str> = path.split('/').collect();
    // A first component with a `.` or `:`, or `localhost`, is a registry host.
    if components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost") {
        let host = components.remove(0);
        if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b)) {
            return Some("the registry host holds characters a host name cannot");
        }
    }
    let component_valid = |component: &str| {
        !component.is_empty()
            && component.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && component.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && component.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    if components.iter().all(|component| component_valid(component)) {
        None
    } else {
        Some("each part of the name is lower-case letters and digits, joined by `.`, `_` or `-`")
    }
}

/// Whether `text` holds a control character, which YAML and nginx cannot carry verbatim.
fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// A host name as DNS allows it (RFC 1123), lower case, at least two labels.
pub(crate) fn domain_problem(domain: &str) -> Option<String> {
    if domain.len() > 253 {
        return Some("longer than 253 characters".into());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Some("a domain needs at least two labels, like `example.com`".into());
    }
    for label in labels {
        if label.is_empty() {
            return Some("empty label (two dots in a row, or a leading or trailing dot)".into());
        }
        if label.len() > 63 {
            return Some(format!("label `{label}` is longer than 63 characters"));
        }
        if !label.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-') {
            return Some(format!("label `{label}` may only hold lower-case letters, digits and `-`"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("label `{label}` starts or ends with `-`"));
        }
    }
    None
}

/// Characters nginx cannot take inside a quoted value we render.
fn nginx_value_problem(value: &str) -> Option<&'static str> {
    if value.contains('$') {
        Some("`$` would be read by nginx as a variable")
    } else if value.contains(['"', '\\']) {
        Some("quotes and backslashes are not allowed")
    } else if value.chars().any(char::is_control) {
        Some("control characters are not allowed")
    } else {
        None
    }
}

/// A header name or method as we allow them: letters, digits and `-`. (HTTP allows more, but
/// `$`, `'` or `#` would mean something else to nginx.)
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}

/// Why a path cannot be written unquoted into the nginx site, if it cannot.
fn path_problem(path: &std::path::Path) -> Option<String> {
    let text = path.to_string_lossy();
    text.chars()
        .find(|c| c.is_whitespace() || c.is_control() || ";{}#\"'$\\".contains(*c))
        .map(|c| format!("path `{text}` holds `{}`, which nginx would misread", c.escape_default()))
}

/// Linux's capabilities (`capabilities(7)`), as Docker names them without `CAP_`.
const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// Docker's smallest memory limit.
const MIN_MEMORY_BYTES: u64 = 6 << 20;
/// Below this, a tokio runtime (one thread per core, plus its blocking pool) cannot start.
const MIN_PIDS: u32 = 16;

fn hardening(checker: &mut Checker, config: &Config) {
    let mut tables = vec![(KeyPath::new(["hardening"]), &config.hardening)];
    tables.extend(
        config
            .services
            .iter()
            .filter(|(_, service)| service.enabled)
            .map(|(name, service)| (KeyPath::new(["services", name, "hardening"]), &service.hardening)),
    );
    for (path, table) in tables {
        for (key, capabilities) in [("cap_drop", &table.cap_drop), ("cap_add", &table.cap_add)] {
            for (index, capability) in capabilities.iter().flatten().enumerate() {
                let name = capability.strip_prefix("CAP_").unwrap_or(capability);
                if name == "ALL" || CAPABILITIES.contains(&name) {
                    continue;
                }
                let mut hints = Vec::new();
                if let Some(closest) = closest(&name.to_ascii_uppercase(), CAPABILITIES.iter().copied()) {
                    hints.push(format!("did you mean `{closest}`?"));
                }
                hints.push("Linux's capability names, in upper case, without `CAP_`; `ALL` for every one".into());
                checker.error(
                    &path.key(key).index(index),
                    Mark::Value,
                    format!("unknown capability `{}`", capability.escape_debug()),
                    hints,
                );
            }
        }
        if let Some(memory) = table.memory.as_ref().filter(|memory| memory.bytes < MIN_MEMORY_BYTES) {
            checker.error(
                &path.key("memory"),
                Mark::Value,
                format!("memory limit `{memory}` is below Docker's minimum of 6 MiB"),
                vec!["write at least `6m`; a service needs far more, see deploy.toml's sizes".into()],
            );
        }
        if let Some(cpus) = table.cpus.filter(|cpus| !(0.01..=1024.0).contains(cpus)) {
            checker.error(
                &path.key("cpus"),
                Mark::Value,
                format!("`cpus` is {cpus}, outside 0.01 to 1024"),
                vec!["a fraction of the host's CPUs, like `0.5` or `1.0`".into()],
            );
        }
        if let Some(pids) = table.pids_limit.filter(|pids| *pids < MIN_PIDS) {
            checker.error(
                &path.key("pids_limit"),
                Mark::Value,
                format!("`pids_limit` is {pids}, below {MIN_PIDS}: the service could not start its threads"),
                Vec::new(),
            );
        }
        for (index, tmpfs) in table.tmpfs.iter().flatten().enumerate() {
            let tmpfs_path = path.key("tmpfs").index(index);
            if !tmpfs.target.starts_with('/') || tmpfs.target.contains([':', ',', '$']) || has_control(&tmpfs.target) {
                checker.error(
                    &tmpfs_path.key("target"),
                    Mark::Value,
                    format!(
                        "tmpfs target `{}` must be an absolute path without `:`, `,` or `$`",
                        tmpfs.target.escape_debug()
                    ),
                    Vec::new(),
                );
            }
            if tmpfs.size.bytes == 0 {
                checker.error(&tmpfs_path.key("size"), Mark::Value, "a tmpfs needs a size above zero", Vec::new());
            }
        }
        if let Some(logging) = &table.logging {
            if logging.max_size.as_ref().is_some_and(|size| size.bytes < 1024) {
                checker.error(
                    &path.key("logging").key("max_size"),
                    Mark::Value,
                    "log files of less than 1 KiB would rotate at every line",
                    vec!["write a size like `10m`".into()],
                );
            }
            if logging.max_file == Some(0) {
                checker.error(
                    &path.key("logging").key("max_file"),
                    Mark::Value,
                    "`max_file` must be at least 1",
                    Vec::new(),
                );
            }
        }
    }
}

fn project(checker: &mut Checker, config: &Config) {
    let path = KeyPath::new(["project"]);
    // It prefixes nginx variables (`$<name>_cors_origin`), which must start with a letter.
    if !is_object_name(&config.project.name) || !config.project.name.starts_with(|c: char| c.is_ascii_lowercase()) {
        checker.error(
            &path.key("name"),
            Mark::Value,
            format!("invalid project name `{}`", config.project.name),
            vec!["use lower-case letters, digits, `_` and `-`, starting with a letter".into()],
        );
    }
    if !is_object_name(&config.project.network) {
        checker.error(
            &path.key("network"),
            Mark::Value,
            format!("invalid network name `{}`", config.project.network),
            vec!["use lower-case letters, digits, `_` and `-`".into()],
        );
    }
}

/// Paths that end up in the nginx site, unquoted.
fn paths(checker: &mut Checker, config: &Config) {
    let rendered = [
        (KeyPath::new(["edge", "log_dir"]), &config.edge.log_dir),
        (KeyPath::new(["edge", "site_file"]), &config.edge.site_file),
        (KeyPath::new(["acme", "cert_dir"]), &config.acme.cert_dir),
        (KeyPath::new(["acme", "webroot"]), &config.acme.webroot),
    ];
    for (path, value) in rendered.into_iter().chain([(KeyPath::new(["project", "env_file"]), &config.project.env_file)])
    {
        if value.to_string_lossy().trim().is_empty() {
            checker.error(&path, Mark::Value, format!("`{path}` is empty"), Vec::new());
        } else if let Some(problem) = path_problem(value) {
            checker.error(
                &path,
                Mark::Value,
                problem,
                vec!["move it to a path without spaces or `;{}#$` quotes".into()],
            );
        }
    }
}

/// How long `docker stop` waits before SIGKILL when nothing else is said.
const DOCKER_STOP_TIMEOUT_SECS: u64 = 10;
/// What a service needs after its grace period to hand unfinished work back and close.
const STOP_MARGIN_SECS: u64 = 10;

fn services(checker: &mut Checker, config: &Config) {
    for (name, service) in &config.services {
        let path = KeyPath::new(["services", name]);
        if !is_object_name(name) {
            checker.error(
                &path,
                Mark::Key,
                format!("invalid service name `{name}`"),
                vec!["use lower-case letters, digits, `_` and `-`, starting with a letter or digit".into()],
            );
        }
        if !service.enabled {
            continue;
        }
        if let Some(problem) = image_problem(&service.image) {
            checker.error(
                &path.key("image"),
                Mark::Value,
                format!("invalid image reference `{}`: {problem}", service.image.escape_debug()),
                vec!["an image is `[registry/]repository[:tag]`, in lower case, like `redis:7-alpine`".into()],
            );
        }
        let mut strings: Vec<(KeyPath, &str)> = Vec::new();
        strings.extend(
            service.command.iter().enumerate().map(|(index, part)| (path.key("command").index(index), part.as_str())),
        );
        strings.extend(service.env.iter().map(|(variable, value)| (path.key("env").key(variable), value.as_str())));
        if let Some(check) = &service.healthcheck {
            let check_path = path.key("healthcheck");
            strings.extend(
                check
                    .command
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(index, part)| (check_path.key("command").index(index), part.as_str())),
            );
            strings.extend(check.shell.as_deref().map(|shell| (check_path.key("shell"), shell)));
            strings.extend(check.http.as_deref().map(|http| (check_path.key("http"), http)));
        }
        for (key_path, text) in strings {
            if has_control(text) {
                checker.error(
                    &key_path,
                    Mark::Value,
                    format!("a control character in `{key_path}`: `{}`", text.escape_debug()),
                    vec!["remove it; the compose file and Docker cannot carry it verbatim".into()],
                );
            }
        }
        if let Some(build) = &service.build {
            let build_path = path.key("build");
            match (&build.binary, &build.host_package) {
                (Some(_), Some(_)) | (None, None) => checker.error(
                    &build_path,
                    Mark::Value,
                    format!("`services.{name}.build` must name exactly one of `binary` or `host_package`"),
                    vec!["`binary` builds from a workspace binary, `host_package` from a Debian package of this host"
                        .into()],
                ),
                (None, Some(_)) if build.assets.is_some() => {
                    checker.error(&build_path.key("assets"), Mark::Key, "`assets` only goes with `binary`", Vec::new());
                }
                _ => {}
            }
        }
        if service.command.iter().any(String::is_empty) {
            checker.error(&path.key("command"), Mark::Value, "empty argument in `command`", Vec::new());
        }
        healthcheck(checker, name, service, &path);
        for (index, mount) in service.volumes.iter().enumerate() {
            let mount_path = path.key("volumes").index(index);
            let named = config.volumes.contains_key(&mount.source);
            if !named && !mount.source.starts_with('/') {
                let mut hints = Vec::new();
                if let Some(closest) = closest(&mount.source, config.volumes.keys().map(String::as_str)) {
                    hints.push(format!("did you mean `{closest}`?"));
                }
                hints.push(format!(
                    "declare it under `[volumes]`, or use an absolute host path; declared: {}",
                    quoted_list(&config.volumes.keys().collect::<Vec<_>>())
                ));
                checker.error(
                    &mount_path.key("source"),
                    Mark::Value,
                    format!("unknown volume `{}`", mount.source),
                    hints,
                );
            }
            for (key, text) in [("source", &mount.source), ("target", &mount.target)] {
                if text.contains([':', '$']) || has_control(text) {
                    checker.error(
                        &mount_path.key(key),
                        Mark::Value,
                        format!("mount {key} `{}` holds `:`, `$` or a control character", text.escape_debug()),
                        vec!["Docker splits mounts at `:`; choose a path without it".into()],
                    );
                }
            }
            if !mount.target.starts_with('/') {
                checker.error(
                    &mount_path.key("target"),
                    Mark::Value,
                    format!("mount target `{}` is not an absolute path", mount.target),
                    Vec::new(),
                );
            }
        }
        for (variable, value) in &service.env {
            let variable_path = path.key("env").key(variable);
            if !secrets::is_variable_name(variable) {
                checker.error(
                    &variable_path,
                    Mark::Key,
                    format!("invalid environment variable name `{variable}`"),
                    vec!["use letters, digits and `_`, not starting with a digit".into()],
                );
            }
            if let Some((_, from)) = DERIVED_VARIABLES.iter().find(|(derived, _)| derived == variable) {
                checker.error(
                    &variable_path,
                    Mark::Key,
                    format!("`{variable}` is set by masstockctl from `{from}`"),
                    vec![format!("remove it here and change `{from}` instead")],
                );
            }
            if let Err(problem) = secrets::references_in(value) {
                checker.error(&variable_path, Mark::Value, problem.to_string(), Vec::new());
            }
        }
        // A service that asks for a shutdown grace must get it before Docker's SIGKILL.
        let grace = service.env.get("SHUTDOWN_GRACE_SECONDS").and_then(|seconds| seconds.parse::<u64>().ok());
        if let Some(grace) = grace {
            let stop = service.stop_grace_period.map_or(DOCKER_STOP_TIMEOUT_SECS, Duration::as_secs);
            if stop < grace + STOP_MARGIN_SECS {
                checker.error(
                    &path.key(if service.stop_grace_period.is_some() { "stop_grace_period" } else { "env" }),
                    Mark::Value,
                    format!(
                        "`{name}` is given {stop} s between SIGTERM and SIGKILL, less than its shutdown grace of {grace} s plus {STOP_MARGIN_SECS} s to hand its work back"
                    ),
                    vec![format!("set `stop_grace_period` to at least SHUTDOWN_GRACE_SECONDS + {STOP_MARGIN_SECS} s: \"{}s\"", grace + STOP_MARGIN_SECS)],
                );
            }
        }
    }
    for name in config.volumes.keys().filter(|name| !is_object_name(name)) {
        checker.error(
            &KeyPath::new(["volumes", name]),
            Mark::Key,
            format!("invalid volume name `{name}`"),
            vec!["use lower-case letters, digits, `_` and `-`, starting with a letter or digit".into()],
        );
    }
}

fn healthcheck(checker: &mut Checker, name: &str, service: &Service, path: &KeyPath) {
    let Some(check) = &service.healthcheck else { return };
    let path = path.key("healthcheck");
    let kinds =
        [check.command.is_some(), check.shell.is_some(), check.http.is_some()].iter().filter(|set| **set).count();
    if kinds != 1 {
        checker.error(
            &path,
            Mark::Value,
            format!("`services.{name}.healthcheck` must set exactly one of `command`, `shell` or `http`"),
            vec!["`command = [\"redis-cli\", \"ping\"]`, `shell = \"...\"`, or `http = \"/health\"`".into()],
        );
        return;
    }
    if let Some(command) = &check.command {
        if command.is_empty() || command.iter().any(String::is_empty) {
            checker.error(&path.key("command"), Mark::Value, "the health check command is empty", Vec::new());
        }
    }
    if let Some(http) = &check.http {
        if !http.starts_with('/') {
            checker.error(
                &path.key("http"),
                Mark::Value,
                format!("health check path `{http}` must start with `/`"),
                Vec::new(),
            );
        } else if http.chars().any(char::is_whitespace) {
            checker.error(
                &path.key("http"),
                Mark::Value,
                format!("health check path `{http}` holds a space"),
                vec!["percent-encode it: `%20`".into()],
            );
        }
        if check.port.is_none() && service.ports.len() != 1 {
            checker.error(
                &path.key("http"),
                Mark::Key,
                "an `http` health check needs `port` when the service does not publish exactly one port",
                vec!["add `port = <container port>` to the health check".into()],
            );
        }
    }
    if check.timeout.0.is_zero() || check.interval.0.is_zero() {
        checker.error(&path, Mark::Value, "health check `interval` and `timeout` must be longer than zero", Vec::new());
    } else if check.timeout > check.interval {
        checker.warn(
            &path.key("timeout"),
            Mark::Value,
            format!("health check timeout {} is longer than its interval {}", check.timeout, check.interval),
            Vec::new(),
        );
    }
    if check.retries == 0 {
        checker.error(&path.key("retries"), Mark::Value, "health check `retries` must be at least 1", Vec::new());
    }
}

fn dependencies(checker: &mut Checker, config: &Config) {
    let enabled: BTreeMap<&str, &Service> = config
        .services
        .iter()
        .filter(|(_, service)| service.enabled)
        .map(|(name, service)| (name.as_str(), service))
        .collect();
    let mut sound = true;
    for (name, service) in &enabled {
        for dependency in service.depends_on.keys() {
            let path = KeyPath::new(["services", name, "depends_on", dependency]);
            match config.services.get(dependency) {
                None => {
                    sound = false;
                    let mut hints = Vec::new();
                    if let Some(closest) = closest(dependency, config.services.keys().map(String::as_str)) {
                        hints.push(format!("did you mean `{closest}`?"));
                    }
                    hints.push(format!("services: {}", quoted_list(&config.services.keys().collect::<Vec<_>>())));
                    checker.error(
                        &path,
                        Mark::Key,
                        format!("`{name}` depends on unknown service `{dependency}`"),
                        hints,
                    );
                }
                Some(target) if !target.enabled => {
                    sound = false;
                    checker.error(
                        &path,
                        Mark::Key,
                        format!(
                            "`{name}` depends on `{dependency}`, which is disabled in environment `{}`",
                            checker.environment
                        ),
                        vec![format!("enable `{dependency}` or remove the dependency in this environment")],
                    );
                }
                Some(target) => {
                    if service.depends_on[dependency] == super::DependencyCondition::Healthy
                        && target.healthcheck.is_none()
                    {
                        checker.error(
                            &path,
                            Mark::Value,
                            format!("`{name}` waits for `{dependency}` to be healthy, but `{dependency}` has no health check"),
                            vec![format!("add `[services.{dependency}.healthcheck]` or use `started`")],
                        );
                    }
                }
            }
        }
    }
    if !sound {
        return;
    }
    // Depth-first search with the path kept, so a cycle is reported with every service on it.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    let mut reported = false;
    for start in enabled.keys() {
        let mut stack: Vec<&str> = Vec::new();
        if let Some(cycle) = find_cycle(start, &enabled, &mut state, &mut stack) {
            if !reported {
                let closing = cycle[cycle.len() - 2];
                let closed = cycle[cycle.len() - 1];
                checker.error(
                    &KeyPath::new(["services", closing, "depends_on", closed]),
                    Mark::Key,
                    format!("dependency cycle: {}", cycle.join(" → ")),
                    vec!["services start after what they depend on, so a cycle can never start; remove one of these dependencies".into()],
                );
                reported = true;
            }
        }
    }
}

/// Returns the cycle through `node`, if any, as `a → b → a`.
fn find_cycle<'a>(
    node: &'a str,
    graph: &BTreeMap<&'a str, &'a Service>,
    state: &mut BTreeMap<&'a str, u8>,
    stack: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    const VISITING: u8 = 1;
    const DONE: u8 = 2;
    match state.get(node) {
        Some(&DONE) => return None,
        Some(&VISITING) => {
            let start = stack.iter().position(|entry| *entry == node).unwrap_or(0);
            let mut cycle = stack[start..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        _ => {}
    }
    state.insert(node, VISITING);
    stack.push(node);
    if let Some(service) = graph.get(node) {
        for dependency in service.depends_on.keys() {
            if let Some((name, _)) = graph.get_key_value(dependency.as_str()) {
                if let Some(cycle) = find_cycle(name, graph, state, stack) {
                    return Some(cycle);
                }
            }
        }
    }
    stack.pop();
    state.insert(node, DONE);
    None
}

fn ports(checker: &mut Checker, config: &Config) {
    let mut taken: BTreeMap<u16, String> = BTreeMap::new();
    let edge = &config.edge;
    for (key, port) in [("http_port", edge.http_port), ("https_port", edge.https_port)] {
        if port == 0 {
            checker.error(&KeyPath::new(["edge", key]), Mark::Value, format!("`edge.{key}` cannot be 0"), Vec::new());
        }
    }
    taken.insert(edge.http_port, "the edge's `http_port`".into());
    if edge.https_port == edge.http_port {
        checker.error(
            &KeyPath::new(["edge", "https_port"]),
            Mark::Value,
            format!("`edge.https_port` and `edge.http_port` are both {}", edge.http_port),
            Vec::new(),
        );
    }
    taken.insert(edge.https_port, "the edge's `https_port`".into());
    for (name, service) in config.services.iter().filter(|(_, service)| service.enabled) {
        for (index, port) in service.ports.iter().enumerate() {
            let path = KeyPath::new(["services", name, "ports"]).index(index).key("host");
            if port.host == 0 || port.container == 0 {
                checker.error(&path, Mark::Value, "port 0 cannot be published", Vec::new());
                continue;
            }
            let owner = format!("service `{name}`");
            if let Some(previous) = taken.get(&port.host) {
                checker.error(
                    &path,
                    Mark::Value,
                    format!("host port {} is used by {previous} and {owner}", port.host),
                    vec!["each host port can be published once; pick another `host` port".into()],
                );
            } else {
                taken.insert(port.host, owner);
            }
        }
    }
}

fn sites(checker: &mut Checker, config: &Config) {
    let mut domains: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, site) in config.sites.iter().filter(|(_, site)| site.enabled) {
        let path = KeyPath::new(["sites", name]);
        if !is_object_name(name) {
            checker.error(
                &path,
                Mark::Key,
                format!("invalid site name `{name}`"),
                vec!["use lower-case letters, digits, `_` and `-`: it names the site's log files".into()],
            );
        }
        if let Some(problem) = domain_problem(&site.domain) {
            checker.error(
                &path.key("domain"),
                Mark::Value,
                format!("invalid domain name `{}`: {problem}", site.domain),
                vec!["a domain is lower-case labels of letters, digits and `-` joined by dots, like `app.masstock.fr`"
                    .into()],
            );
        }
        // nginx's default `server_names_hash_bucket_size` (64 on most CPUs) fits names up to ~48
        // characters; longer ones make `nginx -t` fail until the main config raises it.
        if site.domain.len() > 48 {
            checker.warn(
                &path.key("domain"),
                Mark::Value,
                format!("domain `{}` is {} characters long", site.domain, site.domain.len()),
                vec!["add `server_names_hash_bucket_size 128;` to the `http` block of nginx.conf".into()],
            );
        }
        if let Some(other) = domains.insert(&site.domain, name) {
            checker.error(
                &path.key("domain"),
                Mark::Value,
                format!("domain `{}` is served by both sites `{other}` and `{name}`", site.domain),
                Vec::new(),
            );
        }
        if let Some(problem) = nginx_value_problem(&site.content_security_policy) {
            checker.error(
                &path.key("content_security_policy"),
                Mark::Value,
                format!("invalid Content-Security-Policy: {problem}"),
                Vec::new(),
            );
        }
        match config.services.get(&site.service) {
            None => {
                let mut hints = Vec::new();
                if let Some(closest) = closest(&site.service, config.services.keys().map(String::as_str)) {
                    hints.push(format!("did you mean `{closest}`?"));
                }
                checker.error(
                    &path.key("service"),
                    Mark::Value,
                    format!("site `{name}` routes to unknown service `{}`", site.service),
                    hints,
                );
            }
            Some(service) if !service.enabled => checker.error(
                &path.key("service"),
                Mark::Value,
                format!(
                    "site `{name}` routes to `{}`, which is disabled in environment `{}`",
                    site.service, checker.environment
                ),
                vec![format!(
                    "disable the site too: `[environments.{}.sites.{name}] enabled = false`",
                    checker.environment
                )],
            ),
            Some(service) => {
                let found = match site.port {
                    Some(container) => service.ports.iter().any(|port| port.container == container),
                    None => !service.ports.is_empty(),
                };
                if !found {
                    checker.error(
                        &path.key("service"),
                        Mark::Value,
                        format!(
                            "site `{name}` routes to `{}`, which publishes no {}port",
                            site.service,
                            site.port.map_or(String::new(), |port| format!("container {port} "))
                        ),
                        vec![format!(
                            "add `ports = [{{ host = <port>, container = <port> }}]` to `[services.{}]`",
                            site.service
                        )],
                    );
                }
            }
        }
    }
}

fn edge(checker: &mut Checker, config: &Config) {
    let edge = &config.edge;
    let path = KeyPath::new(["edge"]);
    for (key, command) in [("test_command", &edge.test_command), ("reload_command", &edge.reload_command)] {
        if command.is_empty() || command.iter().any(String::is_empty) {
            checker.error(&path.key(key), Mark::Value, format!("`edge.{key}` is empty"), Vec::new());
        }
    }
    if edge.upstream_host.is_ipv6() {
        checker.error(
            &path.key("upstream_host"),
            Mark::Value,
            format!("`edge.upstream_host` must be an IPv4 address, not `{}`", edge.upstream_host),
            vec!["Docker publishes the ports on IPv4 here: use `127.0.0.1`".into()],
        );
    } else if !edge.upstream_host.is_loopback() {
        checker.warn(
            &path.key("upstream_host"),
            Mark::Value,
            format!(
                "services are published on `{}`, not loopback: they are reachable without the edge",
                edge.upstream_host
            ),
            vec!["use `127.0.0.1` so that only nginx (TLS, headers, rate limits) faces the network".into()],
        );
    }
    if let Some(problem) = nginx_value_problem(&edge.hsts) {
        checker.error(&path.key("hsts"), Mark::Value, format!("invalid `hsts`: {problem}"), Vec::new());
    }
    if edge.hsts.trim().is_empty() {
        checker.warn(
            &path.key("hsts"),
            Mark::Value,
            "`edge.hsts` is empty: no Strict-Transport-Security header is sent",
            vec!["use `max-age=31536000; includeSubDomains`, as the reference does".into()],
        );
    }
    let mut seen_headers: Vec<String> = Vec::new();
    for (name, value) in &edge.security_headers {
        let header_path = path.key("security_headers").key(name);
        if seen_headers.contains(&name.to_ascii_lowercase()) {
            checker.error(
                &header_path,
                Mark::Key,
                format!("header `{name}` is set twice (header names ignore case)"),
                Vec::new(),
            );
        }
        seen_headers.push(name.to_ascii_lowercase());
        if !is_token(name) {
            checker.error(&header_path, Mark::Key, format!("invalid header name `{name}`"), Vec::new());
        }
        if ["content-security-policy", "strict-transport-security"].contains(&name.to_ascii_lowercase().as_str()) {
            checker.error(
                &header_path,
                Mark::Key,
                format!("`{name}` is set per site (`content_security_policy`) or by `edge.hsts`"),
                Vec::new(),
            );
        }
        if let Some(problem) = nginx_value_problem(value) {
            checker.error(
                &header_path,
                Mark::Value,
                format!("invalid value for header `{name}`: {problem}"),
                Vec::new(),
            );
        }
    }
    if edge.limit_req.zone_size.bytes < 32 << 10 {
        checker.error(
            &path.key("limit_req").key("zone_size"),
            Mark::Value,
            format!("`edge.limit_req.zone_size` {} is below nginx's minimum of 32k", edge.limit_req.zone_size),
            vec!["`10m` holds about 160 000 client addresses".into()],
        );
    }
    if edge.limit_req.rate.to_nginx().is_none() {
        checker.error(
            &path.key("limit_req").key("rate"),
            Mark::Value,
            format!("nginx cannot express the rate `{}`", edge.limit_req.rate),
            vec!["nginx counts per second or per minute: use `<n>/1s` or `<n>/60s`".into()],
        );
    }
}

fn cors(checker: &mut Checker, config: &Config) {
    let cors = &config.cors;
    let path = KeyPath::new(["cors"]);
    if cors.origins.is_empty() && config.sites.values().any(|site| site.enabled && site.cors) {
        checker.error(&path.key("origins"), Mark::Value, "a site answers CORS but `cors.origins` is empty", Vec::new());
    }
    for (index, origin) in cors.origins.iter().enumerate() {
        if cors.origins[..index].contains(origin) {
            checker.error(
                &path.key("origins").index(index),
                Mark::Value,
                format!("origin `{origin}` is listed twice"),
                Vec::new(),
            );
        }
        if let Some(problem) = origin_problem(origin) {
            checker.error(
                &path.key("origins").index(index),
                Mark::Value,
                format!("invalid origin `{origin}`: {problem}"),
                vec!["an origin is `scheme://host[:port]`, like `https://app.masstock.fr`, without a path".into()],
            );
        }
    }

    for (key, values) in [("methods", &cors.methods), ("headers", &cors.headers)] {
        for (index, value) in values.iter().enumerate() {
            let invalid = !is_token(value) || (key == "methods" && value.bytes().any(|byte| byte.is_ascii_lowercase()));
            if invalid {
                checker.error(
                    &path.key(key).index(index),
                    Mark::Value,
                    format!("invalid {} `{value}`", if key == "methods" { "method" } else { "header name" }),
                    if key == "methods" { vec!["methods are upper case, like `POST`".into()] } else { Vec::new() },
                );
            }
        }
    }
    let limits = &config.rate_limits;
    if !config.services.get(&limits.service).is_some_and(|service| service.enabled) {
        checker.error(
            &KeyPath::new(["rate_limits", "service"]),
            Mark::Value,
            format!("`rate_limits.service` names `{}`, which is not an enabled service", limits.service),
            Vec::new(),
        );
    }
    let lifetime = config.sessions.absolute_lifetime;
    if !(MIN_SESSION_LIFETIME..=MAX_SESSION_LIFETIME).contains(&lifetime) {
        checker.error(
            &KeyPath::new(["sessions", "absolute_lifetime"]),
            Mark::Value,
            format!(
                "a session lifetime of `{lifetime}` is outside `{MIN_SESSION_LIFETIME}` to `{MAX_SESSION_LIFETIME}`"
            ),
            vec!["OWASP suggests hours for sensitive applications and weeks at most; the default is `30d`".into()],
        );
    }
}

/// The shortest absolute session lifetime: the access token alone lasts 15 minutes.
const MIN_SESSION_LIFETIME: Duration = Duration::from_secs(3_600);
/// The longest: a year.
const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// Why `origin` is not `scheme://host[:port]`, if it is not.
fn origin_problem(origin: &str) -> Option<String> {
    if origin == "*" {
        return Some("`*` would let any site call the API; list the origins".into());
    }
    let Some((scheme, rest)) = origin.split_once("://") else { return Some("no `://`".into()) };
    if scheme != "https" && scheme != "http" {
        return Some(format!("scheme `{scheme}` is not http or https"));
    }
    if rest.contains('/') {
        return Some("an origin has no path, not even a trailing `/`".into());
    }
    let host = match rest.rsplit_once(':') {
        Some((host, port)) => {
            // Browsers send the port as digits without a leading zero, and omit the default one.
            if !port.bytes().all(|byte| byte.is_ascii_digit()) || port.starts_with('0') || port.parse::<u16>().is_err()
            {
                return Some(format!("port `{port}` is not written as a browser sends it"));
            }
            if (scheme, port) == ("https", "443") || (scheme, port) == ("http", "80") {
                return Some(format!("browsers leave the default port `{port}` out of the origin"));
            }
            host
        }
        None => rest,
    };
    if host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    domain_problem(host)
}

fn acme(checker: &mut Checker, config: &Config) {
    let acme = &config.acme;
    let path = KeyPath::new(["acme"]);
    if !acme.directory.starts_with("https://") {
        checker.error(
            &path.key("directory"),
            Mark::Value,
            format!("ACME directory `{}` must be an https URL", acme.directory),
            vec!["Let's Encrypt: `https://acme-v02.api.letsencrypt.org/directory`; staging: `https://acme-staging-v02.api.letsencrypt.org/directory`".into()],
        );
    }
    let email_valid = acme.email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !local.contains(char::is_whitespace) && domain_problem(domain).is_none()
    });
    if let Some(name) = &acme.cert_name {
        if name.is_empty()
            || name.contains(['/', '\\'])
            || name.starts_with('.')
            || path_problem(std::path::Path::new(name)).is_some()
        {
            checker.error(
                &path.key("cert_name"),
                Mark::Value,
                format!("invalid certificate name `{name}`"),
                vec!["it names a folder under `live/`: no `/`, not starting with `.`".into()],
            );
        }
    }
    if !email_valid {
        checker.error(&path.key("email"), Mark::Value, format!("invalid e-mail address `{}`", acme.email), Vec::new());
    }
    if let Some(staging) = acme.staging_directory.as_ref().filter(|url| !url.starts_with("https://")) {
        checker.error(
            &path.key("staging_directory"),
            Mark::Value,
            format!("ACME staging directory `{staging}` must be an https URL"),
            vec!["Let's Encrypt staging: `https://acme-staging-v02.api.letsencrypt.org/directory`".into()],
        );
    }
    match (&acme.eab_kid, &acme.eab_hmac_key) {
        (Some(_), None) | (None, Some(_)) => {
            let missing = if acme.eab_kid.is_none() { "eab_kid" } else { "eab_hmac_key" };
            checker.error(
                &path.key(if acme.eab_kid.is_none() { "eab_hmac_key" } else { "eab_kid" }),
                Mark::Key,
                format!("External Account Binding needs both `eab_kid` and `eab_hmac_key`; `{missing}` is missing"),
                Vec::new(),
            );
        }
        (Some(_), Some(key)) if eab_key_reference(key).is_none() => checker.secret_error(
            &path.key("eab_hmac_key"),
            "the EAB HMAC key is a secret: write a reference to the env file, not the key".to_owned(),
            vec![
                "e.g. `eab_hmac_key = \"${ACME_EAB_HMAC_KEY}\"`, with `ACME_EAB_HMAC_KEY=<key>` in the env file".into()
            ],
        ),
        _ => {}
    }
    if let Some(dir) = &acme.systemd_dir {
        if dir.as_os_str().is_empty() {
            checker.error(
                &path.key("systemd_dir"),
                Mark::Value,
                "`acme.systemd_dir` is empty",
                vec![format!("leave it out for `{}`", super::DEFAULT_SYSTEMD_DIR)],
            );
        } else if path_problem(dir).is_some() {
            checker.error(
                &path.key("systemd_dir"),
                Mark::Value,
                format!("invalid systemd folder `{}`", dir.display()),
                vec!["use a path without spaces, control characters or `;{}#$\\` quotes".into()],
            );
        }
    }
}

/// Whether a variable's name says it holds a secret: it contains `KEY`, `SECRET`, `PASSWORD` or
/// `TOKEN` (in any case), as `AWS_SECRET_ACCESS_KEY`, `B2_ACCOUNT_KEY` or `RESTIC_REST_PASSWORD`.
#[must_use]
pub fn looks_secret(variable: &str) -> bool {
    let upper = variable.to_ascii_uppercase();
    ["KEY", "SECRET", "PASSWORD", "TOKEN"].iter().any(|word| upper.contains(word))
}

/// Why `component` cannot be backed up in this environment, when it cannot.
pub(crate) fn component_unavailable(config: &Config, component: Component) -> Option<String> {
    let enabled = |name: &str| config.services.get(name).is_some_and(|service| service.enabled);
    match component {
        Component::Redis if !enabled("redis") => Some("service `redis` is not enabled in this environment".into()),
        Component::N8n if !enabled("n8n") => Some("service `n8n` is not enabled in this environment".into()),
        Component::Uploads => {
            let mounted = config
                .services
                .values()
                .filter(|service| service.enabled)
                .any(|service| service.volumes.iter().any(|mount| mount.source == "uploads"));
            if !config.volumes.contains_key("uploads") {
                Some("volume `uploads` is not declared under `[volumes]`".into())
            } else if !mounted {
                Some("no enabled service mounts volume `uploads`".into())
            } else {
                None
            }
        }
        Component::Postgres => {
            let has_database = config
                .services
                .values()
                .filter(|service| service.enabled)
                .any(|service| service.env.contains_key("DATABASE_URL"));
            (!has_database).then(|| "no enabled service has a `DATABASE_URL` to dump".into())
        }
        Component::Redis | Component::N8n => None,
    }
}

/// The password of a `scheme://user:password@host` URL inside a restic location (`rest:https://…`).
fn url_password(location: &str) -> Option<&str> {
    let (_, rest) = location.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

fn backup(checker: &mut Checker, config: &Config) {
    let Some(backup) = &config.backup else { return };
    let path = KeyPath::new(["backup"]);
    if backup.repository.trim().is_empty() {
        checker.error(
            &path.key("repository"),
            Mark::Value,
            "`backup.repository` is empty",
            vec!["a folder (`/var/backups/masstock/restic`), or a restic backend such as `sftp:user@host:/srv/restic`"
                .into()],
        );
    } else if has_control(&backup.repository) {
        checker.error(
            &path.key("repository"),
            Mark::Value,
            "`backup.repository` holds a control character",
            Vec::new(),
        );
    } else if url_password(&backup.repository).is_some_and(|password| eab_key_reference(password).is_none()) {
        checker.secret_error(
            &path.key("repository"),
            "the repository URL holds a password: write a reference to the env file, not the password",
            vec!["`repository = \"rest:https://user:${RESTIC_REST_PASSWORD}@host:8000/\"`, with the value in the env file".into()],
        );
    }
    if eab_key_reference(&backup.password).is_none() {
        checker.secret_error(
            &path.key("password"),
            "the repository password is a secret: write a reference to the env file, not the password",
            vec!["`password = \"${RESTIC_PASSWORD}\"`; `masstockctl secrets generate --force` adds `RESTIC_PASSWORD` to the env file".into()],
        );
    }
    for (variable, value) in &backup.env {
        let variable_path = path.key("env").key(variable);
        if !secrets::is_variable_name(variable) {
            checker.error(
                &variable_path,
                Mark::Key,
                format!("invalid variable name `{}`", variable.escape_debug()),
                vec!["letters, digits and `_`, not starting with a digit".into()],
            );
        }
        if variable.starts_with("RESTIC_") {
            checker.error(
                &variable_path,
                Mark::Key,
                format!("`{variable}` is masstockctl's to set: restic's repository and password come from `repository` and `password`"),
                vec!["remove it; restic's own settings are `options` (its `-o`)".into()],
            );
        } else if looks_secret(variable) && eab_key_reference(value).is_none() {
            checker.secret_error(
                &variable_path,
                format!("`{variable}` looks like a secret: write a reference to the env file, not its value"),
                vec![format!("`{variable} = \"${{{variable}}}\"`, with `{variable}=<value>` in the env file")],
            );
        } else if let Err(problem) = secrets::references_in(value) {
            checker.error(&variable_path, Mark::Value, problem.to_string(), Vec::new());
        } else if has_control(value) {
            checker.error(&variable_path, Mark::Value, format!("`{variable}` holds a control character"), Vec::new());
        }
    }
    for (name, value) in &backup.options {
        if name.is_empty() || has_control(name) || has_control(value) || name.contains('=') {
            checker.error(
                &path.key("options").key(name),
                Mark::Key,
                format!("invalid restic option `{}`", name.escape_debug()),
                vec!["restic's `-o name=value`, such as `sftp.command = \"ssh backup@host -s sftp\"`".into()],
            );
        }
    }
    if backup.include.as_ref().is_some_and(Vec::is_empty) {
        checker.error(
            &path.key("include"),
            Mark::Value,
            "`backup.include` is empty: `backup` would store nothing",
            vec!["leave it out for every component this environment has".into()],
        );
    }
    if let Some(include) = &backup.include {
        let mut seen = Vec::new();
        for (index, name) in include.iter().enumerate() {
            let item = path.key("include").index(index);
            let Some(component) = Component::parse(name) else {
                let names: Vec<&str> = Component::ALL.iter().map(|component| component.as_str()).collect();
                let mut hints = Vec::new();
                if let Some(closest) = closest(name, names.iter().copied()) {
                    hints.push(format!("did you mean `{closest}`?"));
                }
                hints.push(format!("components: {}", quoted_list(&names)));
                checker.error(&item, Mark::Value, format!("unknown component `{}`", name.escape_debug()), hints);
                continue;
            };
            if seen.contains(&component) {
                checker.error(&item, Mark::Value, format!("component `{component}` is listed twice"), Vec::new());
                continue;
            }
            seen.push(component);
            if let Some(reason) = component_unavailable(config, component) {
                checker.error(
                    &item,
                    Mark::Value,
                    format!("component `{component}` cannot be backed up: {reason}"),
                    vec![format!("remove it from `backup.include` in environment `{}`", checker.environment)],
                );
            }
        }
    }
    if backup.keep_daily == 0 && backup.keep_weekly == 0 && backup.keep_monthly == 0 {
        checker.error(
            &path.key("keep_daily"),
            Mark::Key,
            "`keep_daily`, `keep_weekly` and `keep_monthly` are all 0: `forget` would remove every snapshot",
            vec!["keep at least one, such as `keep_daily = 7`".into()],
        );
    }
    for (key, value) in [("schedule", &backup.schedule), ("drill_schedule", &backup.drill_schedule)] {
        if value.trim().is_empty() || has_control(value) {
            checker.error(
                &path.key(key),
                Mark::Value,
                format!("`backup.{key}` must be one non-empty line"),
                vec!["systemd's `OnCalendar` syntax, such as `\"*-*-* 03:00:00\"` or `\"Sun *-*-* 04:30:00\"`".into()],
            );
        }
    }
    if let Some(dir) = &backup.systemd_dir {
        if dir.as_os_str().is_empty() || path_problem(dir).is_some() {
            checker.error(
                &path.key("systemd_dir"),
                Mark::Value,
                format!("invalid systemd folder `{}`", dir.display()),
                vec![format!(
                    "a path without spaces, control characters or `;{{}}#$\\` quotes; leave it out for `{}`",
                    super::DEFAULT_SYSTEMD_DIR
                )],
            );
        }
    }
}

/// The env-file variable `eab_hmac_key` names when it is exactly one `${NAME}` reference.
#[must_use]
pub fn eab_key_reference(value: &str) -> Option<String> {
    let name = value.strip_prefix("${")?.strip_suffix('}')?;
    secrets::is_variable_name(name).then(|| name.to_owned())
}

/// Finds every `${NAME}` and checks it against the env file, when the env file exists.
fn secrets(checker: &mut Checker, config: &Config, check: EnvFileCheck) -> Secrets {
    let mut references = Vec::new();
    for (name, service) in config.services.iter().filter(|(_, service)| service.enabled) {
        for (variable, value) in &service.env {
            for secret in secrets::references_in(value).unwrap_or_default() {
                references
                    .push(SecretReference { name: secret, path: KeyPath::new(["services", name, "env", variable]) });
            }
        }
    }
    if let Some(name) = config.acme.eab_hmac_key.as_deref().and_then(eab_key_reference) {
        references.push(SecretReference { name, path: KeyPath::new(["acme", "eab_hmac_key"]) });
    }
    if let Some(backup) = &config.backup {
        if let Some(name) = eab_key_reference(&backup.password) {
            references.push(SecretReference { name, path: KeyPath::new(["backup", "password"]) });
        }
        for (variable, value) in &backup.env {
            for secret in secrets::references_in(value).unwrap_or_default() {
                references.push(SecretReference { name: secret, path: KeyPath::new(["backup", "env", variable]) });
            }
        }
        // A `rest:` URL's password can only be in the URL (restic 0.14).
        for secret in secrets::references_in(&backup.repository).unwrap_or_default() {
            references.push(SecretReference { name: secret, path: KeyPath::new(["backup", "repository"]) });
        }
    }
    let env_file_path = &config.project.env_file;
    if check == EnvFileCheck::Skip {
        return Secrets { references, env_file: None };
    }
    let env_file = match EnvFile::read(env_file_path) {
        Ok(env_file) => env_file,
        Err(error) => {
            let cause = std::error::Error::source(&error).map(|source| format!(": {source}")).unwrap_or_default();
            checker.error(
                &KeyPath::new(["project", "env_file"]),
                Mark::Value,
                format!("{error}{cause}"),
                vec!["masstockctl reads it to check the secrets deploy.toml refers to: run as its owner, or fix its permissions".into()],
            );
            None
        }
    };
    match &env_file {
        None if checker.errors.is_empty() => checker.warn(
            &KeyPath::new(["project", "env_file"]),
            Mark::Value,
            format!("env file `{}` does not exist yet, so secrets are not checked", env_file_path.display()),
            vec![format!("create it with `masstockctl --env {} secrets generate`", checker.environment)],
        ),
        None => {}
        Some(file) => {
            for reference in &references {
                match file.get(&reference.name) {
                    None => checker.error(
                        &reference.path,
                        Mark::Value,
                        format!("secret `{}` is not in `{}`", reference.name, env_file_path.display()),
                        vec![format!(
                            "add it with `masstockctl --env {} secrets generate --force` (existing values are kept)",
                            checker.environment
                        )],
                    ),
                    Some(value) if breaks_url(config, reference, value) => checker.error(
                        &reference.path,
                        Mark::Value,
                        format!("secret `{}` holds characters that break the URL it is part of", reference.name),
                        vec![
                            "a secret inside a URL may only hold letters, digits and `-._~+=`".into(),
                            format!(
                                "generate a URL-safe one: remove `{}` from the env file, then `masstockctl --env {} secrets generate --force`",
                                reference.name, checker.environment
                            ),
                        ],
                    ),
                    Some("") => checker.warn(
                        &reference.path,
                        Mark::Value,
                        format!("secret `{}` is empty in `{}`", reference.name, env_file_path.display()),
                        vec!["fill it in before `deploy`".into()],
                    ),
                    Some(_) => {}
                }
            }
        }
    }
    Secrets { references, env_file }
}

/// Whether `value` for `reference` breaks the URL it is spliced into ([`secrets::breaks_url`]).
fn breaks_url(config: &Config, reference: &SecretReference, value: &str) -> bool {
    let [_, service, _, variable] = reference.path.0.as_slice() else { return false };
    let (super::Segment::Key(service), super::Segment::Key(variable)) = (service, variable) else { return false };
    config
        .services
        .get(service)
        .and_then(|service| service.env.get(variable))
        .is_some_and(|template| secrets::breaks_url(template, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_names() {
        for secret in ["AWS_SECRET_ACCESS_KEY", "B2_ACCOUNT_KEY", "RESTIC_REST_PASSWORD", "GOOGLE_token", "api_key"] {
            assert!(looks_secret(secret), "{secret}");
        }
        for plain in ["AWS_ACCESS_ID", "AWS_DEFAULT_REGION", "B2_ACCOUNT_ID", "RESTIC_CACHE_DIR"] {
            assert!(!looks_secret(plain), "{plain}");
        }
    }

    #[test]
    fn domains() {
        assert_eq!(domain_problem("app.masstock.fr"), None);
        assert_eq!(domain_problem("app.masstock.localhost"), None);
        for bad in ["masstock", "App.masstock.fr", "a..b", "-a.fr", "a_b.fr", ".a.fr", "a.fr."] {
            assert!(domain_problem(bad).is_some(), "`{bad}` should be rejected");
        }
    }

    #[test]
    fn images() {
        for good in [
            "redis:7-alpine",
            "n8nio/n8n:1.70.3",
            "masstock/api",
            "ghcr.io/org/app:v1.2",
            "localhost:5000/app:latest",
            "redis@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(image_problem(good), None, "`{good}` is valid");
        }
        for bad in
            ["", "Redis", "n8nio/n8n:${tag", "n8nio/n8n:$tag", "a b", "redis:", "redis@sha256:12", "-x/y", "a//b"]
        {
            assert!(image_problem(bad).is_some(), "`{bad}` should be rejected");
        }
    }

    #[test]
    fn origins() {
        assert_eq!(origin_problem("https://app.masstock.fr"), None);
        assert_eq!(origin_problem("https://app.masstock.localhost:8443"), None);
        assert_eq!(origin_problem("http://localhost:5173"), None);
        for bad in [
            "*",
            "app.masstock.fr",
            "ftp://a.fr",
            "https://a.fr/",
            "https://a.fr:0",
            "https://a.fr:x",
            "https://a.fr:+443",
            "https://a.fr:0443",
            "https://a.fr:443",
            "http://a.fr:80",
        ] {
            assert!(origin_problem(bad).is_some(), "`{bad}` should be rejected");
        }
    }
}
