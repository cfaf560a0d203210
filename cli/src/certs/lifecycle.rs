//! Issuing and renewing the stack's certificates, shared by `certs issue` and `certs renew`:
//! which certificates deploy.toml wants, what is due, one ACME order each, the new version
//! stored in certbot's layout and installed with verification, errors recorded per lineage.
//!
//! Per certificate:
//!
//! 1. **Plan.** deploy.toml's domains make one SAN certificate named after the apex (the folder
//!    `Stack::certificate_paths` gives the nginx site), or one per domain
//!    (`Stack::certificate_lineages`). `renew` walks the lineages in `cert_dir` instead (ours and
//!    certbot's) and asks `due::decide`: the CA's ARI window when `renewal_info` answers, else one
//!    third of the lifetime left.
//! 2. **Account.** `acme::AcmeClient::connect` restores
//!    `accounts/<CA host>/masstockctl/account.json` (0600, atomic write) or registers one (contact,
//!    terms of service, EAB when configured; the HMAC key is only ever a `${NAME}` reference to the
//!    env file). When an order answers `accountDoesNotExist` (a CA that was reset), it registers
//!    again and retries once.
//! 3. **Order and self-check.** All pending HTTP-01 challenges are written to
//!    `<webroot>/.well-known/acme-challenge/` (0644, removed when the order is done, failed or
//!    not), then fetched by us as the CA will (plain HTTP, `Host: <name>`, to
//!    `edge.upstream_host:edge.http_port`), and only when every one answers with its key
//!    authorization is any challenge set ready. A broken webroot or nginx site therefore costs no
//!    failed validation (Let's Encrypt limits those per hour), and the message names the URL.
//! 4. **Retries** (`acme.rs`). instant-acme retries a `badNonce` three times per request; every
//!    ACME operation is wrapped again (`retrying!`): up to 400 more tries for `badNonce` (a new
//!    nonce is in hand, so the pause is short, at most 200 ms), 4 with exponential backoff (0.5 s →
//!    8 s) for timeouts (30 s per request, in our hyper transport), connection failures and 5xx. A
//!    429 is not retried: it is reported with the problem's detail (the limit) and the
//!    `Retry-After` our transport kept, since instant-acme's error drops headers. Order polling
//!    backs off ×1.5 from 250 ms for up to 90 s.
//! 5. **Store.** Key (ECDSA P-256, rcgen; the CSR has an explicit subject), leaf and chain split as
//!    certbot does; `store::write_version` writes `archive/<name>/<kind>N.pem` and switches `live/`.
//! 6. **Verified install** (`install.rs`): `[edge] test_command`, `reload_command` (the deploy's
//!    runner), then a handshake per name until the new serial is served; on any failure the
//!    previous version comes back, the error is recorded for `certs status`, and the command exits
//!    1.
//! 7. **Dry run.** `renew --dry-run` runs 2–5 against `[acme] staging_directory` (account kept in
//!    `state_dir`), stores into a temporary folder and skips 6: nothing in `cert_dir` or nginx
//!    changes.
//!
//! A lock (`<state_dir>/<project>.certs.lock`, the deploy lock's mechanism under another name)
//! keeps a timer's run and an operator's apart. Unlike the deploy lock, a certs lock whose holder
//! no longer runs is taken over: `renew` runs unattended, and a lock left by a reboot must not stop
//! renewals until the certificate expires.
//!
//! What a review made sure renewal cannot do silently (each would stop renewals, or spend Let's
//! Encrypt's 5-a-week duplicate-certificate limit, until expiry):
//!
//! - **Scope.** `renew` works on the certificates deploy.toml declares. A lineage certbot made
//!   under a declared name is taken over; other lineages of the host (another site, a mail
//!   server's) are left to whoever manages them, with their hooks.
//! - **`replaces` refused.** The CA may refuse an order naming the certificate it replaces
//!   (certbot's account issued it, we registered again, it was replaced already): the order goes
//!   again without `replaces`.
//! - **A broken nginx.** `nginx -t` runs before the order: a configuration nginx already refuses
//!   would refuse the new certificate after the CA issued it, at every run.
//! - **New names.** A certificate that lacks a name deploy.toml serves with it is due at once
//!   (`names-changed`, certbot's `--expand`), and `status` exits 1 for it.
//! - **Hangs.** Every retry loop is bounded (`badNonce` 400 with pauses of at most 200 ms, transient
//!   errors 4 with backoff), 429 is never retried, and the systemd unit has
//!   `TimeoutStartSec=30min`.
//! - **One bad lineage** fails alone; the others are renewed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::certs::acme::{AcmeClient, AcmeError, AcmeSettings, Http01, Issued};
use crate::certs::store::{self, CertInfo, Lineage, NewVersion, RenewalConf};
use crate::certs::{due, install};
use crate::config::{CertificateLayout, Stack};
use crate::deploy::lock::{DeployLock, LockError, LockName};
use crate::report::Reporter;
use crate::runtime::RuntimeError;

