//! Secrets: `${NAME}` references in deploy.toml, the env file that holds their values, and the
//! values `secrets generate` can make.
//!
//! [`resolve`] is the one place a `${NAME}` becomes its value: deploy, health, doctor and `queue`
//! call it, and each maps its [`ResolveError`] to a message of its own. Its checks run in a fixed
//! order: the references' syntax, then whether the env file exists, then whether each name has a
//! value there, then (for a value spliced into a URL) [`breaks_url`], the one URL-safety rule that
//! `config check` also applies.
//!
//! The env file is Docker's format (`NAME=value` lines, `#` comments, no quoting), so compose's
//! `env_file` and `--env-file` read the same file. It is written atomically with mode 0600.
//!
//! Secrets live only in the env file. In a service's `env`, `${NAME}` names a secret and `$$` is a
//! literal `$`. `config check` reports a referenced secret missing from an env file that exists as
//! an error, an empty one as a warning, and a missing env file as a warning whose hint is
//! `secrets generate`. A secret spliced into a URL (`redis://:${REDIS_PASSWORD}@…`) must hold only
//! URL-safe characters: the reference's `randomBytes(32).toString('base64')` contains a `/` about
//! half the time, which silently breaks the URL, so `config check` rejects such a value and
//! `secrets generate` uses URL-safe base64.
//!
//! `EnvFile`'s `Debug` shows names only; `render` never reads the env file. Writing the env file
//! goes through a temporary file with an unpredictable name and a rename. A symlink is written
//! through to its target, the owner of an existing file is kept, new folders are created 0700, and
//! the folder is synced after the rename. `secrets generate --force` adds what is missing and never
//! replaces a value already set, unless it is named: `secrets generate --force NAME…` regenerates
//! those generated secrets (rotation), so a rotation is always asked for by name, never a side
//! effect of generation.
//!
//! `RESTIC_PASSWORD` (`[backup] password`) is generated like the others but never rotated by
//! `--force RESTIC_PASSWORD` ([`NOT_ROTATED`]): the repository keeps its own key, and a value the
//! key does not hold would lock every backup away.
//!
//! Containers never get these values in their environment: deploy writes each variable that
//! refers to a secret to a file (`deploy/secret_files.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::config::{KeyPath, Stack};

/// A `${NAME}` in a service's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    pub name: String,
    /// Where it is written: `services.<service>.env.<VARIABLE>`.
    pub path: KeyPath,
}

/// Why a declared value's `$`s do not read as `${NAME}` references; each message ends with a
/// `hint:` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("unclosed `${{` in `{value}`\nhint: close it: `${{NAME}}`")]
    Unclosed { value: String },
    #[error("`${{{name}}}` is not a secret name\nhint: a name is letters, digits and `_`, not starting with a digit, like `${{JWT_SECRET}}`")]
    NotAName { name: String },
    #[error("a lone `$` in `{value}`\nhint: write `${{NAME}}` for a secret or `$$` for a literal `$`")]
    LoneDollar { value: String },
}

/// The names referenced by `value`, in order; `$$` is a literal `$`.
pub fn references_in(value: &str) -> Result<Vec<String>, ReferenceError> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(position) = rest.find('$') {
        let after = &rest[position + 1..];
        if let Some(after) = after.strip_prefix('$') {
            rest = after;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| ReferenceError::Unclosed { value: value.to_owned() })?;
            let name = &body[..end];
            if !is_variable_name(name) {
                return Err(ReferenceError::NotAName { name: name.to_owned() });
            }
            names.push(name.to_owned());
            rest = &body[end + 1..];
        } else {
            return Err(ReferenceError::LoneDollar { value: value.to_owned() });
        }
    }
    Ok(names)
}

/// `value` with every `${NAME}` replaced by `replace(NAME)`; `$$` and the rest are kept as written.
/// Only called on values that [`references_in`] accepted.
pub fn map_references(value: &str, replace: impl Fn(&str) -> String) -> String {
    walk_references(value, "$$", &mut |name| replace(name))
}

