//! The cargo and git side of an image: the workspace, the binaries (built with cargo, or taken
//! from a folder of prebuilt ones), and the revision they were built from, which names the tag.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ImageError;
use crate::report::Reporter;

/// The folder of deploy.toml, or of the current folder, or one of their ancestors, whose
/// Cargo.toml has a `[workspace]`.
pub(super) fn workspace_root(deploy_folder: &Path) -> Option<PathBuf> {
    let current = std::env::current_dir().ok();
    let starts = [Some(crate::config::absolute(deploy_folder)), current];
    starts.into_iter().flatten().find_map(|start| {
        start
            .ancestors()
            .find(|folder| {
                fs_err::read_to_string(folder.join("Cargo.toml"))
                    .is_ok_and(|text| text.lines().any(|line| line.trim() == "[workspace]"))
            })
            .map(Path::to_path_buf)
    })
}

pub(super) fn prebuilt_binaries(
    folder: &Path,
    wanted: &BTreeSet<&str>,
) -> Result<BTreeMap<String, PathBuf>, ImageError> {
    wanted
        .iter()
        .map(|binary| {
            let path = folder.join(binary);
            if path.is_file() {
                Ok(((*binary).to_owned(), path))
            } else {
                Err(ImageError::NoPrebuiltBinary { folder: folder.to_path_buf(), binary: (*binary).to_owned() })
            }
        })
        .collect()
}

/// Builds the binaries with cargo in the workspace and answers where each one is. cargo's own
/// progress goes to stderr; its JSON messages tell where the executables are.
pub(super) fn cargo_build(
    workspace: &Path,
    profile: &str,
    wanted: &BTreeSet<&str>,
    reporter: &dyn Reporter,
) -> Result<BTreeMap<String, PathBuf>, ImageError> {
    let packages = packages_of_binaries(workspace, wanted)?;
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace).args([
        "build",
        "--locked",
        "--profile",
        profile,
        "--message-format=json-render-diagnostics",
    ]);
    for binary in wanted {
        command.args(["-p", &packages[*binary], "--bin", binary]);
    }
    if reporter.quiet() {
        command.arg("--quiet");
    }
    reporter.step(&format!(
        "building {} with cargo (profile `{profile}`)",
        wanted.iter().map(|binary| format!("`{binary}`")).collect::<Vec<_>>().join(", ")
    ));
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().map_err(ImageError::CargoNotRun)?;
    let mut executables = BTreeMap::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if message["reason"] != "compiler-artifact" {
                continue;
            }
            let name = message["target"]["name"].as_str().unwrap_or_default();
            if let (true, Some(executable)) = (wanted.contains(name), message["executable"].as_str()) {
                executables.insert(name.to_owned(), PathBuf::from(executable));
            }
        }
    }
    let status = child.wait().map_err(ImageError::CargoNotWaited)?;
    if !status.success() {
        return Err(ImageError::CargoFailed { profile: profile.to_owned(), status });
    }
    for binary in wanted {
        if !executables.contains_key(*binary) {
            return Err(ImageError::CargoLostBinary((*binary).to_owned()));
        }
    }
    Ok(executables)
}

/// The package of each binary, from `cargo metadata --no-deps`.
fn packages_of_binaries(workspace: &Path, wanted: &BTreeSet<&str>) -> Result<BTreeMap<String, String>, ImageError> {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(workspace)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(ImageError::MetadataNotRun)?;
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|error| ImageError::MetadataUnreadable { workspace: workspace.to_path_buf(), error })?;
    let mut packages = BTreeMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"));
            let name = target["name"].as_str().unwrap_or_default();
            if is_bin && wanted.contains(name) {
                packages.insert(name.to_owned(), package["name"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    for binary in wanted {
        if !packages.contains_key(*binary) {
            return Err(ImageError::NoSuchBinary { workspace: workspace.to_path_buf(), binary: (*binary).to_owned() });
        }
    }
    Ok(packages)
}

/// The git commit the workspace is at, and whether the tree has changes not committed.
#[derive(Debug, Clone)]
pub(super) struct Revision {
    commit: String,
    dirty: bool,
}

impl Revision {
    /// `org.opencontainers.image.revision`: the commit, `-dirty` when the tree had changes.
    pub(super) fn label(&self) -> String {
        if self.dirty {
            format!("{}-dirty", self.commit)
        } else {
            self.commit.clone()
        }
    }
}

pub(super) fn git_revision(folder: &Path) -> Option<Revision> {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(folder)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|status| !status.is_empty());
    Some(Revision { commit, dirty })
}

/// The per-build tag: the short commit for a clean tree; for a dirty one the short commit,
/// `dirty` and the start of the inputs digest, so two dirty builds never share a tag; the digest
/// alone outside git.
pub(super) fn revision_tag(revision: Option<&Revision>, digest: &str) -> String {
    let digest = digest.trim_start_matches("sha256:");
    match revision {
        Some(Revision { commit, dirty: false }) => commit[..commit.len().min(12)].to_owned(),
        Some(Revision { commit, dirty: true }) => format!("{}-dirty-{}", &commit[..commit.len().min(12)], &digest[..8]),
        None => format!("build-{}", &digest[..12]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_trees_get_a_tag_per_content() {
        let digest = "sha256:0123456789abcdef";
        let clean = Revision { commit: "a".repeat(40), dirty: false };
        let dirty = Revision { commit: "a".repeat(40), dirty: true };
        assert_eq!(revision_tag(Some(&clean), digest), "aaaaaaaaaaaa");
        assert_eq!(revision_tag(Some(&dirty), digest), "aaaaaaaaaaaa-dirty-01234567");
        assert_eq!(revision_tag(None, digest), "build-0123456789ab");
        assert_eq!(dirty.label(), format!("{}-dirty", "a".repeat(40)));
    }
}