/// Why `certs issue` or `certs renew` did not get to order anything. A failure of one
/// certificate is not an error: it is that certificate's `Outcome`.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("`--dry-run` needs `[acme] staging_directory`, the CA to rehearse against")]
    NoStagingDirectory,
    #[error("`[acme] eab_hmac_key` must be a `${{NAME}}` reference to the env file")]
    EabNotAReference,
    #[error("secret `{name}` (the EAB HMAC key) is not in `{env_file}`")]
    EabMissing { name: String, env_file: String },
    #[error("secret `{name}` is not base64url, as EAB keys are: {error}")]
    EabNotBase64 { name: String, error: base64::DecodeError },
    /// A name on the command line matches no certificate; `known` are the lineages.
    #[error("no certificate named `{wanted}`")]
    UnknownCertificate { wanted: String, known: Vec<String> },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("failed to reach the ACME CA: {0}")]
    Unreachable(AcmeError),
}

impl CertsError {
    /// Whether deploy.toml or the command line is at fault (exit 2) rather than the operation.
    #[must_use]
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::NoStagingDirectory
                | Self::EabNotAReference
                | Self::EabMissing { .. }
                | Self::EabNotBase64 { .. }
                | Self::UnknownCertificate { .. }
        )
    }

    /// What the operator can do about it.
    #[must_use]
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::NoStagingDirectory => {
                vec!["Let's Encrypt's is `https://acme-staging-v02.api.letsencrypt.org/directory`".to_owned()]
            }
            Self::UnknownCertificate { known, .. } => {
                vec![format!("known: {}", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
            }
            Self::Lock(error) => error.hints(),
            Self::Unreachable(error) => error.hint().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// The error and its causes, outermost first.
    #[must_use]
    pub fn chain(&self) -> Vec<String> {
        crate::error::chain(self)
    }
}

/// The key type written to the renewal configuration (certbot's `key_type`).
const KEY_TYPE: &str = "ecdsa";

/// A certificate deploy.toml asks for: its lineage name and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub lineage: String,
    pub names: Vec<String>,
}

/// The certificates of the stack: one for every domain (`san`; the lineage named as
/// [`Stack::certificate_paths`] names it, which is where the nginx site looks), or one per domain.
#[must_use]
pub fn planned(stack: &Stack) -> Vec<Planned> {
    let mut domains: Vec<String> = stack.sites().map(|(_, site)| site.domain.clone()).collect();
    // The lineage's name (the apex) comes first: it is the subject's common name.
    domains.sort_by_key(|domain| (domain.len(), domain.clone()));
    domains.dedup();
    let mut by_lineage: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for domain in domains {
        by_lineage.entry(lineage_of(stack, &domain)).or_default().push(domain);
    }
    if stack.config.acme.certificates == CertificateLayout::San {
        debug_assert!(by_lineage.len() <= 1);
    }
    by_lineage.into_iter().map(|(lineage, names)| Planned { lineage, names }).collect()
}

fn lineage_of(stack: &Stack, domain: &str) -> String {
    let (fullchain, _) = stack.certificate_paths(domain);
    fullchain
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| domain.to_owned(), |name| name.to_string_lossy().into_owned())
}