/// `value` as a container receives it: each `${NAME}` replaced by `replace(NAME)`, and `$$` made `$`.
pub fn substitute_references(value: &str, mut replace: impl FnMut(&str) -> String) -> String {
    walk_references(value, "$", &mut replace)
}

fn walk_references(value: &str, escaped_dollar: &str, replace: &mut dyn FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push_str(escaped_dollar);
            rest = after;
        } else if let Some((name, after)) = after.strip_prefix('{').and_then(|body| body.split_once('}')) {
            out.push_str(&replace(name));
            rest = after;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `NAME`, as environment variables are spelled: `[A-Za-z_][A-Za-z0-9_]*`.
#[must_use]
pub fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// Why a declared value cannot be resolved against the env file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A `${` without its `}`, a bad name or a lone `$`: the message says which, with a hint line.
    #[error("{0}")]
    Syntax(ReferenceError),
    /// The value refers to secrets, and the env file does not exist.
    #[error("the env file `{}` does not exist, and `{}` is needed from it", .path.display(), .names.join("`, `"))]
    NoEnvFile {
        path: PathBuf,
        /// Every name referenced, in order (repeats included).
        names: Vec<String>,
    },
    /// Secrets the env file does not hold, or holds empty.
    #[error("`{}` is not set in `{}`", .names.join("`, `"), .path.display())]
    Unset {
        path: PathBuf,
        /// The names without a value, in the order they are referenced (repeats included).
        names: Vec<String>,
    },
    /// A secret spliced into a URL holds characters that would change the URL's shape.
    #[error("secret `{name}` in `{}` holds characters that break the URL it is part of", .path.display())]
    BreaksUrl { path: PathBuf, name: String },
}

/// `declared` with each `${NAME}` replaced by its value in `env_file` (read from `path`, `None`
/// when it does not exist), and `$$` made `$`: the value a container receives.
pub fn resolve(declared: &str, env_file: Option<&EnvFile>, path: &Path) -> Result<String, ResolveError> {
    resolve_with(declared, env_file, path, UrlRule::Enforce)
}

/// Whether [`resolve_with`] refuses a secret that would break the URL it is spliced into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlRule {
    Enforce,
    Skip,
}

fn resolve_with(
    declared: &str,
    env_file: Option<&EnvFile>,
    path: &Path,
    url_rule: UrlRule,
) -> Result<String, ResolveError> {
    let names = references_in(declared).map_err(ResolveError::Syntax)?;
    if !names.is_empty() {
        let Some(file) = env_file else {
            return Err(ResolveError::NoEnvFile { path: path.to_path_buf(), names });
        };
        let unset: Vec<String> =
            names.iter().filter(|name| file.get(name).is_none_or(str::is_empty)).cloned().collect();
        if !unset.is_empty() {
            return Err(ResolveError::Unset { path: path.to_path_buf(), names: unset });
        }
        let breaking = names.iter().find(|name| breaks_url(declared, file.get(name).unwrap_or_default()));
        if let (UrlRule::Enforce, Some(name)) = (url_rule, breaking) {
            return Err(ResolveError::BreaksUrl { path: path.to_path_buf(), name: name.clone() });
        }
    }
    Ok(substitute_references(declared, |name| env_file.and_then(|file| file.get(name)).unwrap_or_default().to_owned()))
}

/// `declared` with `stack`'s secrets spliced in as the containers get them, a secret that breaks
/// its URL included: for `health` and `doctor`, which judge what runs (a URL broken so is then
/// a failed connection, shown as such) and read a stack that may not have been validated.
pub fn splice_in(stack: &Stack, declared: &str) -> Result<String, ResolveError> {
    resolve_with(declared, stack.secrets.env_file.as_ref(), &stack.config.project.env_file, UrlRule::Skip)
}

/// Whether `value`, spliced into `template` for one of its `${NAME}`s, breaks the URL `template`
/// is (`scheme://...${NAME}...`): a `/`, `@`, `:`, `?`, `#`, `%` or space would end the password
/// early and the rest would be read (and shown) as host or path. A secret inside a URL may only
/// hold letters, digits and `-._~+=`.
#[must_use]
pub fn breaks_url(template: &str, value: &str) -> bool {
    map_references(template, |_| String::new()).contains("://")
        && !value.chars().all(|c| c.is_ascii_alphanumeric() || "-._~+=".contains(c))
}

