//! Settings from the environment: errors that name the variable, never a secret's value, and
//! secrets read from the file `NAME_FILE` names before the variable `NAME`.

use crate::Secret;

/// A configuration problem, naming the variable and never a secret's value.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

pub fn problem(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { variable, problem: problem.into() }
}

/// Checks a URL's scheme without ever printing the URL (it holds a password).
pub fn check_url(variable: &'static str, url: &Secret, schemes: &[&str]) -> Result<Secret, ConfigError> {
    let scheme = url.expose().split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some(scheme) if schemes.contains(&scheme) => Ok(url.clone()),
        // Only something shaped like a scheme is echoed: text before `://` may hold a password.
        Some(scheme)
            if scheme.len() <= 16
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) =>
        {
            Err(problem(variable, format!("scheme `{scheme}` is not one of {}", schemes.join(", "))))
        }
        None if url.expose().is_empty() => Err(problem(variable, "is empty")),
        Some(_) | None => Err(problem(variable, format!("is not a URL (expected `{}://...`)", schemes[0]))),
    }
}

/// A secret's `NAME_FILE` that cannot be read: names the variable and the path, never the content.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: cannot read `{}`: {reason}", .path.display())]
pub struct SecretFileError {
    pub variable: String,
    pub path: std::path::PathBuf,
    pub reason: String,
}

/// `NAME_FILE` before `NAME`, for every argument of `command` (and of its subcommands) read from
/// an environment variable `NAME`: when `NAME_FILE` is set, the argument's value is the file's
/// content (one trailing newline dropped), and `NAME` is ignored. This is how deploy hands
/// secrets to containers (`/run/secrets/NAME`, mode 0400), so they are in no environment that
/// `docker inspect` or `/proc/<pid>/environ` shows; `NAME` keeps working for tests and local runs.
/// The value becomes the argument's hidden default, so `--help` never shows it.
pub fn read_secret_files(command: clap::Command) -> Result<clap::Command, SecretFileError> {
    read_secret_files_with(command, &|variable| std::env::var_os(variable))
}

fn read_secret_files_with(
    mut command: clap::Command,
    lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<clap::Command, SecretFileError> {
    let mut found = Vec::new();
    for argument in command.get_arguments() {
        let Some(variable) = argument.get_env().and_then(|variable| variable.to_str()) else { continue };
        let file_variable = format!("{variable}_FILE");
        if let Some(path) = lookup(&file_variable) {
            let value = read_secret_file(&file_variable, std::path::Path::new(&path))?;
            found.push((argument.get_id().clone(), value));
        }
    }
    for (id, value) in found {
        command = command.mut_arg(id, |argument| {
            argument.required(false).env(None::<&'static str>).default_value(value).hide_default_value(true)
        });
    }
    let subcommands: Vec<clap::Command> = command.get_subcommands().cloned().collect();
    for subcommand in subcommands {
        let name = subcommand.get_name().to_owned();
        let read = read_secret_files_with(subcommand, lookup)?;
        command = command.mut_subcommand(name, |_| read);
    }
    Ok(command)
}

/// The content of the file `variable` names, without one trailing newline (`\n` or `\r\n`).
pub fn read_secret_file(variable: &str, path: &std::path::Path) -> Result<String, SecretFileError> {
    let error = |reason: String| SecretFileError { variable: variable.to_owned(), path: path.to_path_buf(), reason };
    #[allow(clippy::disallowed_methods)] // `SecretFileError` names the path and the variable; fs_err's would too.
    let bytes = std::fs::read(path).map_err(|io| error(io.kind().to_string()))?;
    let mut text = String::from_utf8(bytes).map_err(|_| error("it is not UTF-8".to_owned()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn command() -> clap::Command {
        clap::Command::new("service").subcommand(
            clap::Command::new("serve")
                .arg(clap::Arg::new("jwt").long("jwt-secret").env("JWT_SECRET").required(true).hide_env_values(true))
                .arg(clap::Arg::new("port").long("port").env("PORT").default_value("3000")),
        )
    }

    /// A file of its own under the system's temporary folder, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str, content: &str) -> Self {
            let path = std::env::temp_dir().join(format!("kit-config-{}-{name}", std::process::id()));
            #[allow(clippy::disallowed_methods)]
            std::fs::write(&path, content).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            #[allow(clippy::disallowed_methods)]
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn serve_value(command: clap::Command, id: &str) -> Option<String> {
        let matches = command.try_get_matches_from(["service", "serve"]).unwrap();
        matches.subcommand_matches("serve").unwrap().get_one::<String>(id).cloned()
    }

    #[test]
    fn a_file_is_read_before_the_variable_without_its_trailing_newline() {
        let file = TempFile::new("jwt", "from-the-file\n");
        let path = file.0.clone();
        let lookup = move |variable: &str| match variable {
            "JWT_SECRET_FILE" => Some(OsString::from(&path)),
            _ => None,
        };
        let command = read_secret_files_with(command(), &lookup).unwrap();
        assert_eq!(serve_value(command.clone(), "jwt").as_deref(), Some("from-the-file"));
        assert_eq!(serve_value(command.clone(), "port").as_deref(), Some("3000"), "others untouched");
        let mut help = command.find_subcommand("serve").unwrap().clone();
        let help = help.render_long_help().to_string();
        assert!(!help.contains("from-the-file"), "{help}");
        assert_eq!(read_secret_file("X_FILE", &TempFile::new("crlf", "a\r\n").0).unwrap(), "a");
        assert_eq!(read_secret_file("X_FILE", &TempFile::new("two", "a\n\n").0).unwrap(), "a\n", "one newline only");
    }

    #[test]
    fn without_a_file_variable_the_command_is_as_declared() {
        let command = read_secret_files_with(command(), &|_| None).unwrap();
        let missing = command.try_get_matches_from(["service", "serve"]).unwrap_err();
        assert_eq!(missing.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn an_unreadable_file_names_the_variable_and_the_path_never_the_content() {
        // Tests run as root, which reads any mode: a folder is what cannot be read here.
        let missing = std::env::temp_dir().join("kit-config-no-such-file");
        for path in [missing, std::env::temp_dir()] {
            let lookup = |variable: &str| (variable == "JWT_SECRET_FILE").then(|| OsString::from(&path));
            let error = read_secret_files_with(command(), &lookup).unwrap_err().to_string();
            assert!(error.starts_with("JWT_SECRET_FILE: cannot read `"), "{error}");
            assert!(error.contains(&format!("`{}`", path.display())), "{error}");
        }
    }
}
