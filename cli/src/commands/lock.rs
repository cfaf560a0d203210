//! `masstockctl lock status|release`: who holds the deploy lock, and releasing one a crashed
//! command left behind.

use std::process::ExitCode;

use serde_json::json;

use crate::commands::GlobalArgs;
use crate::deploy::lock::{lock_path, read_holder};
use crate::error::CommandError;
use crate::ui::Ui;

#[derive(Debug, clap::Subcommand)]
pub enum LockCommand {
    /// Say who holds the deploy lock, since when, and whether that process still runs
    Status,
    /// Release the deploy lock a crashed command left behind
    ///
    /// Refuses while the holder's process still runs on this host, unless `--force`.
    Release {
        /// Release it even though its holder still runs
        #[arg(long)]
        force: bool,
    },
}

pub fn run(global: &GlobalArgs, ui: &Ui, command: &LockCommand) -> Result<ExitCode, CommandError> {
    let stack = global.load_stack_without_env_file()?;
    let path = lock_path(&stack);
    let holder = read_holder(&path);
    match command {
        LockCommand::Status => {
            if ui.json {
                ui.json_document(&json!({ "locked": path.exists(), "path": path, "holder": holder }));
            } else {
                match (&holder, path.exists()) {
                    (Some(holder), _) => ui.data(&format!("locked by {}\n", holder.describe())),
                    (None, true) => ui.data(&format!("locked: `{}` exists but cannot be read\n", path.display())),
                    (None, false) => ui.data("unlocked\n"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LockCommand::Release { force } => {
            if !path.exists() {
                ui.info("the deploy lock is not held");
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(holder) = holder.as_ref().filter(|holder| holder.is_alive() == Some(true) && !force) {
                return Err(CommandError::failure(format!("the lock's holder still runs: {}", holder.describe()))
                    .with_hint("wait for it, or stop it; `--force` releases the lock anyway"));
            }
            crate::deploy::lock::remove(&path)?;
            ui.info(match &holder {
                Some(holder) => format!("released the deploy lock held by {}", holder.describe()),
                None => "released the deploy lock".to_owned(),
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}
