//! Waiting for a container to be ready, and saying why it is not.
//!
//! Docker runs a health check first after `interval` (30 s for the api), and the engine here
//! (API 1.41) has no `start_interval`. So the wait also runs the service's own health test inside
//! the container (an exec, what Docker would run) every half second: a container is ready as
//! soon as the test passes once, or Docker says `healthy`. A container that exits or restarts
//! fails at once; one still not ready at the deadline fails with its evidence.

use std::time::Duration;

use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::docker;

const POLL: Duration = Duration::from_millis(500);
/// Log lines shown for a container that failed.
const LOG_LINES: usize = 20;

/// What ready means for a service.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The health test's command line, run inside the container; `None` when the service has no
    /// health check (running is ready).
    pub probe: Option<Vec<String>>,
    pub probe_timeout: Duration,
}

/// Why a container is not ready, with the evidence an operator needs.
#[derive(Debug, Clone)]
pub struct Unready {
    pub container: String,
    pub reason: String,
    pub state: String,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub restarts: i64,
    /// Docker's health-check log: `exit N: output`, oldest first.
    pub health_log: Vec<String>,
    /// Our last run of the health test.
    pub last_probe: Option<String>,
    pub logs: Vec<String>,
}

impl Unready {
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "container": self.container,
            "reason": self.reason,
            "state": self.state,
            "exit_code": self.exit_code,
            "oom_killed": self.oom_killed,
            "restarts": self.restarts,
            "health_log": self.health_log,
            "last_probe": self.last_probe,
            "logs": self.logs,
        })
    }

    #[must_use]
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut text = format!("{}: {}\n", self.container, self.reason);
        let exit = self.exit_code.map_or_else(|| "none".to_owned(), |code| code.to_string());
        let _ = writeln!(
            text,
            "  state {}, exit code {exit}, OOMKilled {}, restarts {}",
            self.state, self.oom_killed, self.restarts
        );
        if let Some(probe) = &self.last_probe {
            let _ = writeln!(text, "  health test (run by masstockctl): {probe}");
        }
        if !self.health_log.is_empty() {
            let _ = writeln!(text, "  health-check log (Docker):");
            for entry in &self.health_log {
                let _ = writeln!(text, "    {entry}");
            }
        }
        if self.logs.is_empty() {
            let _ = writeln!(text, "  no log lines");
        } else {
            let _ = writeln!(text, "  last {} log lines:", self.logs.len());
            for line in &self.logs {
                let _ = writeln!(text, "    {line}");
            }
        }
        text
    }
}

