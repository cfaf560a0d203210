//! `masstockctl build`: build the images of the services deploy.toml builds, or reuse them when
//! their inputs have not changed.

use std::process::ExitCode;

use crate::commands::{GlobalArgs, ImageArgs};
use crate::config::closest;
use crate::docker::build::{prepare_images, short_id};
use crate::docker::connect;
use crate::error::CommandError;
use crate::progress::Terminal;
use crate::runtime::block_on;
use crate::ui::Ui;

/// Build the images of the services (all that deploy.toml builds, by default)
///
/// Binaries are built with cargo in the workspace (or taken from `--binaries DIR`) and put in
/// minimal images (`FROM scratch`: the binary, its shared libraries, CA certificates, a non-root
/// user), tagged `<image>:<revision>` and `<image>:latest`. An image whose inputs have not changed
/// is reused, not built again. Naming a third-party service checks that its image is here (and
/// pulls it when it is not).
///
/// Example: `masstockctl --env local build api worker`
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The services to build (default: every enabled service with `build` in deploy.toml)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    #[command(flatten)]
    pub build: ImageArgs,
}

pub fn cmd_build(global: &GlobalArgs, ui: &Ui, args: &BuildArgs) -> Result<ExitCode, CommandError> {
    // Building needs no secret: the env file is not read.
    let stack = global.load_stack_without_env_file()?;
    for warning in &stack.warnings {
        ui.warning(warning);
    }
    let services: Vec<String> = if args.services.is_empty() {
        stack.services().filter(|(_, service)| service.build.is_some()).map(|(name, _)| name.to_owned()).collect()
    } else {
        for name in &args.services {
            if !stack.services().any(|(service, _)| service == name) {
                let mut error =
                    CommandError::usage(format!("no service `{name}` in the `{}` environment", stack.environment));
                if let Some(closest) = closest(name, stack.services().map(|(service, _)| service)) {
                    error = error.with_hint(format!("did you mean `{closest}`?"));
                }
                return Err(error);
            }
        }
        args.services.clone()
    };
    if services.is_empty() {
        return Err(CommandError::usage(format!(
            "no service of the `{}` environment is built here",
            stack.environment
        ))
        .with_hint("a service is built when deploy.toml gives it `build = { binary = … }` or `{ host_package = … }`"));
    }
    let options = args.build.options();
    let images = block_on(async {
        let docker = connect().await?;
        prepare_images(&docker, &stack, &services, &options, &Terminal::new(ui)).await
    })??;
    if ui.json {
        ui.json_document(&serde_json::json!({
            "images": services
                .iter()
                .filter_map(|service| images.get(service))
                .map(|image| serde_json::json!({
                    "service": image.service,
                    "reference": image.reference,
                    "id": image.id,
                    "revision": image.revision,
                    "built": image.built,
                    "tags": image.tags,
                }))
                .collect::<Vec<_>>(),
        }));
    } else {
        let width = services.iter().map(String::len).max().unwrap_or(0);
        let reference_width = images.values().map(|image| image.reference.len()).max().unwrap_or(0);
        for image in services.iter().filter_map(|service| images.get(service)) {
            let revision = image.revision.as_deref().map_or("-", |revision| &revision[..revision.len().min(12)]);
            let dirty = if image.revision.as_deref().is_some_and(|revision| revision.ends_with("-dirty")) {
                "-dirty"
            } else {
                ""
            };
            let action = if image.built { "built" } else { "reused" };
            ui.data(&format!(
                "{:width$}  {:reference_width$}  {}  {revision}{dirty}  {action}\n",
                image.service,
                image.reference,
                short_id(&image.id),
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
