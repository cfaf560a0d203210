//! `masstockctl restart SERVICE`: restart a service's container and wait until it is healthy.

use std::process::ExitCode;
use std::time::Instant;

use bollard::query_parameters::RestartContainerOptionsBuilder;

use crate::commands::GlobalArgs;
use crate::config::Duration;
use crate::deploy::lock::DeployLock;
use crate::deploy::rollout::check_services;
use crate::deploy::spec::readiness_of;
use crate::deploy::wait;
use crate::docker;
use crate::error::CommandError;
use crate::ui::Ui;

/// Restart a service's container (SIGTERM and its grace period), then wait until it is healthy
///
/// Exit 1 with the container's logs, exit code and health-check output when it does not become
/// healthy in time. To replace a container without a pause, `deploy` it instead.
///
/// Example: `masstockctl restart worker`
#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// How long it gets to become healthy
    #[arg(long, value_name = "DURATION", default_value = "120s")]
    pub timeout: Duration,
}

pub fn cmd_restart(global: &GlobalArgs, ui: &Ui, args: &RestartArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack(ui)?;
    check_services(&stack, std::slice::from_ref(&args.service))?;
    let _lock = DeployLock::acquire(&stack, "restart")?;
    let service = &stack.config.services[&args.service];
    let container = stack.container_name(&args.service);
    let grace = service.stop_grace_period.map_or(10, |grace| i32::try_from(grace.as_secs()).unwrap_or(i32::MAX));
    let started = Instant::now();
    crate::runtime::block_on(async {
        let docker = docker::connect().await?;
        let options = RestartContainerOptionsBuilder::default().t(grace).build();
        docker.restart_container(&container, Some(options)).await.map_err(|error| {
            let failure = CommandError::from(docker::api_error(format!("failed to restart {container}"), &error));
            if docker::is_not_found(&error) {
                failure.with_hint("`masstockctl deploy` creates it")
            } else {
                failure
            }
        })?;
        ui.info(format!("{container}: restarted; waiting until it is healthy…"));
        match wait::until_ready(&docker, &container, &readiness_of(service), args.timeout.0).await {
            Ok(()) => {
                let seconds = started.elapsed().as_secs_f64();
                if ui.json {
                    ui.json_document(&serde_json::json!({ "service": args.service, "ok": true, "seconds": seconds }));
                }
                ui.info(format!("{container}: healthy after {seconds:.1}s"));
                Ok(ExitCode::SUCCESS)
            }
            Err(unready) => {
                if ui.json {
                    ui.json_document(
                        &serde_json::json!({ "service": args.service, "ok": false, "failure": unready.to_json() }),
                    );
                }
                ui.failure(unready.to_text());
                Ok(ExitCode::from(1))
            }
        }
    })?
}