/// One line of an env file, kept so rewriting the file keeps the operator's comments and order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Other(String),
    Entry { name: String, value: String },
}

/// The parsed env file. Its `Debug` shows names only, so a stray `{:?}` leaks no value.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvFile {
    pub path: PathBuf,
    lines: Vec<Line>,
}

#[allow(clippy::missing_fields_in_debug, reason = "the lines hold secret values; only names are shown")]
impl std::fmt::Debug for EnvFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvFile")
            .field("path", &self.path)
            .field("names", &self.values().keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("failed to read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}:{line}`: expected `NAME=value`")]
    Syntax { path: PathBuf, line: usize },
    #[error("failed to write `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl EnvFile {
    /// Reads `path`; `Ok(None)` when it does not exist.
    #[allow(clippy::disallowed_methods)] // `EnvFileError::Read` names the path; fs_err's would name it twice.
    pub fn read(path: &Path) -> Result<Option<Self>, EnvFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(EnvFileError::Read { path: path.to_path_buf(), source }),
        };
        Self::parse(path, &text).map(Some)
    }

    /// An empty file that starts with `comments`, one `# ` line each.
    #[must_use]
    pub fn with_comments(path: &Path, comments: &[&str]) -> Self {
        let lines = comments.iter().map(|comment| Line::Other(format!("# {comment}"))).collect();
        Self { path: path.to_path_buf(), lines }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, EnvFileError> {
        let mut lines = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                lines.push(Line::Other(line.to_owned()));
                continue;
            }
            let (name, value) = trimmed
                .split_once('=')
                .ok_or_else(|| EnvFileError::Syntax { path: path.to_path_buf(), line: number + 1 })?;
            let name = name.trim().trim_start_matches("export ").trim();
            if !is_variable_name(name) {
                return Err(EnvFileError::Syntax { path: path.to_path_buf(), line: number + 1 });
            }
            lines.push(Line::Entry { name: name.to_owned(), value: value.to_owned() });
        }
        Ok(Self { path: path.to_path_buf(), lines })
    }

    /// The value of `name`, if the file sets it (the last assignment wins, as in Docker).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.lines.iter().rev().find_map(|line| match line {
            Line::Entry { name: entry, value } if entry == name => Some(value.as_str()),
            _ => None,
        })
    }

    /// Every name set, with its value.
    #[must_use]
    pub fn values(&self) -> BTreeMap<&str, &str> {
        self.lines
            .iter()
            .filter_map(|line| match line {
                Line::Entry { name, value } => Some((name.as_str(), value.as_str())),
                Line::Other(_) => None,
            })
            .collect()
    }

    /// Sets `name`, in place when present, else appended after an optional comment.
    pub fn set(&mut self, name: &str, value: String, comment: Option<&str>) {
        for line in self.lines.iter_mut().rev() {
            if let Line::Entry { name: entry, value: current } = line {
                if entry == name {
                    *current = value;
                    return;
                }
            }
        }
        if let Some(comment) = comment {
            self.lines.push(Line::Other(format!("# {comment}")));
        }
        self.lines.push(Line::Entry { name: name.to_owned(), value });
    }

    #[must_use]
    pub fn render(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            match line {
                Line::Other(other) => text.push_str(other),
                Line::Entry { name, value } => {
                    text.push_str(name);
                    text.push('=');
                    text.push_str(value);
                }
            }
            text.push('\n');
        }
        text
    }

    /// Writes the file atomically (a temporary file in the same folder, then a rename), mode 0600
    /// from the first byte. A symlink is written through to its target, which keeps its owner;
    /// folders created on the way are private (0700).
    pub fn write(&self) -> Result<(), EnvFileError> {
        let error = |source| EnvFileError::Write { path: self.path.clone(), source };
        let folder = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !folder.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&folder).map_err(error)?;
        }
        crate::atomic::write_file(&self.path, self.render().as_bytes(), 0o600).map_err(error)
    }
}

