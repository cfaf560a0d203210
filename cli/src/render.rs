//! Rendering a [`Stack`] into the files other tools read: the host nginx site and the compose file.
//!
//! The templates are embedded in the binary. Rendering is a pure function of the stack: the same
//! deploy.toml gives the same bytes, and no secret value is ever read, let alone written.
//!
//! The templates are `templates/nginx-site.conf.tera` (the host nginx site, included in nginx's
//! `http` block) and `templates/docker-compose.yml.tera`, embedded with `include_str!` as
//! [`TEMPLATES`]; `RenderError` names the template and the line.
//!
//! # The compose file
//!
//! There is no `env_file:` and no secret in it, nor anything compose would interpolate from one.
//! Each service's `environment:` lists exactly the variables it declares plus the derived ones,
//! except that a variable whose value refers to a secret is rendered as
//! `NAME_FILE: /run/secrets/NAME`, as deploy creates it, with the service's secret files mounted
//! read-only at `/run/secrets` from `<state_dir>/secrets/<project>/<service>/current`, the version deploy
//! wrote last (`deploy/secret_files.rs`). So `docker-compose config` shows no secret, and
//! `docker-compose up` needs a deploy (or its files) first; each container still gets only the
//! secrets it declares.
//! Each service's lockdown (`[hardening]`, see `crate::deploy::spec`) is rendered with compose's
//! keys: `read_only`, `tmpfs`, `cap_drop`, `cap_add`, `security_opt`, `mem_limit` with
//! `memswap_limit` equal to it, `cpus`, `pids_limit` and `logging`.
//! Volume and network names are pinned with `name:` to DESIGN's names (`redis_data`,
//! `masstock_network`), so they match what deploy creates. There is no top-level `name:` or
//! `version:`, because docker-compose 1.29 rejects the first and v2 warns about the second.
//!
//! # Health checks
//!
//! `command` (exec), `shell` (`CMD-SHELL`) or `http` (a path on a container port). In images we
//! build, which have no shell and no wget, an `http` check runs the service's own binary:
//! `<binary> healthcheck --url URL` ([`health_test_command`]); that is the contract for the service
//! crates. In third-party images it runs `wget --spider`. Durations are written in seconds for
//! compose because Go durations have no `d` unit.
//!
//! # The nginx site
//!
//! - Each domain gets a port-80 server and a 443 server. Each redirect names its own host rather
//!   than `$host`, so a foreign Host header cannot turn it into an open redirect.
//! - On the HTTPS port, a `default_server` with `ssl_reject_handshake` refuses names that no site
//!   serves; otherwise nginx would answer them with the first site, the API.
//!   `edge.reject_unknown_hosts = false` turns this off when another site on the host owns that
//!   default.
//! - nginx is the first hop, so it sets `X-Forwarded-For` to the peer address rather than appending
//!   to what the client sent: a forged header cannot dodge the API's per-address limits.
//!   `server_tokens` is off. `limit_req_status 429` sits inside the API location, so other sites on
//!   the host keep their settings. `/metrics` answers 404.
//! - TLS follows Mozilla's intermediate profile (guidelines 6.0: TLS 1.2 and 1.3, the ECDHE suites
//!   only, so no dhparam file; curves `X25519:prime256v1:secp384r1`, as X25519MLKEM768 needs
//!   OpenSSL 3.5; session cache, no tickets; the server's cipher order with `PrioritizeChaCha`,
//!   where Mozilla leaves the order to the client: every suite is strong either way, testssl.sh
//!   rates a server without an order HIGH, and a client that puts `ChaCha20` first, one without AES
//!   hardware, still gets it) in every server that listens with `ssl`, the
//!   rejecting default server included, through one Tera macro (`tls_profile`). nginx takes a
//!   listening socket's protocols, ciphers, curves and session settings from the port's default
//!   server, before SNI picks a site, and whatever a server leaves unset from the host's `http`
//!   block, where Debian's main nginx.conf enables TLS 1.0 and 1.1: so every directive of the
//!   profile is set in every server, and the host's main config cannot weaken it. With
//!   `edge.reject_unknown_hosts = false` the port's default server is the first site, unless
//!   another site of the host claims it, whose settings then decide. OCSP stapling (Let's Encrypt
//!   ended OCSP in 2025) and 0-RTT (replayable) are set off rather than inherited. `http2` uses
//!   the `listen … http2` syntax that nginx 1.22 understands.
//! - Security headers use `always`. Because `add_header` inside an `if` replaces the headers
//!   inherited from the server block, the preflight block repeats them.
//! - The allowed CORS origins are a `map`: an allowed origin is echoed back, and any other origin
//!   gets a 204 with no `Access-Control-*` header at all (nginx drops a header whose value is
//!   empty).
//! - Every `map`, upstream and zone is prefixed with the project name (with `-` made `_`), so the
//!   site can sit beside other sites on the host; upstreams are named per service and port, so one
//!   service can sit behind two sites on two ports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Value};
use tera::Tera;

