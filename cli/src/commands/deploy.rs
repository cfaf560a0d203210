//! `masstockctl deploy`: from deploy.toml to a running, healthy stack, changing only what differs.

use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;

use crate::commands::{GlobalArgs, ImageArgs};
use crate::config::Duration;
use crate::deploy::apply::Outcome;
use crate::deploy::lock::DeployLock;
use crate::deploy::rollout::{check_services, images_for};
use crate::deploy::{self as engine, Plan};
use crate::docker;
use crate::error::CommandError;
use crate::progress::{show_plan_and_roll_out, Terminal};
use crate::ui::Ui;

/// Deploy the stack: images, plan, then a health-gated rollout of what changed
///
/// Computes per service whether to create, recreate (saying why: image, config or env), start,
/// keep or remove its container, from a hash of its resolved configuration stored in a label,
/// prints that plan and applies it. Services behind the edge are replaced start-first: the new
/// container is healthy and serving before the old one stops. A container that does not become
/// healthy is removed, the previous one keeps serving, and its logs and health-check output are
/// printed. One deploy at a time: a lock in `[project] state_dir` refuses a second one.
///
/// Example: `masstockctl --env local deploy`, `masstockctl deploy --plan api`
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// Only these services (dependencies are not deployed with them, and nothing is removed)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Print the plan and change nothing
    #[arg(long)]
    pub plan: bool,
    /// Use the images already tagged on the engine (`<repo>:latest`): no build, no pull
    #[arg(long)]
    pub no_build: bool,
    /// How long a new container gets to become healthy
    #[arg(long, value_name = "DURATION", default_value = "120s")]
    pub timeout: Duration,
    #[command(flatten)]
    pub build: ImageArgs,
}

pub fn cmd_deploy(global: &GlobalArgs, ui: &Ui, args: &DeployArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack(ui)?;
    check_services(&stack, &args.services)?;
    let _lock = if args.plan { None } else { Some(DeployLock::acquire(&stack, "deploy")?) };
    if !args.plan {
        crate::deploy::secret_files::ensure_version_key(&stack)?;
    }
    let started = Instant::now();
    let reporter = Terminal::new(ui);
    crate::runtime::block_on(async {
        let docker = docker::connect().await?;
        let images = if args.no_build {
            engine::local_images(&docker, &stack, &args.services).await?
        } else {
            images_for(&docker, &stack, &args.services, &args.build.options(), &reporter).await?
        };
        let plan = Plan::compute(&docker, &stack, &images, &args.services).await?;
        // An nginx of ours (`start_command`) that is down (after a reboot, say) is started even
        // when the site is unchanged: apply only touches the edge for a new site.
        if !args.plan && !plan.site_changed && !stack.config.edge.start_command.is_empty() {
            crate::deploy::edge::reload(&stack)?;
        }
        if args.plan || !plan.changes_anything() {
            if ui.json {
                // `--plan` applies nothing; a deploy with nothing to do applied nothing, successfully.
                let outcome = (!args.plan).then(|| Outcome::default().to_json());
                ui.json_document(&json!({ "plan": plan.to_json(), "outcome": outcome }));
            } else {
                ui.data(&plan.to_text());
            }
            return Ok(ExitCode::SUCCESS);
        }
        Ok(show_plan_and_roll_out(&docker, &stack, &plan, args.timeout.0, &reporter, started).await)
    })?
}