/// What happened to one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A new version is live and nginx serves it.
    Issued,
    /// Not due: nothing was done.
    NotDue,
    /// `--dry-run`: the whole flow ran against the staging CA; nothing was changed.
    Rehearsed,
    /// deploy.toml wants it, but it was never issued (`certs issue` does that).
    Missing,
    Failed,
}

/// One certificate's outcome, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub lineage: String,
    pub names: Vec<String>,
    pub action: Action,
    /// The live version afterwards (the new one when issued).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<DateTime<Utc>>,
    /// Why it was or was not due (`renew`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Wall time of the ACME order and the install.
    pub seconds: f64,
}

impl Outcome {
    fn new(lineage: &str, names: &[String], action: Action) -> Self {
        Self {
            lineage: lineage.to_owned(),
            names: names.to_vec(),
            action,
            version: None,
            serial: None,
            not_after: None,
            due: None,
            error: None,
            hint: None,
            seconds: 0.0,
        }
    }
}

/// What `certs renew` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RenewOptions {
    pub force: bool,
    pub dry_run: bool,
    /// Lineage names or domains; empty for all.
    pub only: Vec<String>,
}

/// The ACME settings for the live CA, or the staging one for a dry run.
fn settings(stack: &Stack, dry_run: bool) -> Result<AcmeSettings, CertsError> {
    let acme = &stack.config.acme;
    let directory = if dry_run {
        acme.staging_directory.clone().ok_or(CertsError::NoStagingDirectory)?
    } else {
        acme.directory.clone()
    };
    let eab = match (&acme.eab_kid, &acme.eab_hmac_key) {
        (Some(kid), Some(reference)) => Some((kid.clone(), eab_key(stack, reference)?)),
        _ => None,
    };
    // A rehearsal leaves the certificate folder alone: its account lives in the state folder.
    let accounts_dir =
        if dry_run { stack.config.project.state_dir.join("acme-accounts") } else { acme.cert_dir.join("accounts") };
    Ok(AcmeSettings { directory, email: acme.email.clone(), ca_bundle: acme.ca_bundle.clone(), eab, accounts_dir })
}

/// The raw EAB HMAC key: the env-file secret `reference` names, base64url-decoded.
fn eab_key(stack: &Stack, reference: &str) -> Result<Vec<u8>, CertsError> {
    let name = crate::config::eab_key_reference(reference).ok_or(CertsError::EabNotAReference)?;
    let env_file = stack.config.project.env_file.display().to_string();
    let value = stack
        .secrets
        .env_file
        .as_ref()
        .and_then(|file| file.get(&name))
        .filter(|value| !value.is_empty())
        .ok_or_else(|| CertsError::EabMissing { name: name.clone(), env_file })?;
    let trimmed = value.trim().trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .map_err(|error| CertsError::EabNotBase64 { name, error })
}

fn http01(stack: &Stack) -> Http01 {
    let edge = &stack.config.edge;
    Http01 {
        webroot: stack.config.acme.webroot.clone(),
        edge_http: crate::certs::acme::edge_http(edge.upstream_host, edge.http_port),
    }
}

fn selected(only: &[String], lineage: &str, names: &[String]) -> bool {
    only.is_empty() || only.iter().any(|wanted| wanted == lineage || names.contains(wanted))
}

/// Refuses names that match no certificate, so a typo does not pass for "nothing to do".
fn check_selection(only: &[String], known: &[(String, Vec<String>)]) -> Result<(), CertsError> {
    for wanted in only {
        if !known.iter().any(|(lineage, names)| lineage == wanted || names.contains(wanted)) {
            let known = known.iter().map(|(lineage, _)| lineage.clone()).collect();
            return Err(CertsError::UnknownCertificate { wanted: wanted.clone(), known });
        }
    }
    Ok(())
}