/// Lower-case hexadecimal, two digits a byte.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// How `secrets generate` fills a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// `n` random bytes, hex-encoded.
    Hex(usize),
    /// `n` random bytes, URL-safe base64 (RFC 4648 §5, padded), so the value can sit in a URL.
    Base64(usize),
    /// Cannot be generated: written empty for the operator to fill in.
    Placeholder,
}

/// The secrets `secrets generate` knows, with how to make them and what they are for.
pub const KNOWN_SECRETS: &[(&str, Recipe, &str)] = &[
    ("JWT_SECRET", Recipe::Hex(64), "signs the API's access tokens (64 random bytes, hex)"),
    // URL-safe base64: the password goes inside `REDIS_URL`, where `/` would end the authority.
    ("REDIS_PASSWORD", Recipe::Base64(32), "Redis `requirepass` (32 random bytes, URL-safe base64)"),
    ("ENCRYPTION_KEY", Recipe::Hex(32), "encrypts n8n's stored credentials (32 random bytes, hex)"),
    ("DATABASE_URL", Recipe::Placeholder, "PostgreSQL connection URL, e.g. postgres://user:password@host:5432/db"),
    ("GEMINI_API_KEY", Recipe::Placeholder, "Google Gemini API key"),
    (
        RESTIC_PASSWORD,
        Recipe::Base64(32),
        "the restic repository's password (32 random bytes, URL-safe base64): the backups cannot be read without it, so keep a copy off this host",
    ),
];

/// The backup repository's password (`[backup] password`).
pub const RESTIC_PASSWORD: &str = "RESTIC_PASSWORD";

/// Generated secrets that `secrets generate --force NAME` must not make anew, with why: a new
/// `RESTIC_PASSWORD` in the env file would not open the repository, whose key holds the old one.
pub const NOT_ROTATED: &[(&str, &str)] = &[(
    RESTIC_PASSWORD,
    "the repository's key holds the current one: change it with `restic key passwd`, then write the new one in the env file",
)];

/// The recipe and description for `name`; unknown names are placeholders.
#[must_use]
pub fn recipe_for(name: &str) -> (Recipe, &'static str) {
    KNOWN_SECRETS
        .iter()
        .find(|(known, _, _)| *known == name)
        .map_or((Recipe::Placeholder, "referenced by deploy.toml"), |(_, recipe, about)| (*recipe, *about))
}

