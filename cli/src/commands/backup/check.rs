//! `masstockctl backup check`: `restic check` on the repository (its structure; with
//! `--read-data`, every byte of a subset of the packs).

use std::process::ExitCode;

use serde_json::json;

use crate::backup::restic::{Repository, ResticError};
use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::ui::Ui;

/// Check the repository's integrity (`restic check`)
///
/// Exit 1 when restic finds damage. `restore --drill` proves more: that the newest snapshots
/// restore into a working stack.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Also read and verify this subset of the data (restic's `--read-data-subset`: `10%`,
    /// `1/5`, `all`)
    #[arg(long, value_name = "SUBSET")]
    pub read_data: Option<String>,
}

pub fn cmd_backup_check(global: &GlobalArgs, ui: &Ui, args: &CheckArgs) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack(ui)?;
    let repository = Repository::of(&stack)?;
    let subset = args.read_data.as_deref().map(|subset| if subset == "all" { "100%" } else { subset });
    let checked = crate::runtime::block_on(async {
        repository.open(false).await?;
        repository.check(subset).await
    })?;
    match checked {
        Ok(output) => {
            if ui.json {
                ui.json_document(&json!({ "ok": true, "repository": repository.shown(), "output": output }));
            } else {
                ui.data(&output);
                ui.info(format!("repository `{}`: no errors were found", repository.shown()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error @ ResticError::Failed { .. }) => {
            if ui.json {
                ui.json_document(&json!({ "ok": false, "repository": repository.shown(), "error": error.to_string() }));
            }
            ui.failure(&error);
            ui.info(
                "hint: `restic repair` (0.16+) or `restic rebuild-index` and a new `masstockctl backup` recover from most damage",
            );
            Ok(ExitCode::from(1))
        }
        Err(error) => Err(error.into()),
    }
}
