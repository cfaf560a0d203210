//! `masstockctl rollback [SERVICE…]`: back to the image each service ran before its last deploy.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use crate::commands::GlobalArgs;
use crate::config::Duration;
use crate::deploy::lock::DeployLock;
use crate::deploy::rollout::check_services;
use crate::deploy::spec::ImageChoice;
use crate::deploy::{previous_image, Existing, Plan};
use crate::docker;
use crate::error::CommandError;
use crate::progress::{show_plan_and_roll_out, Terminal};
use crate::ui::Ui;

/// Return services to the image they ran before their last deploy
///
/// Each container records the image it replaced (label `io.masstock.previous-image`); images are
/// never pruned by masstockctl, so that image is still there. The rollback is a deploy of that
/// image with the current configuration: health-gated, start-first behind the edge. Rolling back
/// twice returns to where you started. Without SERVICE, every service that has a previous image.
///
/// Example: `masstockctl rollback api`
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// How long a new container gets to become healthy
    #[arg(long, value_name = "DURATION", default_value = "120s")]
    pub timeout: Duration,
}

pub fn cmd_rollback(global: &GlobalArgs, ui: &Ui, args: &RollbackArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack(ui)?;
    check_services(&stack, &args.services)?;
    let _lock = DeployLock::acquire(&stack, "rollback")?;
    crate::deploy::secret_files::ensure_version_key(&stack)?;
    let started = Instant::now();
    crate::runtime::block_on(async {
        let docker = docker::connect().await?;
        let containers = docker::project_containers(&docker, &stack.config.project.name).await?;
        let mut images = BTreeMap::new();
        for (name, _) in stack.services() {
            if !args.services.is_empty() && !args.services.iter().any(|selected| selected == name) {
                continue;
            }
            let container =
                containers.iter().find(|container| docker::name_of(container) == stack.container_name(name));
            let previous =
                container.map(Existing::from_summary).and_then(|existing| previous_image(&existing).map(str::to_owned));
            let Some(previous) = previous else {
                if args.services.is_empty() {
                    continue;
                }
                return Err(CommandError::failure(format!("service `{name}` has no previous image to return to"))
                    .with_hint("a container records the image it replaced once a deploy has changed its image"));
            };
            let image = docker.inspect_image(&previous).await.map_err(|error| {
                CommandError::from(docker::api_error(
                    format!("the previous image of `{name}` ({previous}) is gone"),
                    &error,
                ))
                .with_hint("it was removed from the engine (docker image prune?); deploy a revision instead")
            })?;
            let reference = image
                .repo_tags
                .unwrap_or_default()
                .into_iter()
                .find(|tag| !tag.ends_with(":latest"))
                .unwrap_or_else(|| previous.clone());
            let user = image.config.and_then(|config| config.user);
            images.insert(name.to_owned(), ImageChoice { reference, id: image.id.unwrap_or(previous), user });
        }
        if images.is_empty() {
            return Err(CommandError::failure("no service has a previous image to return to"));
        }
        let services: Vec<String> = images.keys().cloned().collect();
        let plan = Plan::compute(&docker, &stack, &images, &services).await?;
        Ok(show_plan_and_roll_out(&docker, &stack, &plan, args.timeout.0, &Terminal::new(ui), started).await)
    })?
}