/// `certs issue`: a new certificate for each planned certificate (or those named), whether due
/// or not.
pub fn issue(stack: &Stack, reporter: &dyn Reporter, only: &[String]) -> Result<Vec<Outcome>, CertsError> {
    let plan = planned(stack);
    check_selection(only, &plan.iter().map(|p| (p.lineage.clone(), p.names.clone())).collect::<Vec<_>>())?;
    let _lock = DeployLock::acquire_named(stack, LockName::Certs, "certs issue")?;
    let settings = settings(stack, false)?;
    crate::runtime::block_on(async {
        let mut client = match AcmeClient::connect(settings).await {
            Ok(client) => client,
            Err(error) => return Err(CertsError::Unreachable(error)),
        };
        let mut outcomes = Vec::new();
        for wanted in plan.iter().filter(|p| selected(only, &p.lineage, &p.names)) {
            let existing = read_existing(stack, &wanted.lineage);
            outcomes.push(renew_one(stack, reporter, &mut client, wanted, existing.as_ref(), None, false).await);
        }
        report_account(reporter, &client);
        Ok(outcomes)
    })?
}

/// `certs renew`: each certificate deploy.toml declares that is due, per ARI when the CA offers
/// it, else the one-third rule, or at once when deploy.toml serves names it lacks. A lineage
/// certbot made under a declared name is taken over; lineages deploy.toml does not declare (other
/// sites of the host) are left to whoever manages them.
pub fn renew(stack: &Stack, reporter: &dyn Reporter, options: &RenewOptions) -> Result<Vec<Outcome>, CertsError> {
    let cert_dir = &stack.config.acme.cert_dir;
    let plan = planned(stack);
    check_selection(&options.only, &plan.iter().map(|p| (p.lineage.clone(), p.names.clone())).collect::<Vec<_>>())?;
    for other in store::lineage_names(cert_dir).unwrap_or_default() {
        if !plan.iter().any(|p| p.lineage == other) {
            reporter.detail(&format!("`{other}` is not declared in deploy.toml: left to whoever manages it"));
        }
    }
    let command = if options.dry_run { "certs renew --dry-run" } else { "certs renew" };
    let _lock = DeployLock::acquire_named(stack, LockName::Certs, command)?;
    let settings = settings(stack, options.dry_run)?;
    let now = Utc::now();
    Ok(crate::runtime::block_on(async {
        let mut outcomes = Vec::new();
        let mut client = AcmeClient::connect(settings).await;
        for wanted in plan.iter().filter(|p| selected(&options.only, &p.lineage, &p.names)) {
            // One unreadable lineage fails alone; the others are still renewed.
            let lineage = match store::read_lineage(cert_dir, &wanted.lineage) {
                Ok(Some(lineage)) => lineage,
                Ok(None) => {
                    let mut outcome = Outcome::new(&wanted.lineage, &wanted.names, Action::Missing);
                    outcome.hint = Some("issue it with `masstockctl certs issue`".into());
                    outcomes.push(outcome);
                    continue;
                }
                Err(error) => {
                    let mut outcome = Outcome::new(&wanted.lineage, &wanted.names, Action::Failed);
                    outcome.error = Some(format!("cannot read the certificate: {error}"));
                    outcome.hint =
                        Some("repair its live/ links, or issue it again with `masstockctl certs issue`".into());
                    outcomes.push(outcome);
                    continue;
                }
            };
            let lacking: Vec<&String> = wanted.names.iter().filter(|name| !lineage.cert.names.contains(name)).collect();
            // A rehearsal asks the staging CA, which knows nothing of the live certificate.
            let ari = match &client {
                Ok(client) if !options.dry_run && !options.force && lacking.is_empty() => {
                    client.renewal_info(&lineage.cert).await.unwrap_or_else(|error| {
                        reporter.step(&format!(
                            "`{}`: no renewal information from the CA ({error}); using the one-third rule",
                            lineage.name
                        ));
                        None
                    })
                }
                _ => None,
            };
            let mut decision = due::decide(&lineage.cert, ari.as_ref(), now, options.force);
            if !lacking.is_empty() && !decision.due {
                decision = due::Due {
                    at: now,
                    rule: due::Rule::NamesChanged,
                    due: true,
                    reason: format!(
                        "deploy.toml serves {} too",
                        lacking.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
                    ),
                };
            }
            let due_text = format!("{:?}: {}", decision.rule, decision.reason);
            if !decision.due && !options.dry_run {
                let mut outcome = Outcome::new(&lineage.name, &wanted.names, Action::NotDue);
                outcome.version = Some(lineage.version);
                outcome.serial = Some(lineage.cert.serial.clone());
                outcome.not_after = Some(lineage.cert.not_after);
                outcome.due = Some(format!("{due_text} (due at {})", decision.at.format("%Y-%m-%d %H:%M UTC")));
                reporter.step(&format!("`{}` is not due: {}", lineage.name, decision.reason));
                outcomes.push(outcome);
                continue;
            }
            let connected = match &mut client {
                Ok(client) => client,
                Err(error) => {
                    let mut outcome = Outcome::new(&lineage.name, &wanted.names, Action::Failed);
                    outcome.error = Some(format!("failed to reach the ACME CA: {error}"));
                    outcome.hint = error.hint();
                    if !options.dry_run {
                        record(stack, &lineage.name, outcome.error.as_deref());
                    }
                    outcomes.push(outcome);
                    continue;
                }
            };
            // `replaces` only goes with ARI (RFC 9773 §5).
            let replaces = ari.as_ref().map(|_| &lineage.cert);
            let mut outcome =
                renew_one(stack, reporter, connected, wanted, Some(&lineage), replaces, options.dry_run).await;
            outcome.due = Some(due_text);
            outcomes.push(outcome);
        }
        if let Ok(client) = &client {
            report_account(reporter, client);
        }
        outcomes
    })?)
}

