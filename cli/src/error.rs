//! The errors a command reports, classified by whose move it is, each with its exit status.

use std::process::ExitCode;

use crate::certs::lifecycle::CertsError;
use crate::config::{ConfigError, Diagnostic};
use crate::deploy::edge::EdgeError;
use crate::deploy::lock::LockError;
use crate::deploy::rollout::UnknownService;
use crate::deploy::spec::SpecError;
use crate::deploy::PlanError;
use crate::docker::build::ImageError;
use crate::docker::DockerError;
use crate::runtime::RuntimeError;

/// Whose move it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The operation failed, or a check found a problem: exit 1.
    Failure,
    /// Bad usage or invalid configuration: exit 2.
    Usage,
}

/// An error as the operator sees it: what failed, why (the source chain), and what to do.
#[derive(Debug)]
pub struct CommandError {
    pub kind: ErrorKind,
    pub error: Box<dyn std::error::Error + Send + Sync>,
    /// Located problems in deploy.toml, printed before the error itself.
    pub diagnostics: Vec<Diagnostic>,
    pub hints: Vec<String>,
}

impl CommandError {
    pub fn failure(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { kind: ErrorKind::Failure, error: error.into(), diagnostics: Vec::new(), hints: Vec::new() }
    }

    pub fn usage(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { kind: ErrorKind::Usage, error: error.into(), diagnostics: Vec::new(), hints: Vec::new() }
    }

    /// A library error as the command reports it: its kind, decided by the library (`usage`), and
    /// the hints it carries (a `Vec`, or an `Option` for errors with at most one).
    fn classified(
        error: impl std::error::Error + Send + Sync + 'static,
        usage: bool,
        hints: impl IntoIterator<Item = String>,
    ) -> Self {
        let command_error = if usage { Self::usage(error) } else { Self::failure(error) };
        Self { hints: hints.into_iter().collect(), ..command_error }
    }

    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        match self.kind {
            ErrorKind::Failure => ExitCode::from(1),
            ErrorKind::Usage => ExitCode::from(2),
        }
    }

    /// The error and its causes, outermost first.
    #[must_use]
    pub fn chain(&self) -> Vec<String> {
        chain(&*self.error)
    }
}

/// An error and its causes on one line, joined by `: `.
#[must_use]
pub fn chain_line(error: &(dyn std::error::Error + 'static)) -> String {
    chain(error).join(": ")
}

/// An error and its causes, outermost first.
#[must_use]
pub fn chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut chain = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    chain
}

impl From<ConfigError> for CommandError {
    fn from(error: ConfigError) -> Self {
        match error {
            ConfigError::Invalid { path, diagnostics } => {
                let error = ConfigError::Invalid { path, diagnostics: diagnostics.clone() };
                Self { kind: ErrorKind::Usage, error: Box::new(error), diagnostics, hints: Vec::new() }
            }
            read @ ConfigError::Read { .. } => Self::usage(read)
                .with_hint("pass `--config FILE`, or run masstockctl from the folder that holds deploy.toml"),
        }
    }
}

impl From<crate::systemd::UnitError> for CommandError {
    fn from(error: crate::systemd::UnitError) -> Self {
        let hints = error.hints();
        Self::classified(error, false, hints)
    }
}

impl From<crate::systemd::SystemctlError> for CommandError {
    fn from(error: crate::systemd::SystemctlError) -> Self {
        let hints = error.hints();
        Self::classified(error, false, hints)
    }
}

impl From<crate::systemd::InstallError> for CommandError {
    fn from(error: crate::systemd::InstallError) -> Self {
        match error {
            crate::systemd::InstallError::Unit(error) => error.into(),
            crate::systemd::InstallError::Systemctl(error) => error.into(),
        }
    }
}

impl From<LockError> for CommandError {
    fn from(error: LockError) -> Self {
        let hints = error.hints();
        Self::classified(error, false, hints)
    }
}

impl From<RuntimeError> for CommandError {
    fn from(error: RuntimeError) -> Self {
        Self::failure(error)
    }
}

impl From<UnknownService> for CommandError {
    fn from(error: UnknownService) -> Self {
        let hint = error.hint();
        Self::classified(error, true, [hint])
    }
}

impl From<EdgeError> for CommandError {
    fn from(error: EdgeError) -> Self {
        let hint = error.hint().map(str::to_owned);
        Self::classified(error, false, hint)
    }
}

impl From<DockerError> for CommandError {
    fn from(error: DockerError) -> Self {
        let hint = error.hint().map(str::to_owned);
        Self::classified(error, false, hint)
    }
}

impl From<CertsError> for CommandError {
    fn from(error: CertsError) -> Self {
        let (usage, hints) = (error.is_usage(), error.hints());
        Self::classified(error, usage, hints)
    }
}

impl From<ImageError> for CommandError {
    fn from(error: ImageError) -> Self {
        let (usage, hints) = (error.is_usage(), error.hints());
        Self::classified(error, usage, hints)
    }
}

