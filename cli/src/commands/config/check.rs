//! `masstockctl config check`: validate deploy.toml and summarise the selected environment.

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::commands::GlobalArgs;
use crate::config::{self, ConfigError, HealthTest, Stack};
use crate::error::CommandError;
use crate::ui::Ui;

/// Validate deploy.toml and summarise the selected environment
///
/// Every environment is checked, so a mistake in one you do not deploy today is caught now.
/// A missing env file is a warning (create it with `secrets generate`).
///
/// Example: `masstockctl --env local config check`
#[derive(Debug, clap::Args)]
pub struct CheckArgs {}

pub fn cmd_config_check(global: &GlobalArgs, ui: &Ui, _args: &CheckArgs) -> Result<ExitCode, CommandError> {
    let source = config::read_source(&global.config)?;
    let stack = Stack::from_source(&source, &global.environment)?;
    let mut other_problems = Vec::new();
    let environments = Stack::environments(&source)?;
    for environment in environments.iter().filter(|name| **name != global.environment) {
        if let Err(ConfigError::Invalid { diagnostics, .. }) = Stack::from_source(&source, environment) {
            other_problems.extend(diagnostics.into_iter().map(|mut diagnostic| {
                diagnostic.message = format!("environment `{environment}`: {}", diagnostic.message);
                diagnostic
            }));
        }
    }
    if !other_problems.is_empty() {
        return Err(ConfigError::Invalid { path: source.path.clone(), diagnostics: other_problems }.into());
    }
    for warning in &stack.warnings {
        ui.warning(warning);
    }
    if ui.json {
        ui.json_document(&summary_json(&stack, &environments));
    } else {
        ui.data(&summary_text(&stack));
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_json(stack: &Stack, environments: &[String]) -> serde_json::Value {
    let env_file = &stack.config.project.env_file;
    serde_json::json!({
        "valid": true,
        "config_file": stack.path,
        "environment": stack.environment,
        "environments_checked": environments,
        "start_order": stack.start_order(),
        "secrets": {
            "env_file": env_file,
            "env_file_exists": stack.secrets.env_file.is_some(),
            "referenced": stack.secrets.names(),
        },
        "warnings": stack.warnings,
        "config": stack.config,
    })
}

fn summary_text(stack: &Stack) -> String {
    let config = &stack.config;
    let mut out = String::new();
    let _ = writeln!(out, "{}: valid (environment `{}`)", stack.path.display(), stack.environment);
    let _ = writeln!(out, "\nsites (nginx on ports {} and {})", config.edge.http_port, config.edge.https_port);
    let width = stack.sites().map(|(_, site)| site.domain.len()).max().unwrap_or(0);
    for (_, site) in stack.sites() {
        let upstream =
            stack.upstream_port(site).map_or_else(String::new, |port| format!("{}:{port}", config.edge.upstream_host));
        let cors = if site.cors { format!("  CORS for {}", config.cors.origins.join(", ")) } else { String::new() };
        let _ = writeln!(out, "  {:width$}  → {:8} {upstream}{cors}", site.domain, site.service);
    }
    let _ = writeln!(out, "\nservices, in start order");
    for name in stack.start_order() {
        let service = &config.services[name];
        let mut facts = vec![service.image.clone()];
        if let Some(build) = &service.build {
            match (&build.binary, &build.host_package) {
                (Some(binary), _) => facts.push(format!("built from `{binary}`")),
                (_, Some(package)) => facts.push(format!("built from host package `{package}`")),
                _ => {}
            }
        }
        for port in &service.ports {
            facts.push(format!("{}:{}→{}", config.edge.upstream_host, port.host, port.container));
        }
        if let Some(check) = &service.healthcheck {
            let test = match check.test(service.ports.first().map(|port| port.container)) {
                Some(HealthTest::Http { path, port }) => format!("GET :{port}{path}"),
                Some(HealthTest::Command(command)) => command.join(" "),
                Some(HealthTest::Shell(_)) => "shell".to_owned(),
                None => "?".to_owned(),
            };
            facts.push(format!("health {test} every {}", check.interval));
        }
        if !service.depends_on.is_empty() {
            let after: Vec<String> = service
                .depends_on
                .iter()
                .map(|(dependency, condition)| format!("{dependency} {condition:?}").to_lowercase())
                .collect();
            facts.push(format!("after {}", after.join(", ")));
        }
        let _ = writeln!(out, "  {name:8} {}", facts.join("; "));
    }
    let disabled: Vec<&str> =
        config.services.iter().filter(|(_, service)| !service.enabled).map(|(name, _)| name.as_str()).collect();
    if !disabled.is_empty() {
        let _ = writeln!(out, "  disabled here: {}", disabled.join(", "));
    }
    let limit = if config.edge.limit_req.enabled {
        format!("limit_req {}", config.edge.limit_req.rate)
    } else {
        "no limit_req".to_owned()
    };
    let _ = writeln!(out, "\nedge     {}; {limit}", config.edge.site_file.display());
    let _ = writeln!(
        out,
        "limits   general {}, auth {} (enforced by `{}`)",
        config.rate_limits.general, config.rate_limits.auth, config.rate_limits.service
    );
    let layout = match config.acme.certificates {
        config::CertificateLayout::San => "one certificate for every domain",
        config::CertificateLayout::PerDomain => "one certificate per domain",
    };
    let _ = writeln!(out, "acme     {} ({layout}) into {}", config.acme.directory, config.acme.cert_dir.display());
    if let Some(backup) = &config.backup {
        let components: Vec<&str> =
            stack.backup_components().into_iter().map(crate::backup::Component::as_str).collect();
        let _ = writeln!(
            out,
            "backup   {} into {} (keep {} daily, {} weekly, {} monthly)",
            components.join(", "),
            backup.repository,
            backup.keep_daily,
            backup.keep_weekly,
            backup.keep_monthly
        );
    }
    let names: Vec<&str> = stack.secrets.names().into_iter().collect();
    let state = if stack.secrets.env_file.is_some() { "present" } else { "missing" };
    let _ = writeln!(out, "secrets  {} from {} ({state})", names.join(", "), config.project.env_file.display());
    out
}