fn report_account(reporter: &dyn Reporter, client: &AcmeClient) {
    if client.registered_again {
        reporter.step(&format!("the CA no longer knew the ACME account; registered again as {}", client.account_id()));
    } else if client.registered {
        reporter.detail(&format!("registered the ACME account {}", client.account_id()));
    }
}

fn read_existing(stack: &Stack, lineage: &str) -> Option<Lineage> {
    store::read_lineage(&stack.config.acme.cert_dir, lineage).ok().flatten()
}

fn record(stack: &Stack, lineage: &str, error: Option<&str>) {
    let _ = store::record_error(&stack.config.acme.cert_dir, lineage, error);
}

/// One ACME order, the new version stored and (unless `dry_run`) installed with verification.
async fn renew_one(
    stack: &Stack,
    reporter: &dyn Reporter,
    client: &mut AcmeClient,
    wanted: &Planned,
    existing: Option<&Lineage>,
    replaces: Option<&CertInfo>,
    dry_run: bool,
) -> Outcome {
    let started = Instant::now();
    let mut outcome =
        Outcome::new(&wanted.lineage, &wanted.names, if dry_run { Action::Rehearsed } else { Action::Issued });
    reporter.step(&format!("`{}`: ordering a certificate for {}", wanted.lineage, wanted.names.join(", ")));
    let result = issue_and_install(stack, client, wanted, existing, replaces, dry_run).await;
    outcome.seconds = started.elapsed().as_secs_f64();
    match result {
        Ok((version, info)) => {
            outcome.version = Some(version);
            outcome.serial = Some(info.serial);
            outcome.not_after = Some(info.not_after);
            if !dry_run {
                record(stack, &wanted.lineage, None);
            }
        }
        Err((message, hint)) => {
            outcome.action = Action::Failed;
            outcome.version = existing.map(|lineage| lineage.version);
            if !dry_run {
                record(stack, &wanted.lineage, Some(&message));
            }
            outcome.error = Some(message);
            outcome.hint = hint;
        }
    }
    outcome
}