impl From<crate::deploy::secret_files::SecretFilesError> for CommandError {
    fn from(error: crate::deploy::secret_files::SecretFilesError) -> Self {
        Self::failure(error)
            .with_hint("`[project] state_dir` must be a folder this user can write (deploy runs as root)")
    }
}

impl From<SpecError> for CommandError {
    fn from(error: SpecError) -> Self {
        let (usage, hint) = (error.is_usage(), error.hint());
        Self::classified(error, usage, hint)
    }
}

impl From<PlanError> for CommandError {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::Spec(error) => error.into(),
            PlanError::Docker(error) => error.into(),
            no_image @ PlanError::NoImage(_) => Self::failure(no_image),
            PlanError::Render(error) => Self::failure(error),
        }
    }
}

impl From<crate::backup::restic::ResticError> for CommandError {
    fn from(error: crate::backup::restic::ResticError) -> Self {
        // A snapshot id that is not there is bad input, as an unknown service is.
        let usage = matches!(
            error,
            crate::backup::restic::ResticError::NotDeclared | crate::backup::restic::ResticError::NoSuchSnapshot { .. }
        );
        let hints = error.hints();
        Self::classified(error, usage, hints)
    }
}

impl From<crate::backup::run::RunError> for CommandError {
    fn from(error: crate::backup::run::RunError) -> Self {
        match error {
            crate::backup::run::RunError::Restic(error) => error.into(),
            other => {
                let hints = other.hints();
                Self::classified(other, false, hints)
            }
        }
    }
}

impl From<crate::backup::restore::RestoreError> for CommandError {
    fn from(error: crate::backup::restore::RestoreError) -> Self {
        match error {
            crate::backup::restore::RestoreError::Restic(error) => error.into(),
            ambiguous @ crate::backup::restore::RestoreError::Ambiguous { .. } => {
                let hints = ambiguous.hints();
                Self::classified(ambiguous, true, hints)
            }
            other => {
                let hints = other.hints();
                Self::classified(other, false, hints)
            }
        }
    }
}

impl From<crate::backup::run::ComponentChoiceError> for CommandError {
    fn from(error: crate::backup::run::ComponentChoiceError) -> Self {
        let hints = error.hints();
        Self::classified(error, true, hints)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::secrets::{ReferenceError, ResolveError};

    fn said(error: &CommandError) -> (ErrorKind, Vec<String>, Vec<String>) {
        (error.kind, error.chain(), error.hints.clone())
    }

    #[test]
    fn a_plan_error_reads_as_the_command_said_it() {
        let file = PathBuf::from("/opt/masstock/.env.production");
        let missing = vec!["JWT_SECRET".to_owned(), "REDIS_PASSWORD".to_owned()];
        let no_env_file = PlanError::Spec(SpecError::NoEnvFile {
            service: "api".into(),
            file: file.clone(),
            missing: missing.clone(),
        });
        assert_eq!(
            said(&no_env_file.into()),
            (
                ErrorKind::Failure,
                vec!["the env file `/opt/masstock/.env.production` does not exist; service `api` needs JWT_SECRET, REDIS_PASSWORD".to_owned()],
                vec!["create it with `masstockctl secrets generate`, then fill in the values it leaves empty".to_owned()],
            )
        );
        let unset = PlanError::Spec(SpecError::Unset { service: "api".into(), file, missing });
        assert_eq!(
            said(&unset.into()),
            (
                ErrorKind::Failure,
                vec!["service `api` needs JWT_SECRET, REDIS_PASSWORD but `/opt/masstock/.env.production` leaves it empty".to_owned()],
                vec!["set JWT_SECRET, REDIS_PASSWORD in `/opt/masstock/.env.production`".to_owned()],
            )
        );
        let invalid = SpecError::Invalid {
            service: "api".into(),
            key: "REDIS_URL".into(),
            error: ResolveError::Syntax(ReferenceError::LoneDollar { value: "a$b".into() }),
        };
        assert_eq!(
            said(&PlanError::Spec(invalid).into()),
            (ErrorKind::Usage, vec!["`REDIS_URL` of service `api`: a lone `$` in `a$b`\nhint: write `${NAME}` for a secret or `$$` for a literal `$`".to_owned()], vec![])
        );
        assert_eq!(
            said(&PlanError::Spec(SpecError::NoService("nope".into())).into()),
            (ErrorKind::Usage, vec!["no service `nope` in deploy.toml".to_owned()], vec![])
        );
        assert_eq!(
            said(&PlanError::NoImage("api".into()).into()),
            (ErrorKind::Failure, vec!["no image was prepared for service `api`".to_owned()], vec![])
        );
        let engine = PlanError::Docker(DockerError::Api {
            doing: "failed to inspect volume `v`".into(),
            message: "boom".into(),
        });
        assert_eq!(
            said(&engine.into()),
            (ErrorKind::Failure, vec!["failed to inspect volume `v`: boom".to_owned()], vec![])
        );
    }
}
