//! `masstockctl render`: write the host nginx site and the compose file of an environment.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sha2::{Digest as _, Sha256};

use crate::commands::GlobalArgs;
use crate::error::CommandError;
use crate::render;
use crate::ui::Ui;

/// Write the host nginx site and the compose file for an environment
///
/// Writes `DIR/nginx/<site file>` and `DIR/docker-compose.yml`. The same deploy.toml always gives
/// the same bytes, and no secret value is written: secrets stay in the env file.
///
/// Example: `masstockctl --env local render --out rendered/`
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The folder to write into (created if needed)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn cmd_render(global: &GlobalArgs, ui: &Ui, args: &RenderArgs) -> Result<ExitCode, CommandError> {
    // Rendering never reads the env file: it holds no secret value to put in the files.
    let stack = global.load_stack_without_env_file()?;
    let files = render::render_stack(&stack).map_err(CommandError::failure)?;
    let mut written = Vec::new();
    for file in &files {
        let path = args.out.join(&file.path);
        write_file(&path, file.contents.as_bytes()).map_err(CommandError::failure)?;
        let sha256 = format!("{:x}", Sha256::digest(file.contents.as_bytes()));
        ui.detail(format!("wrote {} ({} bytes)", path.display(), file.contents.len()));
        written.push((path, sha256, file.contents.len()));
    }
    if ui.json {
        ui.json_document(&serde_json::json!({
            "environment": stack.environment,
            "files": written
                .iter()
                .map(|(path, sha256, bytes)| serde_json::json!({ "path": path, "sha256": sha256, "bytes": bytes }))
                .collect::<Vec<_>>(),
        }));
    } else {
        for (path, sha256, _) in &written {
            ui.data(&format!("{sha256}  {}\n", path.display()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        fs_err::create_dir_all(parent)?;
    }
    crate::atomic::write_file(path, contents, 0o644)
}
