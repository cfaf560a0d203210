//! Records the git revision the binary is built from, for `masstockctl --version`.
//!
//! `MASSTOCK_GIT_REVISION` is `git rev-parse --short HEAD`, or `unknown` outside a git checkout
//! (a source tarball, a crate download). Cargo reruns this script when HEAD moves: when `.git/HEAD`
//! changes (a checkout) or the branch it names does (a commit), worktrees included.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let revision = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=MASSTOCK_GIT_REVISION={revision}");
    for watched in ["HEAD", "packed-refs"] {
        rerun_if_git_path_changes(watched);
    }
    if let Some(reference) = git(&["symbolic-ref", "--quiet", "HEAD"]) {
        rerun_if_git_path_changes(&reference);
    }
}

/// Asks cargo to rerun when the file behind `git_path` (a path inside the git directory) changes.
/// Only files that exist: cargo reruns a script on every build while a watched file is missing.
fn rerun_if_git_path_changes(git_path: &str) {
    if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", git_path]) {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// The trimmed stdout of a successful `git` run in this crate's folder.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    let stdout = String::from_utf8(output.stdout).ok()?;
    let stdout = stdout.trim();
    (output.status.success() && !stdout.is_empty()).then(|| stdout.to_owned())
}