/// Makes a value following `recipe`, from the operating system's random source.
pub fn generate(recipe: Recipe) -> Result<Option<String>, getrandom::Error> {
    let random = |length| -> Result<Vec<u8>, getrandom::Error> {
        let mut bytes = vec![0; length];
        getrandom::fill(&mut bytes)?;
        Ok(bytes)
    };
    Ok(match recipe {
        Recipe::Hex(length) => Some(hex(&random(length)?)),
        Recipe::Base64(length) => Some(base64::engine::general_purpose::URL_SAFE.encode(random(length)?)),
        Recipe::Placeholder => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_and_checked() {
        assert_eq!(references_in("redis://:${REDIS_PASSWORD}@redis:6379").unwrap(), ["REDIS_PASSWORD"]);
        assert_eq!(references_in("${A}${B_2}").unwrap(), ["A", "B_2"]);
        assert!(references_in("cost: $$5").unwrap().is_empty());
        assert!(references_in("plain").unwrap().is_empty());
        assert_eq!(
            references_in("${unclosed").unwrap_err().to_string(),
            "unclosed `${` in `${unclosed`\nhint: close it: `${NAME}`"
        );
        assert_eq!(
            references_in("${1BAD}").unwrap_err().to_string(),
            "`${1BAD}` is not a secret name\nhint: a name is letters, digits and `_`, not starting with a digit, like `${JWT_SECRET}`"
        );
        assert_eq!(
            references_in("$HOME").unwrap_err().to_string(),
            "a lone `$` in `$HOME`\nhint: write `${NAME}` for a secret or `$$` for a literal `$`"
        );
    }

    #[test]
    fn references_are_rewritten_and_the_rest_kept() {
        let rewritten = map_references("redis://:${REDIS_PASSWORD}@redis:6379/$$0", |name| format!("<{name}>"));
        assert_eq!(rewritten, "redis://:<REDIS_PASSWORD>@redis:6379/$$0");
    }

    #[test]
    fn references_resolve_in_order_of_their_checks() {
        let path = Path::new("/etc/masstock/.env");
        let file = EnvFile::parse(path, "PASSWORD=a-b.c\nEMPTY=\nSLASHED=a/b\n").unwrap();
        let resolve = |declared| resolve(declared, Some(&file), path);
        assert_eq!(resolve("redis://:${PASSWORD}@redis:6379/$$"), Ok("redis://:a-b.c@redis:6379/$".to_owned()));
        assert_eq!(resolve("plain"), Ok("plain".to_owned()));
        assert!(matches!(resolve("${oops"), Err(ResolveError::Syntax(ReferenceError::Unclosed { .. }))));
        assert_eq!(
            super::resolve("${A}${B}", None, path),
            Err(ResolveError::NoEnvFile { path: path.to_path_buf(), names: vec!["A".into(), "B".into()] })
        );
        assert_eq!(
            resolve("${EMPTY}${PASSWORD}${MISSING}"),
            Err(ResolveError::Unset { path: path.to_path_buf(), names: vec!["EMPTY".into(), "MISSING".into()] })
        );
        assert_eq!(
            resolve("postgres://u:${SLASHED}@db/x"),
            Err(ResolveError::BreaksUrl { path: path.to_path_buf(), name: "SLASHED".into() })
        );
        // Outside a URL, any value goes.
        assert_eq!(resolve("${SLASHED}"), Ok("a/b".to_owned()));
        assert_eq!(super::resolve("no secret", None, path), Ok("no secret".to_owned()));
        // What `health` and `doctor` splice: the URL as the containers get it, broken or not, and
        // every other check as before.
        let splice = |declared| resolve_with(declared, Some(&file), path, UrlRule::Skip);
        assert_eq!(splice("postgres://u:${SLASHED}@db/x"), Ok("postgres://u:a/b@db/x".to_owned()));
        assert_eq!(
            splice("postgres://u:${EMPTY}@db/x"),
            Err(ResolveError::Unset { path: path.to_path_buf(), names: vec!["EMPTY".into()] })
        );
    }

    #[test]
    fn debug_output_shows_no_value() {
        let file = EnvFile::parse(Path::new(".env"), "JWT_SECRET=very-secret\n").unwrap();
        let debug = format!("{file:?}");
        assert!(debug.contains("JWT_SECRET") && !debug.contains("very-secret"), "{debug}");
    }

    #[test]
    fn env_files_round_trip_with_comments() {
        let text = "# MasStock secrets\nJWT_SECRET=abc\n\nexport REDIS_PASSWORD=a+b/c==\n";
        let mut file = EnvFile::parse(Path::new(".env"), text).unwrap();
        assert_eq!(file.get("REDIS_PASSWORD"), Some("a+b/c=="));
        file.set("JWT_SECRET", "def".into(), None);
        file.set("GEMINI_API_KEY", String::new(), Some("Gemini"));
        assert_eq!(
            file.render(),
            "# MasStock secrets\nJWT_SECRET=def\n\nREDIS_PASSWORD=a+b/c==\n# Gemini\nGEMINI_API_KEY=\n"
        );
        assert!(matches!(EnvFile::parse(Path::new(".env"), "oops\n"), Err(EnvFileError::Syntax { line: 1, .. })));
    }

    #[test]
    fn generated_values_have_the_asked_size() {
        let hex = generate(Recipe::Hex(64)).unwrap().unwrap();
        assert_eq!(hex.len(), 128);
        assert!(hex.bytes().all(|byte| byte.is_ascii_hexdigit()));
        let base64 = generate(Recipe::Base64(32)).unwrap().unwrap();
        assert!(!base64.contains(['/', '+']), "URL-safe alphabet: {base64}");
        assert_eq!(base64::engine::general_purpose::URL_SAFE.decode(base64).unwrap().len(), 32);
        assert_ne!(generate(Recipe::Hex(32)).unwrap(), generate(Recipe::Hex(32)).unwrap());
        assert_eq!(generate(Recipe::Placeholder).unwrap(), None);
    }
}