use crate::config::{HealthTest, Service, Stack};

/// Mozilla's "intermediate" TLS 1.2 suites (guidelines 6.0, ECDHE only). TLS 1.3's are OpenSSL's
/// default three, which are Mozilla's.
const INTERMEDIATE_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// The embedded templates: (name, source).
pub const TEMPLATES: &[(&str, &str)] = &[
    ("nginx-site.conf", include_str!("../../templates/nginx-site.conf.tera")),
    ("docker-compose.yml", include_str!("../../templates/docker-compose.yml.tera")),
];

/// The systemd units of `certs install-timer`: (name, source). Apart from [`TEMPLATES`] because
/// they depend on where masstockctl runs from, which `render` must not.
pub const TIMER_TEMPLATES: &[(&str, &str)] = &[
    ("masstock-certs.service", include_str!("../../templates/masstock-certs.service.tera")),
    ("masstock-certs.timer", include_str!("../../templates/masstock-certs.timer.tera")),
];

/// Renders the certificate renewal service and timer: the service runs
/// `<masstockctl> --config <deploy.toml> --env <environment> certs renew`, every path absolute.
pub fn render_certs_timer(stack: &Stack, masstockctl: &std::path::Path) -> Result<Vec<RenderedFile>, RenderError> {
    let tera = load(TIMER_TEMPLATES)?;
    let config = crate::config::absolute(&stack.path);
    let words = [
        masstockctl.display().to_string(),
        "--config".to_owned(),
        config.display().to_string(),
        "--env".to_owned(),
        stack.environment.clone(),
        "certs".to_owned(),
        "renew".to_owned(),
    ];
    let exec_start = words.iter().map(|word| systemd_word(word)).collect::<Vec<_>>().join(" ");
    let context = json!({ "project": stack.config.project.name, "exec_start": exec_start });
    TIMER_TEMPLATES
        .iter()
        .map(|(name, _)| {
            Ok(RenderedFile {
                path: PathBuf::from(name),
                contents: render_one(&tera, TIMER_TEMPLATES, name, &context)?,
            })
        })
        .collect()
}

/// The systemd units of `backup install-timer`: (name, source), apart from [`TEMPLATES`] for the
/// same reason as [`TIMER_TEMPLATES`].
pub const BACKUP_TIMER_TEMPLATES: &[(&str, &str)] = &[
    ("masstock-backup.service", include_str!("../../templates/masstock-backup.service.tera")),
    ("masstock-backup.timer", include_str!("../../templates/masstock-backup.timer.tera")),
    ("masstock-drill.service", include_str!("../../templates/masstock-drill.service.tera")),
    ("masstock-drill.timer", include_str!("../../templates/masstock-drill.timer.tera")),
];

