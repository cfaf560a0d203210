//! `masstockctl deploy`: from deploy.toml to a running, healthy stack, changing only what differs.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use bollard::Docker;
use serde_json::json;

use crate::commands::build::ImageArgs;
use crate::commands::GlobalArgs;
use crate::config::{Duration, Stack};
use crate::deploy::apply::{self, ApplyOptions, Outcome};
use crate::deploy::lock::DeployLock;
use crate::deploy::spec::ImageChoice;
use crate::deploy::{self as engine, Plan};
use crate::docker;
use crate::docker::image::prepare_images;
use crate::error::CommandError;
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
    let started = Instant::now();
    crate::runtime::block_on(async {
        let docker = docker::connect().await?;
        let images = if args.no_build {
            engine::local_images(&docker, &stack, &args.services).await?
        } else {
            images_for(&docker, &stack, &args.services, &args.build, ui).await?
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
        Ok(apply_and_report(&docker, &stack, &plan, args.timeout, ui, started).await)
    })?
}

/// Prints the plan, applies it and reports: what `deploy` and `rollback` end with.
pub async fn apply_and_report(
    docker: &Docker,
    stack: &Stack,
    plan: &Plan,
    timeout: Duration,
    ui: &Ui,
    started: Instant,
) -> ExitCode {
    if !ui.json {
        ui.data(&plan.to_text());
    }
    let options = ApplyOptions { ready_timeout: timeout.0 };
    let outcome = apply::apply(docker, stack, plan, &options, ui).await;
    report(stack, ui, plan, &outcome, started)
}

/// Rejects service names deploy.toml does not declare (or disables).
pub fn check_services(stack: &Stack, services: &[String]) -> Result<(), CommandError> {
    let declared: Vec<&str> = stack.services().map(|(name, _)| name).collect();
    for service in services {
        if !declared.contains(&service.as_str()) {
            return Err(CommandError::usage(format!(
                "no enabled service `{service}` in environment `{}`",
                stack.environment
            ))
            .with_hint(format!("the services are: {}", declared.join(", "))));
        }
    }
    Ok(())
}

/// The images to deploy: ours built (or reused when their inputs did not change), third-party
/// ones pulled when absent. Fails before anything of the stack changes.
pub async fn images_for(
    docker: &Docker,
    stack: &Stack,
    services: &[String],
    build: &ImageArgs,
    ui: &Ui,
) -> Result<BTreeMap<String, ImageChoice>, CommandError> {
    let prepared = prepare_images(docker, stack, services, &build.options(), ui).await?;
    Ok(prepared
        .into_iter()
        .map(|(service, image)| (service, ImageChoice { reference: image.reference, id: image.id }))
        .collect())
}

/// Prints what happened and returns the exit status: 0 when every step succeeded, else 1.
fn report(stack: &Stack, ui: &Ui, plan: &Plan, outcome: &Outcome, started: Instant) -> ExitCode {
    let seconds = started.elapsed().as_secs_f64();
    if ui.json {
        ui.json_document(&json!({ "plan": plan.to_json(), "outcome": outcome.to_json(), "seconds": (seconds * 10.0).round() / 10.0 }));
    }
    for failed in outcome.services.iter().filter(|service| !service.ok) {
        let evidence = failed.unready.as_ref().map(crate::deploy::wait::Unready::to_text).unwrap_or_default();
        ui.failure(format!("{}: {} failed: {}\n{evidence}", failed.service, failed.action, failed.detail));
    }
    if let Some(edge) = outcome.edge.as_deref().filter(|edge| edge.starts_with("failed")) {
        ui.failure(format!("edge: {edge}"));
    }
    if outcome.failed {
        ui.failure(format!("deploy failed after {seconds:.1}s; the services not listed above were left as they were."));
        return ExitCode::from(1);
    }
    ui.info(format!("Deployed environment `{}` in {seconds:.1}s.", stack.environment));
    if !ui.json {
        let edge = &stack.config.edge;
        let suffix = if edge.https_port == 443 { String::new() } else { format!(":{}", edge.https_port) };
        for (_, site) in stack.sites() {
            ui.info(format!("  https://{}{suffix}/  ({})", site.domain, site.service));
        }
    }
    ExitCode::SUCCESS
}
