//! A sandbox folder holding a deploy.toml, and a pinned environment to run masstockctl in.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The shipped deploy.toml.
pub fn shipped_config() -> String {
    fs_err::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml")).expect("read deploy.toml")
}

fn hermetic(config: &str) -> String {
    assert!(config.contains(PRODUCTION_ENV_FILE), "the shipped deploy.toml no longer contains {PRODUCTION_ENV_FILE}");
    config.replacen(PRODUCTION_ENV_FILE, "env_file = \".env.production\"", 1)
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

/// What a run printed, and how it ended.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Exit status, stdout and stderr in one text, for snapshots.
    pub fn transcript(&self) -> String {
        format!("status: {}\n----- stdout -----\n{}----- stderr -----\n{}", self.status, self.stdout, self.stderr)
    }
}

/// Where the shipped deploy.toml keeps production's secrets: a host path, so tests that read the
/// env file move it into the sandbox to stay independent of the machine.
const PRODUCTION_ENV_FILE: &str = "env_file = \"/opt/masstock/.env.production\"";

impl Sandbox {
    /// A sandbox with the shipped deploy.toml, production's env file moved into the sandbox.
    pub fn new() -> Self {
        Self::with_config(&hermetic(&shipped_config()))
    }

    /// A sandbox with the shipped deploy.toml exactly as it is (for commands that never read the
    /// env file, such as `render`).
    pub fn shipped() -> Self {
        Self::with_config(&shipped_config())
    }

    pub fn with_config(text: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        fs_err::write(dir.path().join("deploy.toml"), text).expect("write deploy.toml");
        Self { dir }
    }

    /// The shipped deploy.toml with `from` replaced by `to` (which must be there, once at least).
    pub fn edited(from: &str, to: &str) -> Self {
        let text = shipped_config();
        assert!(text.contains(from), "the shipped deploy.toml no longer contains {from:?}");
        Self::with_config(&hermetic(&text.replacen(from, to, 1)))
    }

    /// The shipped deploy.toml with each `from` replaced by its `to` (each must be there).
    pub fn edited_many(edits: &[(&str, &str)]) -> Self {
        let mut text = shipped_config();
        for (from, to) in edits {
            assert!(text.contains(from), "the shipped deploy.toml no longer contains {from:?}");
            text = text.replacen(from, to, 1);
        }
        Self::with_config(&hermetic(&text))
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Runs masstockctl in the sandbox with a pinned environment: no colour, a fixed HOME.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_env(args, &[("NO_COLOR", "1")])
    }

    /// Runs masstockctl with only `PATH`, `HOME` and `variables` in its environment.
    pub fn run_with_env(&self, args: &[&str], variables: &[(&str, &str)]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_masstockctl"))
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .envs(variables.iter().copied())
            .output()
            .expect("run masstockctl");
        // Temporary paths differ on every run: snapshots see `[SANDBOX]`.
        let sandbox = self.dir.path().display().to_string();
        let filter = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8 output").replace(&sandbox, "[SANDBOX]");
        Run { status: output.status.code().unwrap_or(-1), stdout: filter(output.stdout), stderr: filter(output.stderr) }
    }
}