/// Renders the backup and drill services and timers: the services run `<masstockctl> --config
/// <deploy.toml> --env <environment> backup` and `… restore --drill`, every path absolute; the
/// timers run them on `backup`'s `schedule` and `drill_schedule`.
pub fn render_backup_timers(
    stack: &Stack,
    backup: &crate::config::Backup,
    masstockctl: &std::path::Path,
) -> Result<Vec<RenderedFile>, RenderError> {
    let tera = load(BACKUP_TIMER_TEMPLATES)?;
    let config = crate::config::absolute(&stack.path);
    let invocation = [
        masstockctl.display().to_string(),
        "--config".to_owned(),
        config.display().to_string(),
        "--env".to_owned(),
        stack.environment.clone(),
    ];
    let exec_start = |command: &[&str]| {
        invocation
            .iter()
            .map(String::as_str)
            .chain(command.iter().copied())
            .map(systemd_word)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let context = |exec_start: String| {
        json!({
            "project": stack.config.project.name,
            "exec_start": exec_start,
            "schedule": backup.schedule,
            "drill_schedule": backup.drill_schedule,
        })
    };
    let backup_context = context(exec_start(&["backup"]));
    let drill_context = context(exec_start(&["restore", "--drill"]));
    BACKUP_TIMER_TEMPLATES
        .iter()
        .map(|(name, _)| {
            let context = if name.starts_with("masstock-drill") { &drill_context } else { &backup_context };
            Ok(RenderedFile {
                path: PathBuf::from(name),
                contents: render_one(&tera, BACKUP_TIMER_TEMPLATES, name, context)?,
            })
        })
        .collect()
}

/// One word of a systemd `ExecStart=`: `%` (specifiers) and `$` (variables) doubled, and the word
/// double-quoted when it holds anything but letters, digits and `/._-+:@=,`.
fn systemd_word(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    if !escaped.is_empty() && escaped.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@=,%$".contains(c)) {
        escaped
    } else {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A file to write, relative to the output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: PathBuf,
    pub contents: String,
}

#[derive(Debug, thiserror::Error)]
#[error("failed to render template `{template}`{}: {message}", line.map(|line| format!(" near line {line}")).unwrap_or_default())]
pub struct RenderError {
    pub template: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Renders every file of the stack.
pub fn render_stack(stack: &Stack) -> Result<Vec<RenderedFile>, RenderError> {
    render_with(TEMPLATES, stack)
}

/// Renders `stack` with `templates` (the embedded ones, or others in tests).
pub fn render_with(templates: &[(&str, &str)], stack: &Stack) -> Result<Vec<RenderedFile>, RenderError> {
    let tera = load(templates)?;
    let site_name = stack
        .config
        .edge
        .site_file
        .file_name()
        .map_or_else(|| format!("{}.conf", stack.config.project.name), |name| name.to_string_lossy().into_owned());
    Ok(vec![
        RenderedFile {
            path: PathBuf::from("nginx").join(site_name),
            contents: render_one(&tera, templates, "nginx-site.conf", &nginx_context(stack, &BTreeMap::new()))?,
        },
        RenderedFile {
            path: PathBuf::from("docker-compose.yml"),
            contents: render_one(&tera, templates, "docker-compose.yml", &compose_context(stack))?,
        },
    ])
}

/// The nginx site alone, with some services' traffic sent to other host ports than their
/// declared ones: `deploy` points a service at its standby container while it replaces the
/// primary, then renders the site again without overrides.
pub fn render_edge_site(stack: &Stack, upstream_overrides: &BTreeMap<String, u16>) -> Result<String, RenderError> {
    let tera = load(TEMPLATES)?;
    render_one(&tera, TEMPLATES, "nginx-site.conf", &nginx_context(stack, upstream_overrides))
}

fn load(templates: &[(&str, &str)]) -> Result<Tera, RenderError> {
    let mut tera = Tera::default();
    tera.add_raw_templates(templates.iter().copied()).map_err(|error| {
        let messages = crate::error::chain(&error);
        // Tera names the failing template in its outer message; pest gives ` --> line:column`.
        let template = templates
            .iter()
            .map(|(name, _)| *name)
            .find(|name| messages.iter().any(|message| message.contains(&format!("'{name}'"))))
            .unwrap_or("?")
            .to_owned();
        let line = messages.iter().find_map(|message| {
            let position = message.split("--> ").nth(1)?;
            position.split(':').next()?.trim().parse().ok()
        });
        RenderError { template, line, message: messages.last().cloned().unwrap_or_default() }
    })?;
    Ok(tera)
}

fn render_one(tera: &Tera, templates: &[(&str, &str)], name: &str, context: &Value) -> Result<String, RenderError> {
    let context = tera::Context::from_value(context.clone()).map_err(|error| RenderError {
        template: name.to_owned(),
        line: None,
        message: error.to_string(),
    })?;
    tera.render(name, &context).map_err(|error| {
        let messages = crate::error::chain(&error);
        let message = messages.last().cloned().unwrap_or_default();
        // Tera's render errors name the variable but not the line: find the first line using it.
        let source = templates.iter().find(|(template, _)| *template == name).map_or("", |(_, source)| source);
        let line = message
            .split('`')
            .nth(1)
            .and_then(|variable| source.lines().position(|line| line.contains(variable)))
            .map(|index| index + 1);
        RenderError { template: name.to_owned(), line, message }
    })
}

fn nginx_context(stack: &Stack, upstream_overrides: &BTreeMap<String, u16>) -> Value {
    let config = &stack.config;
    let edge = &config.edge;
    let project = &config.project.name;
    // nginx variables and zones need an identifier: the project name with `-` made `_`
    // (validation makes it start with a letter).
    let prefix = project.replace('-', "_");
    let upstream_name = |site: &crate::config::Site| {
        let port = stack.upstream_port(site).unwrap_or_default();
        format!("{prefix}_{}_{port}", site.service.replace('-', "_"))
    };
    let mut upstreams = BTreeSet::new();
    let sites: Vec<Value> = stack
        .sites()
        .map(|(name, site)| {
            let port = upstream_overrides
                .get(&site.service)
                .copied()
                .or_else(|| stack.upstream_port(site))
                .unwrap_or_default();
            upstreams.insert((upstream_name(site), format!("{}:{port}", edge.upstream_host)));
            let (certificate, certificate_key) = stack.certificate_paths(&site.domain);
            let mut headers = vec![json!({ "name": "Strict-Transport-Security", "value": edge.hsts })];
            headers.extend(edge.security_headers.iter().map(|(name, value)| json!({ "name": name, "value": value })));
            headers.push(json!({ "name": "Content-Security-Policy", "value": site.content_security_policy }));
            json!({
                "name": name,
                "domain": site.domain,
                "service": site.service,
                "upstream": upstream_name(site),
                "certificate": certificate,
                "certificate_key": certificate_key,
                "cors": site.cors,
                "websocket": site.websocket,
                "limit_req": edge.limit_req.enabled && site.service == config.rate_limits.service,
                "client_max_body_size": site.client_max_body_size.as_ref().map(ToString::to_string),
                "headers": headers,
            })
        })
        .collect();
    let https_suffix = if edge.https_port == 443 { String::new() } else { format!(":{}", edge.https_port) };
    json!({
        "environment": stack.environment,
        "project": project,
        "prefix": prefix,
        "edge": {
            "http_port": edge.http_port,
            "https_port": edge.https_port,
            "https_suffix": https_suffix,
            "ipv6": edge.ipv6,
            "reject_unknown_hosts": edge.reject_unknown_hosts,
            "log_dir": edge.log_dir,
            "hsts": edge.hsts,
            "security_headers": edge.security_headers.iter().map(|(name, value)| json!({ "name": name, "value": value })).collect::<Vec<_>>(),
            "limit_req": {
                "enabled": edge.limit_req.enabled,
                "rate": edge.limit_req.rate.to_nginx(),
                "burst": edge.limit_req.burst,
                "zone_size": edge.limit_req.zone_size.to_string(),
            },
        },
        "tls": { "ciphers": INTERMEDIATE_CIPHERS },
        "acme": { "webroot": config.acme.webroot },
        "cors": {
            "origins": config.cors.origins,
            "methods": config.cors.methods.join(", "),
            "headers": config.cors.headers.join(", "),
            "max_age": config.cors.max_age.as_secs(),
            "credentials": config.cors.credentials,
        },
        "websocket": stack.sites().any(|(_, site)| site.websocket),
        "upstreams": upstreams.into_iter().map(|(name, address)| json!({ "name": name, "address": address })).collect::<Vec<_>>(),
        "sites": sites,
    })
}

/// `$` is compose's interpolation character; outside `environment` every `$` is literal.
fn escape_dollars(text: &str) -> String {
    text.replace('$', "$$")
}

/// Compose and Docker read Go durations, which have no `d` unit: write seconds.
fn go_duration(duration: crate::config::Duration) -> String {
    let millis = duration.0.as_millis();
    if millis % 1000 == 0 {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

fn compose_context(stack: &Stack) -> Value {
    let config = &stack.config;
    let services: Vec<Value> = stack
        .start_order()
        .into_iter()
        .map(|name| {
            let service = &config.services[name];
            // A secret's variable is a file, as deploy makes it: `NAME_FILE`, never the value.
            let mut has_secrets = false;
            let environment: Vec<Value> = stack
                .environment_of(name)
                .iter()
                .map(|(variable, value)| {
                    if crate::secrets::references_in(value).is_ok_and(|names| !names.is_empty()) {
                        has_secrets = true;
                        let target = crate::deploy::secret_files::TARGET;
                        json!({ "name": format!("{variable}_FILE"), "value": format!("{target}/{variable}") })
                    } else {
                        json!({ "name": variable, "value": value })
                    }
                })
                .collect();
            let mut volumes: Vec<String> = service.volumes.iter().map(|mount| format!("{}:{}{}", mount.source, mount.target, if mount.read_only { ":ro" } else { "" })).collect();
            if has_secrets {
                let current = crate::deploy::secret_files::service_folder(stack, name).join(crate::deploy::secret_files::CURRENT);
                volumes.push(escape_dollars(&format!("{}:{}:ro", current.display(), crate::deploy::secret_files::TARGET)));
            }
            let healthcheck = service.healthcheck.as_ref().map(|check| {
                json!({
                    "test": health_test_command(service, check.test(service.ports.first().map(|port| port.container))).into_iter().map(|part| escape_dollars(&part)).collect::<Vec<_>>(),
                    "interval": go_duration(check.interval),
                    "timeout": go_duration(check.timeout),
                    "retries": check.retries,
                    "start_period": check.start_period.map(go_duration),
                })
            });
            json!({
                "name": name,
                "container_name": stack.container_name(name),
                "image": stack.image_reference(name),
                "command": service.command.iter().map(|part| escape_dollars(part)).collect::<Vec<_>>(),
                "restart": service.restart.as_str(),
                "environment": environment,
                "ports": service.ports.iter().map(|port| format!("{}:{}:{}", config.edge.upstream_host, port.host, port.container)).collect::<Vec<_>>(),
                "volumes": volumes,
                "user": service.user.map(|uid| uid.to_string()),
                "depends_on": service.depends_on.iter().map(|(name, condition)| json!({ "name": name, "condition": condition.compose_condition() })).collect::<Vec<_>>(),
                "healthcheck": healthcheck,
                "stop_grace_period": service.stop_grace_period.map(go_duration),
                "extra_hosts": service.extra_hosts,
                "lockdown": lockdown_context(stack, name),
            })
        })
        .collect();
    let used_volumes: BTreeSet<&str> = stack
        .services()
        .flat_map(|(_, service)| service.volumes.iter().map(|mount| mount.source.as_str()))
        .filter(|source| config.volumes.contains_key(*source))
        .collect();
    json!({
        "environment": stack.environment,
        "project": config.project.name,
        "network": config.project.network,
        "env_file": config.project.env_file,
        "services": services,
        "volumes": used_volumes.into_iter().map(|volume| json!({ "name": volume, "docker_name": stack.volume_name(volume) })).collect::<Vec<_>>(),
    })
}

/// A service's lockdown in compose's words: the same settings deploy gives the Engine API.
fn lockdown_context(stack: &Stack, service: &str) -> Value {
    let lockdown = stack.lockdown_of(service);
    json!({
        "read_only": lockdown.read_only,
        "tmpfs": lockdown.tmpfs.iter().map(|tmpfs| format!("{}:{}", tmpfs.target, tmpfs.options())).collect::<Vec<_>>(),
        "cap_drop": lockdown.cap_drop,
        "cap_add": lockdown.cap_add,
        "no_new_privileges": lockdown.no_new_privileges,
        "memory": lockdown.memory.to_string(),
        "cpus": lockdown.cpus,
        "pids_limit": lockdown.pids_limit,
        "log_driver": lockdown.log_driver.as_str(),
        "log_options": lockdown.log_options(),
    })
}

/// Docker's `test` for a health check. HTTP checks run inside the container: with the service's
/// own binary (`<binary> healthcheck --url URL`) in images we build, which have no shell and no
/// wget, and with `wget` in third-party images.
#[must_use]
pub fn health_test_command(service: &Service, test: Option<HealthTest>) -> Vec<String> {
    match test {
        Some(HealthTest::Command(command)) => std::iter::once("CMD".to_owned()).chain(command).collect(),
        Some(HealthTest::Shell(shell)) => vec!["CMD-SHELL".to_owned(), shell],
        Some(HealthTest::Http { path, port }) => {
            let url = format!("http://127.0.0.1:{port}{path}");
            match service.build.as_ref().and_then(|build| build.binary.clone()) {
                Some(binary) => vec!["CMD".into(), binary, "healthcheck".into(), "--url".into(), url],
                None => vec!["CMD".into(), "wget".into(), "--quiet".into(), "--spider".into(), url],
            }
        }
        None => vec!["NONE".to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml");
        Stack::load(&path, "production").expect("the shipped deploy.toml is valid")
    }

    #[test]
    fn template_syntax_errors_name_the_template_and_line() {
        let broken = [("nginx-site.conf", "line one\n{% if %}\n"), ("docker-compose.yml", "")];
        let error = render_with(&broken, &stack()).unwrap_err();
        assert_eq!(error.template, "nginx-site.conf");
        assert_eq!(error.line, Some(2));
    }

    #[test]
    fn template_render_errors_name_the_template_and_line() {
        let broken = [("nginx-site.conf", "ok\n\nserver {{ nowhere.to_be_found }}\n"), ("docker-compose.yml", "")];
        let error = render_with(&broken, &stack()).unwrap_err();
        assert_eq!(error.template, "nginx-site.conf");
        assert_eq!(error.line, Some(3), "{error}");
        assert!(error.to_string().contains("nowhere.to_be_found"), "{error}");
    }

    #[test]
    fn rendering_is_deterministic() {
        let stack = stack();
        assert_eq!(render_stack(&stack).unwrap(), render_stack(&stack).unwrap());
    }

    #[test]
    fn durations_are_written_as_go_understands_them() {
        assert_eq!(go_duration(crate::config::Duration::from_secs(86_400)), "86400s");
        assert_eq!(go_duration("1500ms".parse().unwrap()), "1500ms");
    }
}
