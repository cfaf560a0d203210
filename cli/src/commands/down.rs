//! `masstockctl down`: stop and remove the stack's containers and network; volumes only when asked.

use std::process::ExitCode;

use bollard::query_parameters::RemoveVolumeOptionsBuilder;
use serde_json::json;

use crate::commands::GlobalArgs;
use crate::deploy::apply::{remove, stop};
use crate::deploy::lock::DeployLock;
use crate::docker;
use crate::error::CommandError;
use crate::ui::Ui;

/// Stop and remove the stack's containers and its network
///
/// Each container gets SIGTERM and its `stop_grace_period`, in reverse start order. Volumes (the
/// database of Redis, uploads, logs) are kept unless `--volumes`. Images are kept, so `deploy`
/// or `rollback` can use them again. The host nginx site is left in place.
///
/// Example: `masstockctl --env local down`
#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Remove the stack's named volumes too: their data is lost
    #[arg(long)]
    pub volumes: bool,
}

pub fn cmd_down(global: &GlobalArgs, ui: &Ui, args: &DownArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack_without_env_file()?;
    let _lock = DeployLock::acquire(&stack, "down")?;
    let project = &stack.config.project;
    crate::runtime::block_on(async {
        let docker = docker::connect().await?;
        let mut containers = docker::project_containers(&docker, &project.name).await?;
        // Dependents first: reverse start order, then whatever deploy.toml no longer declares.
        let order = stack.start_order();
        let rank = |service: Option<&str>| {
            service.and_then(|service| order.iter().position(|name| *name == service)).unwrap_or(usize::MAX)
        };
        containers.sort_by_key(|container| std::cmp::Reverse(rank(docker::service_of(container))));
        let mut removed = Vec::new();
        for container in &containers {
            let name = docker::name_of(container);
            let grace = docker::service_of(container)
                .and_then(|service| stack.config.services.get(service))
                .and_then(|service| service.stop_grace_period)
                .map_or(10, |grace| i64::try_from(grace.as_secs()).unwrap_or(i64::MAX));
            ui.info(format!("{name}: stopping (up to {grace}s)…"));
            stop(&docker, &name, grace).await?;
            remove(&docker, &name).await?;
            removed.push(name);
        }
        let network_removed = match docker.remove_network(&project.network).await {
            Ok(()) => true,
            Err(error) if docker::is_not_found(&error) => false,
            Err(error) => {
                return Err(docker::api_error(format!("failed to remove network `{}`", project.network), &error).into())
            }
        };
        let mut volumes = Vec::new();
        if args.volumes {
            for volume in stack.config.volumes.keys().map(|volume| stack.volume_name(volume)) {
                match docker.remove_volume(&volume, Some(RemoveVolumeOptionsBuilder::default().build())).await {
                    Ok(()) => volumes.push(volume),
                    Err(error) if docker::is_not_found(&error) => {}
                    Err(error) => {
                        return Err(docker::api_error(format!("failed to remove volume `{volume}`"), &error).into())
                    }
                }
            }
        }
        if ui.json {
            ui.json_document(&json!({ "containers": removed, "network_removed": network_removed, "volumes": volumes }));
        } else {
            ui.info(format!(
                "removed {} container(s){}{}",
                removed.len(),
                if network_removed { format!(" and network `{}`", project.network) } else { String::new() },
                if args.volumes {
                    format!(
                        "; volumes removed: {}",
                        if volumes.is_empty() { "none".to_owned() } else { volumes.join(", ") }
                    )
                } else {
                    "; volumes kept".to_owned()
                }
            ));
        }
        Ok::<_, CommandError>(ExitCode::SUCCESS)
    })?
}
