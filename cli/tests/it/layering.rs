//! The layers of `cli/src`, checked on the source: `commands/` is the top floor. Nothing below it
//! names `crate::commands`, and no command file names another command file; a command file may
//! name the command line's own definition (`GlobalArgs`, `Cli` in `commands/mod.rs`) and its
//! group's `mod.rs` (`queue/ls.rs` may name `super::QueueSelection`).

use std::path::{Path, PathBuf};

/// What `commands/mod.rs` defines for every command: the command line itself.
const COMMAND_LINE: &[&str] = &["GlobalArgs", "Cli"];

#[test]
fn commands_are_the_top_floor() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for file in rust_files(&root) {
        let relative = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        let text = code_of(&fs_err::read_to_string(&file).unwrap());
        for (_, what) in violations_in(&root, &relative, &text) {
            violations.push(format!("{relative}: {what}"));
        }
    }
    assert!(violations.is_empty(), "layering broken:\n{}", violations.join("\n"));
}

#[test]
fn the_scan_sees_each_kind_of_violation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let below = violations_in(&root, "doctor/mod.rs", "use crate::commands::health::secret_values;");
    assert_eq!(below.len(), 1, "{below:?}");
    let ui = violations_in(&root, "ui.rs", "use crate::commands::GlobalArgs;");
    assert_eq!(ui.len(), 1, "{ui:?}");
    let sibling = violations_in(&root, "commands/rollback.rs", "use crate::commands::{GlobalArgs, deploy::check};");
    assert_eq!(sibling.iter().map(|(named, _)| named.as_str()).collect::<Vec<_>>(), ["deploy"]);
    let through_super = violations_in(&root, "commands/restart.rs", "super::deploy::check_services(x)");
    assert_eq!(through_super.len(), 1, "{through_super:?}");
    let in_group = violations_in(&root, "commands/queue/ls.rs", "use crate::commands::queue::show::ShowArgs;");
    assert_eq!(in_group.len(), 1, "{in_group:?}");
    let other_group = violations_in(&root, "commands/queue/ls.rs", "use crate::commands::certs::CertsCommand;");
    assert_eq!(other_group.len(), 1, "{other_group:?}");

    let allowed =
        "use crate::commands::GlobalArgs;\nuse crate::commands::queue::{target, QueueSelection};\nsuper::report(ui)";
    assert_eq!(violations_in(&root, "commands/queue/ls.rs", allowed), []);
    assert_eq!(violations_in(&root, "lib.rs", "pub use commands::Cli; crate::commands::run(&cli)"), []);
}

/// Each command module `relative` (a path under `cli/src`) names that it should not, with why.
fn violations_in(root: &Path, relative: &str, code: &str) -> Vec<(String, String)> {
    if relative == "lib.rs" || relative == "main.rs" {
        return Vec::new();
    }
    let Some(in_commands) = relative.strip_prefix("commands/") else {
        return paths_after(code, "crate::commands::")
            .into_iter()
            .map(|path| {
                (path.join("::"), format!("names `crate::commands::{}` from below `commands/`", path.join("::")))
            })
            .collect();
    };
    // `queue/ls.rs` is in group `queue`; `health.rs`, `queue/mod.rs` and `mod.rs` in none.
    let group = match in_commands.rsplit_once('/') {
        Some((group, file)) if file != "mod.rs" => Some(group),
        _ => None,
    };
    let top_level_commands = command_modules(&root.join("commands"));
    let mut violations = Vec::new();
    for path in paths_after(code, "crate::commands::") {
        let first = path[0].as_str();
        let sibling_in_group = |name: &str| {
            group.is_some_and(|group| command_modules(&root.join("commands").join(group)).contains(&name.to_owned()))
        };
        let allowed = COMMAND_LINE.contains(&first)
            || (group == Some(first) && !path.get(1).is_some_and(|second| sibling_in_group(second)));
        if !allowed && (top_level_commands.contains(&path[0]) || sibling_in_group(first)) {
            violations.push((path[0].clone(), format!("names command file `commands::{}`", path.join("::"))));
        }
    }
    // `super::` from a group's file is its group's `mod.rs`; from a top-level command file, the
    // command tree's.
    let siblings = match group {
        Some(group) => command_modules(&root.join("commands").join(group)),
        None if !in_commands.ends_with("mod.rs") => top_level_commands,
        None => Vec::new(),
    };
    for path in paths_after(code, "super::") {
        if siblings.contains(&path[0]) {
            violations.push((path[0].clone(), format!("names command file `super::{}`", path.join("::"))));
        }
    }
    violations
}

/// The command modules in `folder`: its `.rs` files but `mod.rs`, and its sub-folders.
fn command_modules(folder: &Path) -> Vec<String> {
    let Ok(entries) = fs_err::read_dir(folder) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let name = path.file_stem()?.to_string_lossy().into_owned();
            (path.is_dir() || (path.extension()? == "rs" && name != "mod")).then_some(name)
        })
        .collect()
}

/// The paths written after each `prefix` in `code`, braces expanded: `a::{b, c::d}` gives
/// `[a, b]` and `[a, c, d]`.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut from = 0;
    while let Some(position) = code[from..].find(prefix).map(|position| from + position) {
        let preceded_by_path =
            code[..position].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        from = position + prefix.len();
        if !preceded_by_path {
            let mut reader = UseTree { text: code.as_bytes(), at: from };
            reader.read(&mut Vec::new(), &mut paths);
        }
    }
    paths
}

/// A reader of one use-tree (`a::b`, `a::{b, c::d}`), from `at`.
struct UseTree<'a> {
    text: &'a [u8],
    at: usize,
}

impl UseTree<'_> {
    fn peek(&mut self) -> Option<u8> {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
        self.text.get(self.at).copied()
    }

    fn read(&mut self, stem: &mut Vec<String>, paths: &mut Vec<Vec<String>>) {
        if self.peek() == Some(b'{') {
            self.at += 1;
            loop {
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return;
                }
                self.read(stem, paths);
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(b'}') => {
                        self.at += 1;
                        return;
                    }
                    _ => return,
                }
            }
        }
        let start = self.at;
        while self.text.get(self.at).is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'_') {
            self.at += 1;
        }
        if self.at == start {
            return;
        }
        stem.push(String::from_utf8_lossy(&self.text[start..self.at]).into_owned());
        if self.text[self.at..].starts_with(b"::") {
            self.at += 2;
            self.read(stem, paths);
        } else {
            paths.push(stem.clone());
        }
        stem.pop();
    }
}

/// `text` without its comments (`//` to the end of the line), so docs may name any module.
fn code_of(text: &str) -> String {
    text.lines().map(|line| line.find("//").map_or(line, |comment| &line[..comment])).collect::<Vec<_>>().join("\n")
}

fn rust_files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs_err::read_dir(folder).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}