async fn issue_and_install(
    stack: &Stack,
    client: &mut AcmeClient,
    wanted: &Planned,
    existing: Option<&Lineage>,
    replaces: Option<&CertInfo>,
    dry_run: bool,
) -> Result<(u32, CertInfo), (String, Option<String>)> {
    let acme_failure = |error: AcmeError| (error.to_string(), error.hint());
    // An nginx that already refuses its configuration would refuse the new certificate too, after
    // the CA issued it: every run would spend an issuance (Let's Encrypt allows 5 a week for the
    // same names) and roll back. Stop before ordering.
    if !dry_run {
        crate::deploy::edge::run(stack, &stack.config.edge.test_command).map_err(|failure| {
            (
                format!("nginx refuses its current configuration, so no certificate was ordered: {failure}"),
                Some(
                    "fix nginx first (`nginx -t` says what is wrong), then run `masstockctl certs renew` again"
                        .to_owned(),
                ),
            )
        })?;
    }
    let issued: Issued = client.issue(&wanted.names, &http01(stack), replaces).await.map_err(acme_failure)?;
    let info = store::parse_certificate(&issued.cert_pem)
        .map_err(|error| (format!("the CA sent a certificate that cannot be read: {error}"), None))?;
    let rehearsal = if dry_run { Some(tempfile::tempdir().map_err(|error| (error.to_string(), None))?) } else { None };
    let cert_dir: PathBuf =
        rehearsal.as_ref().map_or_else(|| stack.config.acme.cert_dir.clone(), |folder| folder.path().to_path_buf());
    let conf = RenewalConf {
        server: client_directory(stack, dry_run),
        webroot: stack.config.acme.webroot.clone(),
        names: wanted.names.clone(),
        key_type: KEY_TYPE.to_owned(),
    };
    let new = NewVersion {
        privkey_pem: &issued.privkey_pem,
        cert_pem: &issued.cert_pem,
        chain_pem: &issued.chain_pem,
        fullchain_pem: &issued.fullchain_pem,
    };
    let version = store::write_version(&cert_dir, &wanted.lineage, &new, &conf)
        .map_err(|error| (format!("failed to store the new certificate in `{}`: {error}", cert_dir.display()), None))?;
    if dry_run {
        return Ok((version, info));
    }
    // Version 0 is a hand-made lineage (plain files, no archive): nothing to go back to.
    let previous = existing.map(|lineage| lineage.version).filter(|version| *version > 0);
    install::verify_install(stack, &wanted.lineage, &wanted.names, &info.serial, previous).map_err(|error| {
        (
            error.to_string(),
            Some(
                "fix what failed (`nginx -t` shows configuration errors), then run `masstockctl certs renew --force`"
                    .into(),
            ),
        )
    })?;
    Ok((version, info))
}

fn client_directory(stack: &Stack, dry_run: bool) -> String {
    let acme = &stack.config.acme;
    if dry_run {
        acme.staging_directory.clone().unwrap_or_default()
    } else {
        acme.directory.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml");
        Stack::from_source_without_env_file(&crate::config::read_source(&path).unwrap(), "production").unwrap()
    }

    #[test]
    fn the_eab_key_is_only_ever_a_reference_to_the_env_file() {
        assert_eq!(crate::config::eab_key_reference("${ACME_EAB_HMAC_KEY}").as_deref(), Some("ACME_EAB_HMAC_KEY"));
        assert_eq!(
            crate::config::eab_key_reference("zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"),
            None
        );
        assert_eq!(crate::config::eab_key_reference("prefix-${KEY}"), None);
    }

    #[test]
    fn one_san_certificate_named_after_the_apex_or_one_per_domain() {
        let san = planned(&stack());
        assert_eq!(san.len(), 1);
        assert_eq!(san[0].lineage, "masstock.fr");
        assert_eq!(san[0].names, ["masstock.fr", "api.masstock.fr", "app.masstock.fr", "n8n.masstock.fr"]);
        let mut per_domain = stack();
        per_domain.config.acme.certificates = CertificateLayout::PerDomain;
        let planned = planned(&per_domain);
        assert_eq!(planned.len(), 4);
        for certificate in &planned {
            assert_eq!(certificate.names, std::slice::from_ref(&certificate.lineage));
            let (fullchain, _) = per_domain.certificate_paths(&certificate.lineage);
            assert!(fullchain.starts_with(per_domain.config.acme.cert_dir.join("live").join(&certificate.lineage)));
        }
    }
}
