//! Settings from the environment: errors that name the variable, never a secret's value.

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