/// Waits until `container` is ready, at most `timeout`.
pub async fn until_ready(
    docker: &Docker,
    container: &str,
    readiness: &Readiness,
    timeout: Duration,
) -> Result<(), Box<Unready>> {
    let deadline = Instant::now() + timeout;
    let mut last_probe = None;
    loop {
        let inspected = match docker.inspect_container(container, None).await {
            Ok(inspected) => inspected,
            Err(error) => {
                return Err(Box::new(
                    evidence(
                        docker,
                        container,
                        format!("cannot be inspected: {}", docker::engine_message(&error)),
                        last_probe,
                    )
                    .await,
                ))
            }
        };
        let state = inspected.state.unwrap_or_default();
        let restarts = inspected.restart_count.unwrap_or_default();
        match state.status {
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => {
                let code = state.exit_code.unwrap_or_default();
                return Err(Box::new(
                    evidence(docker, container, format!("exited with code {code} before it was ready"), last_probe)
                        .await,
                ));
            }
            Some(ContainerStateStatusEnum::RESTARTING) => {
                return Err(Box::new(
                    evidence(docker, container, "crashed and is restarting".to_owned(), last_probe).await,
                ));
            }
            _ if restarts > 0 => {
                return Err(Box::new(
                    evidence(docker, container, format!("crashed and was restarted {restarts} time(s)"), last_probe)
                        .await,
                ));
            }
            Some(ContainerStateStatusEnum::RUNNING) => {
                let docker_healthy =
                    state.health.as_ref().and_then(|health| health.status) == Some(HealthStatusEnum::HEALTHY);
                match &readiness.probe {
                    None => return Ok(()),
                    Some(_) if docker_healthy => return Ok(()),
                    Some(probe) => match run_probe(docker, container, probe, readiness.probe_timeout).await {
                        Ok(()) => return Ok(()),
                        Err(failure) => last_probe = Some(failure.to_string()),
                    },
                }
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            let reason = format!("not healthy after {}s", timeout.as_secs());
            return Err(Box::new(evidence(docker, container, reason, last_probe).await));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The command line of a Docker health test (`["CMD", …]` or `["CMD-SHELL", "…"]`), as an exec
/// runs it; `None` for `NONE` or an empty test.
#[must_use]
pub fn probe_command(test: &[String]) -> Option<Vec<String>> {
    match test.split_first() {
        Some((kind, command)) if kind == "CMD" && !command.is_empty() => Some(command.to_vec()),
        Some((kind, shell)) if kind == "CMD-SHELL" => {
            Some(["/bin/sh".to_owned(), "-c".to_owned()].into_iter().chain(shell.iter().cloned()).collect())
        }
        _ => None,
    }
}

/// Why a health test run inside a container did not pass.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The engine refused the exec: its own message.
    #[error("{0}")]
    Engine(String),
    /// The test ran and exited non-zero (`None` when the engine did not say): what it printed, on one line.
    #[error("exit {}: {said}", .code.map_or_else(|| "?".to_owned(), |code| code.to_string()))]
    Failed { code: Option<i64>, said: String },
    #[error("no answer within {}s", .0.as_secs())]
    TimedOut(Duration),
}

/// Runs the health test inside the container: `Ok` on exit 0, else what it said.
pub async fn run_probe(
    docker: &Docker,
    container: &str,
    command: &[String],
    timeout: Duration,
) -> Result<(), ProbeError> {
    let run = async {
        let (said, code) = docker::exec(docker, container, command)
            .await
            .map_err(|error| ProbeError::Engine(docker::engine_message(&error)))?;
        match code {
            Some(0) => Ok(()),
            code => Err(ProbeError::Failed { code, said: one_line(&said) }),
        }
    };
    tokio::time::timeout(timeout, run).await.unwrap_or(Err(ProbeError::TimedOut(timeout)))
}

/// Gathers what an operator needs to see about a container that is not ready.
pub async fn evidence(docker: &Docker, container: &str, reason: String, last_probe: Option<String>) -> Unready {
    let inspected = docker.inspect_container(container, None).await.ok();
    let state = inspected.as_ref().and_then(|inspected| inspected.state.clone()).unwrap_or_default();
    let health_log = state
        .health
        .as_ref()
        .and_then(|health| health.log.clone())
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            format!("exit {}: {}", entry.exit_code.unwrap_or(-1), one_line(entry.output.as_deref().unwrap_or_default()))
        })
        .collect();
    Unready {
        container: container.to_owned(),
        reason,
        state: state.status.map_or_else(|| "unknown".to_owned(), |status| status.to_string()),
        exit_code: state.exit_code,
        oom_killed: state.oom_killed.unwrap_or(false),
        restarts: inspected.and_then(|inspected| inspected.restart_count).unwrap_or_default(),
        health_log,
        last_probe,
        logs: last_log_lines(docker, container, LOG_LINES).await,
    }
}

/// The container's last `count` lines of output, stdout and stderr interleaved.
pub async fn last_log_lines(docker: &Docker, container: &str, count: usize) -> Vec<String> {
    let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&count.to_string()).build();
    let mut stream = docker.logs(container, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text.lines().map(str::to_owned).collect()
}

fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > 300 {
        format!("{}…", joined.chars().take(300).collect::<String>())
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_probe_says_how_it_failed() {
        let failed = ProbeError::Failed { code: Some(1), said: "connection refused".into() };
        assert_eq!(failed.to_string(), "exit 1: connection refused");
        assert_eq!(ProbeError::Failed { code: None, said: String::new() }.to_string(), "exit ?: ");
        assert_eq!(ProbeError::TimedOut(Duration::from_secs(5)).to_string(), "no answer within 5s");
    }
}
