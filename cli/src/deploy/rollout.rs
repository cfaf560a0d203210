//! The flow `deploy` and `rollback` share, and the checks `restart` shares with them: the
//! services named on the command line are declared, the images are ready, and a plan is applied
//! and summed up. What is printed is the caller's choice: the summary comes back as data.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use serde_json::{json, Value};

use crate::config::Stack;
use crate::deploy::apply::{self, ApplyOptions, Outcome};
use crate::deploy::spec::ImageChoice;
use crate::deploy::wait::Unready;
use crate::deploy::Plan;
use crate::docker::build::{prepare_images, BuildOptions, ImageError};
use crate::report::Reporter;

/// A service named on the command line that the environment does not declare (or disables).
#[derive(Debug, thiserror::Error)]
#[error("no enabled service `{service}` in environment `{environment}`")]
pub struct UnknownService {
    pub service: String,
    pub environment: String,
    /// The services it does declare, to say which names would do.
    pub declared: Vec<String>,
}

impl UnknownService {
    #[must_use]
    pub fn hint(&self) -> String {
        format!("the services are: {}", self.declared.join(", "))
    }
}

/// Rejects service names deploy.toml does not declare (or disables).
pub fn check_services(stack: &Stack, services: &[String]) -> Result<(), UnknownService> {
    let declared: Vec<&str> = stack.services().map(|(name, _)| name).collect();
    match services.iter().find(|service| !declared.contains(&service.as_str())) {
        Some(service) => Err(UnknownService {
            service: service.clone(),
            environment: stack.environment.clone(),
            declared: declared.into_iter().map(str::to_owned).collect(),
        }),
        None => Ok(()),
    }
}

/// The images to deploy: ours built (or reused when their inputs did not change), third-party
/// ones pulled when absent. Fails before anything of the stack changes.
pub async fn images_for(
    docker: &Docker,
    stack: &Stack,
    services: &[String],
    build: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<BTreeMap<String, ImageChoice>, ImageError> {
    let prepared = prepare_images(docker, stack, services, build, reporter).await?;
    Ok(prepared
        .into_iter()
        .map(|(service, image)| (service, ImageChoice { reference: image.reference, id: image.id, user: None }))
        .collect())
}

/// What applying a plan came to, from the command's start.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub outcome: Outcome,
    /// Since the command started (images and plan included), in seconds.
    pub seconds: f64,
}

/// Applies `plan`, each new container getting `timeout` to become ready.
pub async fn roll_out(
    docker: &Docker,
    stack: &Stack,
    plan: &Plan,
    timeout: Duration,
    reporter: &dyn Reporter,
    started: Instant,
) -> Rollout {
    let options = ApplyOptions { ready_timeout: timeout };
    let outcome = apply::apply(docker, stack, plan, &options, reporter).await;
    Rollout { outcome, seconds: started.elapsed().as_secs_f64() }
}

impl Rollout {
    /// `--json`'s document: the plan, what was done, and how long it took.
    #[must_use]
    pub fn to_json(&self, plan: &Plan) -> Value {
        json!({ "plan": plan.to_json(), "outcome": self.outcome.to_json(), "seconds": (self.seconds * 10.0).round() / 10.0 })
    }

    /// One message per failure (the service's, then the edge's, then the verdict); empty when
    /// every step succeeded.
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for failed in self.outcome.services.iter().filter(|service| !service.ok) {
            let evidence = failed.unready.as_ref().map(Unready::to_text).unwrap_or_default();
            failures.push(format!("{}: {} failed: {}\n{evidence}", failed.service, failed.action, failed.detail));
        }
        if let Some(edge) = self.outcome.edge.as_deref().filter(|edge| edge.starts_with("failed")) {
            failures.push(format!("edge: {edge}"));
        }
        if self.outcome.failed {
            failures.push(format!(
                "deploy failed after {:.1}s; the services not listed above were left as they were.",
                self.seconds
            ));
        }
        failures
    }

    /// The line that says it is done.
    #[must_use]
    pub fn done(&self, stack: &Stack) -> String {
        format!("Deployed environment `{}` in {:.1}s.", stack.environment, self.seconds)
    }

    /// Where the stack now answers: one line per site.
    #[must_use]
    pub fn sites(stack: &Stack) -> Vec<String> {
        let edge = &stack.config.edge;
        let suffix = if edge.https_port == 443 { String::new() } else { format!(":{}", edge.https_port) };
        stack.sites().map(|(_, site)| format!("  https://{}{suffix}/  ({})", site.domain, site.service)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn stack() -> Stack {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml");
        Stack::load(&path, "production").expect("the shipped deploy.toml is valid")
    }

    #[test]
    fn an_undeclared_service_is_named_with_the_declared_ones() {
        let stack = stack();
        check_services(&stack, &["api".to_owned()]).expect("api is declared");
        let error = check_services(&stack, &["api".to_owned(), "apy".to_owned()]).unwrap_err();
        assert_eq!(error.to_string(), "no enabled service `apy` in environment `production`");
        assert!(error.hint().starts_with("the services are: ") && error.hint().contains("api"), "{}", error.hint());
    }

    #[test]
    fn a_failed_rollout_says_what_failed_and_a_good_one_where_it_answers() {
        let stack = stack();
        let failed = Rollout {
            outcome: Outcome {
                services: vec![apply::ServiceOutcome {
                    service: "api".into(),
                    action: "create".into(),
                    ok: false,
                    seconds: 1.0,
                    detail: "failed to start".into(),
                    unready: None,
                }],
                edge: Some("failed: nginx -t".into()),
                failed: true,
            },
            seconds: 2.31,
        };
        assert_eq!(
            failed.failures(),
            [
                "api: create failed: failed to start\n",
                "edge: failed: nginx -t",
                "deploy failed after 2.3s; the services not listed above were left as they were.",
            ]
        );
        let done = Rollout { outcome: Outcome::default(), seconds: 3.0 };
        assert!(done.failures().is_empty());
        assert_eq!(done.done(&stack), "Deployed environment `production` in 3.0s.");
        assert!(
            Rollout::sites(&stack).iter().all(|site| site.starts_with("  https://")),
            "{:?}",
            Rollout::sites(&stack)
        );
    }
}
