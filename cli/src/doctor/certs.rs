//! `doctor`'s certificate checks, the reference's "SSL certificate expired" scenario: each
//! certificate deploy.toml serves is there, readable, in date and names every domain; nginx serves
//! the one on disk; something renews them (the systemd timer, or cron on a host without systemd).
//!
//! The rules on the store ([`lineage_findings`]) and on the timer ([`timer_finding`]) are pure
//! functions of what was read, so tests give them certificates of their own. Reading the store and
//! the TLS handshakes are blocking, so they run on tokio's blocking threads, each bounded by the
//! context's timeout.
//!
//! - **The store**: `certs status`'s rules (missing, unreadable, expired, under 7 days, a name
//!   deploy.toml serves that the certificate lacks, a recorded renewal error folded into those or
//!   alone).
//! - **The edge**: one TCP connect to `upstream_host:https_port` (refused: one `edge-unreachable`,
//!   with the edge's start or reload command), then a handshake per domain
//!   (`certs::install::served`, in `spawn_blocking`) whose serial must be the one on disk: a
//!   renewal without a reload shows as `cert-not-served:<domain>`, fixed by the edge's
//!   `reload_command`.
//! - **The chain**: when the served serial is the one on disk, the chain nginx sent is verified
//!   (`certs::trust::distrust`, rustls's webpki verifier) against what `health` and `cors test`
//!   trust, the system's roots and `edge.ca_bundle` (a host with no root at all is not judged). It
//!   is verified at an instant inside the leaf's validity, so an expired leaf is `cert-expired`
//!   alone while an expired intermediate is still caught; names are `cert-names`'s question. A
//!   refusal is one `cert-untrusted:<lineage>` for all its domains. Its fix depends on the cause:
//!   nginx sending fewer certificates than `fullchain.pem` holds means the intermediates are
//!   missing (point `ssl_certificate` at fullchain.pem, as deploy renders it); a `[acme] directory`
//!   whose URL says `staging` means changing it before anything else (renewing would bring another
//!   certificate no browser trusts); otherwise the certificate comes from a CA nobody here trusts
//!   (a test CA started again with a new root, as Pebble does), and
//!   `certs renew --force <lineage>` orders it again from `[acme] directory`, which the fix quotes.
//! - **The renewal timer**: when systemd runs (`/run/systemd/system`) and `acme.systemd_dir` is a
//!   folder it loads units from, `systemctl is-enabled` and `is-active masstock-certs.timer`.
//!   Otherwise (no systemd, or a folder of the environment's own: the local environment's
//!   `.masstock/local/systemd`, which `script/local-up` fills with `install-timer --no-enable`) the
//!   unit file there counts, and so does a crontab line running `certs renew` (`/etc/crontab`,
//!   `/etc/cron.d/`, `/var/spool/cron/crontabs/`). The fix gives both, the cron line with the
//!   absolute binary and deploy.toml (cron's `PATH` has no masstockctl).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rustls::pki_types::UnixTime;

use super::{Context, Finding};
use crate::certs::expiry::{Expiry, EXPIRING_DAYS};
use crate::certs::store::{self, Lineage, Manager};
use crate::certs::timer::{self, CRONTAB_DIRS, CRONTAB_FILE, CRON_RENEW, TIMER_UNIT};
use crate::certs::{install, trust};
use crate::systemd::{self, is_systemd_unit_dir, SYSTEMD_RUNTIME_DIR};

/// A lineage deploy.toml wants, as the store shows it.
#[derive(Debug)]
struct Examined {
    name: String,
    /// The domains deploy.toml serves with it.
    domains: Vec<String>,
    /// `Ok(None)`: `live/<name>/` does not exist; `Err`: why it cannot be read, causes included.
    lineage: Result<Option<Lineage>, String>,
}

/// Whether something renews the certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TimerState {
    /// systemd runs and loads units from `acme.systemd_dir`: what `systemctl is-enabled` and
    /// `systemctl is-active` said about the timer (or why they could not be asked).
    Systemd { enabled: String, active: String },
    /// systemd does not run, or `acme.systemd_dir` is a folder of its own: whether
    /// `certs install-timer` wrote the timer unit there, else whether cron runs `certs renew`.
    Files {
        /// `<acme.systemd_dir>/masstock-certs.timer`.
        unit: PathBuf,
        systemd_runs: bool,
        /// Whether systemd loads units from `acme.systemd_dir`.
        systemd_folder: bool,
        unit_exists: bool,
        /// The crontab line that runs `certs renew`, after its file: `` `/etc/cron.d/masstock`: … ``.
        cron: Option<String>,
    },
}

impl TimerState {
    fn renews(&self) -> bool {
        match self {
            Self::Systemd { enabled, active } => enabled == "enabled" && active == "active",
            Self::Files { unit_exists, cron, .. } => *unit_exists || cron.is_some(),
        }
    }

    /// One line each for the evidence.
    fn describe(&self) -> Vec<String> {
        match self {
            Self::Systemd { enabled, active } => vec![
                format!("`systemctl is-enabled {TIMER_UNIT}`: {enabled}"),
                format!("`systemctl is-active {TIMER_UNIT}`: {active}"),
            ],
            Self::Files { unit, systemd_runs, systemd_folder, unit_exists, cron } => {
                let folder = unit.parent().unwrap_or(unit);
                let systemd = if !systemd_runs {
                    format!("`{SYSTEMD_RUNTIME_DIR}` is not a directory: systemd does not run on this host")
                } else if !systemd_folder {
                    format!("systemd does not load units from `{}` (`acme.systemd_dir`)", folder.display())
                } else {
                    "systemd loads the units".to_owned()
                };
                let cron = cron.clone().map_or_else(
                    || {
                        format!(
                            "no crontab line runs `{CRON_RENEW}` (`{CRONTAB_FILE}`, {}; unreadable files skipped)",
                            CRONTAB_DIRS.map(|dir| format!("`{dir}/`")).join(", ")
                        )
                    },
                    |line| format!("cron runs `{CRON_RENEW}`: {line}"),
                );
                vec![
                    systemd,
                    format!("`{}` {}", unit.display(), if *unit_exists { "exists" } else { "does not exist" }),
                    cron,
                ]
            }
        }
    }

    /// A short phrase for the expiring certificate's evidence.
    fn summary(&self) -> String {
        match self {
            Self::Systemd { enabled, active } => {
                format!("renewal timer: `{TIMER_UNIT}` is {enabled} and {active}")
            }
            Self::Files { unit, systemd_runs: false, unit_exists: true, .. } => {
                format!("renewal timer: `{}` exists, but systemd does not run here to start it", unit.display())
            }
            Self::Files { unit, unit_exists: true, .. } => {
                format!("renewal timer: `{}` exists, in a folder systemd does not load units from", unit.display())
            }
            Self::Files { cron: Some(line), .. } => format!("renewal: cron runs `{CRON_RENEW}` ({line})"),
            Self::Files { unit, .. } => {
                format!("renewal timer: none (`{}` is absent, and no crontab line runs `{CRON_RENEW}`)", unit.display())
            }
        }
    }
}

pub async fn examine(context: &Context<'_>) -> Vec<Finding> {
    let stack = context.stack;
    let configured = stack.certificate_lineages();
    if configured.is_empty() {
        return Vec::new();
    }
    let cert_dir = stack.config.acme.cert_dir.clone();
    let now = i64::try_from(context.now_ms).ok().and_then(DateTime::from_timestamp_millis).unwrap_or_else(Utc::now);
    let (examined, timer) = tokio::join!(read_lineages(context, cert_dir.clone(), configured), timer_state(context));
    let mut findings = lineage_findings(&examined, &cert_dir, now, &timer, &|arguments| context.command(arguments));
    findings.extend(served_findings(context, &examined, now).await);
    findings.extend(timer_finding(&timer, context, &cron_line(context)));
    findings
}

/// Reads each configured lineage from the store, off the async threads and within the timeout.
async fn read_lineages(
    context: &Context<'_>,
    cert_dir: PathBuf,
    configured: Vec<(String, Vec<String>)>,
) -> Vec<Examined> {
    let wanted = configured.clone();
    let read = tokio::task::spawn_blocking(move || read_store(&cert_dir, wanted));
    let failure = match tokio::time::timeout(context.timeout, read).await {
        Ok(Ok(examined)) => return examined,
        Ok(Err(error)) => format!("reading the certificate store failed: {error}"),
        Err(_) => format!("reading the certificate store took longer than {}s", context.timeout.as_secs_f64()),
    };
    configured.into_iter().map(|(name, domains)| Examined { name, domains, lineage: Err(failure.clone()) }).collect()
}

/// Each configured lineage (name, domains) as the store shows it.
fn read_store(cert_dir: &Path, configured: Vec<(String, Vec<String>)>) -> Vec<Examined> {
    configured
        .into_iter()
        .map(|(name, domains)| {
            let lineage = store::read_lineage(cert_dir, &name).map_err(|error| crate::error::chain_line(&error));
            Examined { name, domains, lineage }
        })
        .collect()
}

/// The findings the store alone shows, per configured lineage: missing, unreadable, expired,
/// expiring, lacking a served name, its last renewal failed.
fn lineage_findings(
    examined: &[Examined],
    cert_dir: &Path,
    now: DateTime<Utc>,
    timer: &TimerState,
    command: &dyn Fn(&str) -> String,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for Examined { name, domains, lineage } in examined {
        let serves = format!("deploy.toml serves with it: {}", domains.join(", "));
        let live = cert_dir.join("live").join(name);
        match lineage {
            Err(error) => findings.push(unreadable_lineage(name, &live, error, serves, command)),
            Ok(None) => findings.push(missing_lineage(name, &live, serves, command)),
            Ok(Some(lineage)) => {
                findings.extend(expiry_finding(name, lineage, now, timer, command));
                findings.extend(names_finding(name, lineage, domains, serves, command));
            }
        }
    }
    findings
}

/// `cert-invalid`: `live/<name>/` is there but cannot be read.
fn unreadable_lineage(
    name: &str,
    live: &Path,
    error: &str,
    serves: String,
    command: &dyn Fn(&str) -> String,
) -> Finding {
    Finding::error(
        format!("cert-invalid:{name}"),
        format!("the certificate `{name}` cannot be read"),
        format!("repair the links of `{}/`, or obtain it again: {}", live.display(), command("certs issue")),
    )
    .with_evidence([error.to_owned(), serves])
}

/// `cert-missing`: no `live/<name>/`.
fn missing_lineage(name: &str, live: &Path, serves: String, command: &dyn Fn(&str) -> String) -> Finding {
    Finding::error(
        format!("cert-missing:{name}"),
        format!("the certificate `{name}` is missing"),
        format!("{} obtains it from the CA", command("certs issue")),
    )
    .with_evidence([format!("`{}/` does not exist", live.display()), serves])
}

/// `cert-expired`, `cert-expiring`, or (in date) `cert-renewal-failed` when the last renewal
/// failed.
fn expiry_finding(
    name: &str,
    lineage: &Lineage,
    now: DateTime<Utc>,
    timer: &TimerState,
    command: &dyn Fn(&str) -> String,
) -> Option<Finding> {
    let cert = &lineage.cert;
    let left = cert.not_after - now;
    let last_error = last_error_line(lineage);
    let renewed_by = (lineage.manager == Manager::Certbot)
        .then(|| "renewed by certbot until `certs renew` takes it over".to_owned());
    match Expiry::at(cert.not_after, now) {
        Expiry::Expired => {
            let mut fix = format!("{} renews an expired certificate at once", command("certs renew"));
            if lineage.last_error.is_some() {
                fix.push_str("; if it fails again, remove the cause of the last renewal error shown above first");
            }
            let evidence = [
                Some(format!("not after: {} (expired {} ago)", rfc3339(cert.not_after), duration(-left))),
                Some(format!("serial: {}", cert.serial)),
                Some(format!("names: {}", cert.names.join(", "))),
                renewed_by,
                last_error,
            ];
            Some(
                Finding::error(
                    format!("cert-expired:{name}"),
                    format!("the certificate `{name}` expired {} ago", duration(-left)),
                    fix,
                )
                .with_evidence(evidence.into_iter().flatten()),
            )
        }
        Expiry::Expiring => {
            let evidence = [
                Some(format!("days left: {} (less than {EXPIRING_DAYS})", left.num_days())),
                Some(format!("not after: {}", rfc3339(cert.not_after))),
                Some(format!("serial: {}", cert.serial)),
                Some(timer.summary()),
                renewed_by,
                last_error,
            ];
            Some(
                Finding::warning(
                    format!("cert-expiring:{name}"),
                    format!("the certificate `{name}` expires in {}", duration(left)),
                    format!("{} renews it", command("certs renew")),
                )
                .with_evidence(evidence.into_iter().flatten()),
            )
        }
        Expiry::Valid => last_error.map(|last_error| {
            Finding::warning(
                format!("cert-renewal-failed:{name}"),
                format!("the last renewal of the certificate `{name}` failed"),
                format!(
                    "remove the error's cause, then {} tries again ({} shows the result)",
                    command("certs renew"),
                    command("certs status")
                ),
            )
            .with_evidence([
                last_error,
                format!("not after: {} (in {})", rfc3339(cert.not_after), duration(left)),
                format!("serial: {}", cert.serial),
            ])
        }),
    }
}

/// `cert-names`: the certificate lacks a domain deploy.toml serves with it.
fn names_finding(
    name: &str,
    lineage: &Lineage,
    domains: &[String],
    serves: String,
    command: &dyn Fn(&str) -> String,
) -> Option<Finding> {
    let cert = &lineage.cert;
    let lacking: Vec<&str> = domains.iter().filter(|domain| !cert.names.contains(domain)).map(String::as_str).collect();
    if lacking.is_empty() {
        return None;
    }
    Some(
        Finding::error(
            format!("cert-names:{name}"),
            format!("the certificate `{name}` does not name {}", backticked(&lacking)),
            format!(
                "{}: a certificate lacking a name deploy.toml serves is due at once (no `--force` needed)",
                command("certs renew")
            ),
        )
        .with_evidence([
            format!("names: {}", cert.names.join(", ")),
            serves,
            format!("missing: {}", lacking.join(", ")),
            format!("serial: {}", cert.serial),
        ]),
    )
}

/// `last renewal error (2025-06-01T12:00:00Z): …`, when one is recorded.
fn last_error_line(lineage: &Lineage) -> Option<String> {
    let error = lineage.last_error.as_ref()?;
    Some(match lineage.last_error_at {
        Some(at) => format!("last renewal error ({}): {error}", rfc3339(at)),
        None => format!("last renewal error: {error}"),
    })
}

/// An enabled site's domain, with the lineage on disk that serves it.
type ServedDomain<'a> = (&'a str, &'a Examined, &'a Lineage);

/// Compares what nginx presents for each enabled site's domain with the lineage on disk: the edge
/// answers, each domain's handshake shows the certificate on disk, and a root trusted here
/// vouches for it.
async fn served_findings(context: &Context<'_>, examined: &[Examined], now: DateTime<Utc>) -> Vec<Finding> {
    let edge = &context.stack.config.edge;
    let checked = served_domains(context, examined);
    if checked.is_empty() {
        return Vec::new();
    }
    let address = SocketAddr::new(edge.upstream_host, edge.https_port);
    if let Some(unreachable) = edge_unreachable(context, address, &checked).await {
        return vec![unreachable];
    }
    let (served, roots) = handshakes(context, address, &checked).await;
    // Per lineage: the domains whose certificate, the one on disk, no trusted root vouches for.
    let mut distrusted: Vec<(&Examined, &Lineage, Vec<Refused>)> = Vec::new();
    let mut findings = Vec::new();
    for (&(domain, examined, lineage), served) in checked.iter().zip(served) {
        match served {
            Ok(served) if served.info.serial.eq_ignore_ascii_case(&lineage.cert.serial) => {
                let at = inside_validity(now, &served.info);
                let Some(reason) =
                    roots.as_ref().and_then(|roots| trust::distrust(Arc::clone(roots), &served.chain, domain, at))
                else {
                    continue;
                };
                match distrusted.iter_mut().find(|(known, _, _)| known.name == examined.name) {
                    Some((_, _, domains)) => domains.push((domain, reason, served)),
                    None => distrusted.push((examined, lineage, vec![(domain, reason, served)])),
                }
            }
            served => findings.push(not_served(context, address, (domain, examined, lineage), served, now)),
        }
    }
    findings.extend(
        distrusted.into_iter().map(|(examined, lineage, domains)| untrusted(context, examined, lineage, &domains)),
    );
    findings
}

/// The enabled sites' domains whose lineage could be read; a missing or unreadable one is
/// reported already.
fn served_domains<'a>(context: &'a Context<'_>, examined: &'a [Examined]) -> Vec<ServedDomain<'a>> {
    context
        .stack
        .sites()
        .filter_map(|(_, site)| {
            let examined = examined.iter().find(|examined| examined.domains.contains(&site.domain))?;
            let lineage = examined.lineage.as_ref().ok()?.as_ref()?;
            Some((site.domain.as_str(), examined, lineage))
        })
        .collect()
}

/// `edge-unreachable` when nothing accepts a connection on the edge's HTTPS port in time.
async fn edge_unreachable(context: &Context<'_>, address: SocketAddr, checked: &[ServedDomain<'_>]) -> Option<Finding> {
    let connected = tokio::time::timeout(context.timeout, tokio::net::TcpStream::connect(address)).await;
    let reason = match connected {
        Ok(Ok(_)) => return None,
        Ok(Err(error)) => format!("connecting to {address} failed: {error}"),
        Err(_) => format!("connecting to {address} timed out after {}s", context.timeout.as_secs_f64()),
    };
    let domains: Vec<&str> = checked.iter().map(|(domain, _, _)| *domain).collect();
    Some(
        Finding::error(
            "edge-unreachable",
            format!("nginx does not answer on {address}, the edge's HTTPS port"),
            edge_start_fix(&context.stack.config.edge),
        )
        .with_evidence([reason, format!("not checked: {}", domains.join(", "))]),
    )
}

/// Each domain's TLS handshake through `address` (each within the context's timeout), and the
/// roots clients here trust: the system's and `edge.ca_bundle`, as `health` and `cors test` do.
/// No roots at all (no ca-certificates, no bundle, or a bundle that cannot be read, which is the
/// CORS check's finding) is `None`: then no chain is judged.
async fn handshakes(
    context: &Context<'_>,
    address: SocketAddr,
    checked: &[ServedDomain<'_>],
) -> (Vec<Result<install::Served, String>>, Option<Arc<rustls::RootCertStore>>) {
    let handshakes = checked.iter().map(|(domain, _, _)| {
        let domain = (*domain).to_owned();
        async move {
            let handshake = tokio::task::spawn_blocking(move || install::served(address, &domain));
            match tokio::time::timeout(context.timeout, handshake).await {
                Ok(Ok(result)) => result.map_err(|error| error.to_string()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("no answer within {}s", context.timeout.as_secs_f64())),
            }
        }
    });
    let bundle = context.stack.config.edge.ca_bundle.clone();
    let roots = tokio::task::spawn_blocking(move || trust::root_store(bundle.as_deref()).map(Arc::new));
    let (served, roots) = tokio::join!(futures_util::future::join_all(handshakes), roots);
    (served, roots.ok().and_then(Result::ok).filter(|roots| !roots.is_empty()))
}

/// `cert-not-served`: nginx serves another certificate than the one on disk, or none.
fn not_served(
    context: &Context<'_>,
    address: SocketAddr,
    (domain, examined, lineage): ServedDomain<'_>,
    served: Result<install::Served, String>,
    now: DateTime<Utc>,
) -> Finding {
    let reload = format!("`{}`", context.stack.config.edge.reload_command.join(" "));
    let on_disk = format!(
        "on disk (`{}`): serial {}, not after {}",
        lineage.live_dir.display(),
        lineage.cert.serial,
        validity(lineage.cert.not_after, now)
    );
    let probe = format!("TLS handshake with SNI `{domain}` through {address}, the chain not verified");
    let fullchain = lineage.live_dir.join("fullchain.pem");
    match served {
        Ok(install::Served { info, .. }) => Finding::error(
            format!("cert-not-served:{domain}"),
            format!(
                "nginx serves `{domain}` with certificate serial `{}`, not the one on disk (`{}`)",
                info.serial, lineage.cert.serial
            ),
            format!(
                "reload nginx so it loads the certificate on disk: {reload}; if it still serves another one, its \
                 site must point `ssl_certificate` at `{}`",
                fullchain.display()
            ),
        )
        .with_evidence([
            format!(
                "served: serial {}, not after {}, names {}",
                info.serial,
                validity(info.not_after, now),
                info.names.join(", ")
            ),
            on_disk,
            format!("lineage: `{}`", examined.name),
            probe,
        ]),
        Err(error) => Finding::error(
            format!("cert-not-served:{domain}"),
            format!("nginx presents no certificate for `{domain}`: the TLS handshake failed"),
            format!(
                "reload nginx: {reload}; if it still fails, {} installs the site, which serves `{}`",
                context.command("deploy"),
                fullchain.display()
            ),
        )
        .with_evidence([format!("handshake: {error}"), on_disk, probe]),
    }
}

/// `now`, or the nearest instant inside the certificate's validity: the chain is judged there,
/// so that an expired leaf (`cert-expired`) is not also called untrusted.
fn inside_validity(now: DateTime<Utc>, certificate: &store::CertInfo) -> UnixTime {
    let second = TimeDelta::seconds(1);
    let at = if now >= certificate.not_after {
        certificate.not_after - second
    } else if now < certificate.not_before {
        certificate.not_before + second
    } else {
        now
    };
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(u64::try_from(at.timestamp()).unwrap_or(0)))
}

/// A domain whose certificate no trusted root vouches for: why, and what nginx sent.
type Refused<'a> = (&'a str, String, install::Served);

/// The finding for a lineage whose certificate nginx serves, but that no root trusted here
/// leads to: a certificate from another CA than deploy.toml's (a staging one, a test CA that
/// was started again), or a chain sent without its intermediates.
fn untrusted(context: &Context<'_>, examined: &Examined, lineage: &Lineage, domains: &[Refused]) -> Finding {
    let edge = &context.stack.config.edge;
    let names: Vec<&str> = domains.iter().map(|(domain, _, _)| *domain).collect();
    let (_, reason, served) = &domains[0];
    let fullchain = lineage.live_dir.join("fullchain.pem");
    let on_disk =
        fs_err::read_to_string(&fullchain).map_or(0, |text| text.matches("-----BEGIN CERTIFICATE-----").count());
    let mut evidence = vec![
        format!("served for {}: serial {}, issued by `{}`", names.join(", "), served.info.serial, served.info.issuer),
        format!(
            "verified against the system's roots{}: {reason}",
            match &edge.ca_bundle {
                Some(bundle) => format!(" and `edge.ca_bundle` (`{}`)", bundle.display()),
                None => String::new(),
            }
        ),
        format!("nginx sends {} certificate(s); `{}` holds {on_disk}", served.chain.len(), fullchain.display()),
    ];
    let fix = if served.chain.len() < on_disk {
        evidence.push("the intermediates are missing from what nginx sends".to_owned());
        format!(
            "point the site's `ssl_certificate` at `{}` (the leaf and its intermediates), as {} renders it, then reload nginx (`{}`)",
            fullchain.display(),
            context.command("deploy"),
            edge.reload_command.join(" ")
        )
    } else {
        let acme = &context.stack.config.acme;
        let renew = context.command(&format!("certs renew --force {}", examined.name));
        // Let's Encrypt's staging directory, and most CAs' test ones, say so in their URL.
        // (Comparing with `staging_directory` would not do: the local environment's Pebble is
        // both.)
        let staging = acme.directory.contains("staging");
        let fix = if staging {
            format!(
                "`[acme] directory` is a staging CA's (`{}`), whose certificates no browser trusts: set the \
                 production directory in deploy.toml, then {renew}",
                acme.directory
            )
        } else {
            format!("order it again from deploy.toml's CA (`[acme] directory` = `{}`): {renew}", acme.directory)
        };
        match &edge.ca_bundle {
            Some(bundle) => format!(
                "{fix}; or, if clients are meant to trust `{}`, add its root to `{}`",
                served.info.issuer,
                bundle.display()
            ),
            None => fix,
        }
    };
    Finding::error(
        format!("cert-untrusted:{}", examined.name),
        format!("no root trusted here vouches for the certificate nginx serves for {}", names.join(", ")),
        fix,
    )
    .with_evidence(evidence)
}

/// How to get nginx answering again when it does not: `edge.start_command` when deploy.toml has
/// one; else the reload command, and, when that is `systemctl reload <unit>`, `systemctl start
/// <unit>` too (a reload needs a running nginx).
pub(crate) fn edge_start_fix(edge: &crate::config::Edge) -> String {
    let reload = edge.reload_command.join(" ");
    match (edge.start_command.is_empty(), edge.reload_command.as_slice()) {
        (false, _) => format!("start nginx: `{}`", edge.start_command.join(" ")),
        (true, [systemctl, verb, unit]) if systemctl == "systemctl" && verb == "reload" => {
            format!("reload nginx: `{reload}`, or start it if it is not running: `systemctl start {unit}`")
        }
        (true, _) => format!("reload nginx: `{reload}`"),
    }
}

/// Asks systemd about the timer when it runs and loads units from `acme.systemd_dir`; else looks
/// for the unit file there, then for a crontab line that runs `certs renew`.
async fn timer_state(context: &Context<'_>) -> TimerState {
    let folder = context.stack.config.acme.systemd_dir();
    let systemd_runs = systemd::systemd_runs();
    let systemd_folder = is_systemd_unit_dir(&folder);
    if systemd_runs && systemd_folder {
        let (enabled, active) = tokio::join!(systemctl(context, "is-enabled"), systemctl(context, "is-active"));
        return TimerState::Systemd { enabled, active };
    }
    let unit = folder.join(TIMER_UNIT);
    let looked_up = unit.clone();
    let look = tokio::task::spawn_blocking(move || {
        let unit_exists = looked_up.is_file();
        let cron = if unit_exists { None } else { timer::system_cron_renewal() };
        (unit_exists, cron)
    });
    // Looking takes no time on a sane host; one that does not answer is taken as having nothing.
    let (unit_exists, cron) = match tokio::time::timeout(context.timeout, look).await {
        Ok(Ok(found)) => found,
        Ok(Err(_)) | Err(_) => (false, None),
    };
    TimerState::Files { unit, systemd_runs, systemd_folder, unit_exists, cron }
}

/// The crontab line that renews the certificates twice a day under cron's own `PATH` and working
/// folder: this masstockctl and deploy.toml by their absolute paths, and the environment.
fn cron_line(context: &Context<'_>) -> String {
    let stack = context.stack;
    let masstockctl = std::env::current_exe().map_or_else(|_| "masstockctl".to_owned(), |path| shell_word(&path));
    let config = fs_err::canonicalize(&stack.path).unwrap_or_else(|_| crate::config::absolute(&stack.path));
    let environment = if stack.environment == crate::config::DEFAULT_ENVIRONMENT {
        String::new()
    } else {
        format!(" --env {}", super::disk::shell_quote(&stack.environment))
    };
    let line = format!("0 0,12 * * * {masstockctl} --config {}{environment} certs renew", shell_word(&config));
    // cron turns an unescaped `%` into a newline.
    line.replace('%', "\\%")
}

fn shell_word(path: &Path) -> String {
    super::disk::shell_quote(&path.to_string_lossy())
}

/// `systemctl <verb> masstock-certs.timer`'s answer (`enabled`, `inactive`, …), or why there is none.
async fn systemctl(context: &Context<'_>, verb: &str) -> String {
    let output = tokio::process::Command::new("systemctl")
        .args([verb, TIMER_UNIT])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(context.timeout, output).await {
        Ok(Ok(output)) => {
            let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if answer.is_empty() {
                let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
                format!(
                    "no answer ({}{})",
                    output.status,
                    if stderr.is_empty() { String::new() } else { format!(": {stderr}") }
                )
            } else {
                answer
            }
        }
        Ok(Err(error)) => format!("could not run `systemctl`: {error}"),
        Err(_) => format!("no answer within {}s", context.timeout.as_secs_f64()),
    }
}

/// `renewal-timer-missing` when nothing renews the certificates; `cron_line` is the crontab line
/// that would.
fn timer_finding(timer: &TimerState, context: &Context<'_>, cron_line: &str) -> Option<Finding> {
    if timer.renews() {
        return None;
    }
    let (summary, fix) = match timer {
        TimerState::Systemd { .. } => (
            format!("nothing renews the certificates: the `{TIMER_UNIT}` timer is not enabled and running"),
            format!("{} writes, enables and starts it", context.command("certs install-timer")),
        ),
        TimerState::Files { unit, systemd_runs, .. } => {
            let write = context.command("certs install-timer --no-enable");
            let folder = unit.parent().unwrap_or(unit).display();
            let cron = format!("have cron run the renewal twice a day (`crontab -e`): `{cron_line}`");
            let fix = if *systemd_runs {
                format!(
                    "{write} writes the units to `{folder}`, a folder of their own systemd does not load; or {cron}"
                )
            } else {
                format!("without systemd, {cron}; {write} writes the units to `{folder}` for when systemd runs")
            };
            (
                format!(
                    "nothing renews the certificates: neither the `{TIMER_UNIT}` unit nor a crontab line runs \
                     `{CRON_RENEW}`"
                ),
                fix,
            )
        }
    };
    Some(Finding::warning("renewal-timer-missing", summary, fix).with_evidence(timer.describe()))
}

/// `2025-06-01T12:00:00Z (expired 3d04h ago)` or `… (in 80d02h)`.
fn validity(not_after: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let left = not_after - now;
    if left <= TimeDelta::zero() {
        format!("{} (expired {} ago)", rfc3339(not_after), duration(-left))
    } else {
        format!("{} (in {})", rfc3339(not_after), duration(left))
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `3d04h`, `5h20m`: a positive span, shortly.
fn duration(span: TimeDelta) -> String {
    crate::ui::short_duration(u64::try_from(span.num_seconds()).unwrap_or(0))
}

fn backticked(words: &[&str]) -> String {
    words.iter().map(|word| format!("`{word}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::*;
    use crate::certs::store::{NewVersion, RenewalConf};
    use crate::config::Stack;
    use crate::doctor::Severity;

    /// A leaf for `names` with `serial`, valid from `from_days` to `to_days` around now, signed by
    /// a test CA: the PEM texts the store keeps, and the DER a TLS server presents.
    struct Issued {
        key_pem: String,
        cert_pem: String,
        chain_pem: String,
        cert_der: CertificateDer<'static>,
        key_der: PrivateKeyDer<'static>,
    }

    fn issue(names: &[&str], serial: u64, from_days: i64, to_days: i64) -> Issued {
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params("Doctor Test CA"), rcgen::KeyPair::generate().unwrap())
            .unwrap();
        leaf_under(names, serial, from_days, to_days, &ca)
    }

    /// A CA's parameters, with `name` as its common name.
    fn ca_params(name: &str) -> rcgen::CertificateParams {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, name);
        ca
    }

    /// A leaf for `names` with `serial`, valid from `from_days` to `to_days` around now, signed
    /// by `issuer`, whose certificate is the leaf's chain.
    fn leaf_under(
        names: &[&str],
        serial: u64,
        from_days: i64,
        to_days: i64,
        issuer: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
    ) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf =
            rcgen::CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>()).unwrap();
        leaf.serial_number = Some(rcgen::SerialNumber::from(serial));
        let now = time::OffsetDateTime::now_utc();
        leaf.not_before = now + time::Duration::days(from_days);
        leaf.not_after = now + time::Duration::days(to_days);
        let leaf = leaf.signed_by(&key, issuer).unwrap();
        Issued {
            key_pem: key.serialize_pem(),
            cert_pem: leaf.pem(),
            chain_pem: issuer.pem(),
            cert_der: leaf.der().clone(),
            key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    fn store_lineage(cert_dir: &Path, name: &str, issued: &Issued) {
        let fullchain = format!("{}{}", issued.cert_pem, issued.chain_pem);
        let new = NewVersion {
            privkey_pem: &issued.key_pem,
            cert_pem: &issued.cert_pem,
            chain_pem: &issued.chain_pem,
            fullchain_pem: &fullchain,
        };
        let conf = RenewalConf {
            server: "https://127.0.0.1:14000/dir".into(),
            webroot: PathBuf::from("/var/www/certbot"),
            names: vec![name.to_owned()],
            key_type: "ecdsa".into(),
        };
        store::write_version(cert_dir, name, &new, &conf).unwrap();
    }

    fn configured(lineages: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        lineages
            .iter()
            .map(|(name, domains)| ((*name).to_owned(), domains.iter().map(|domain| (*domain).to_owned()).collect()))
            .collect()
    }

    fn command(arguments: &str) -> String {
        format!("`masstockctl --env local {arguments}`")
    }

    const TIMER_OK: TimerState = TimerState::Systemd { enabled: String::new(), active: String::new() };

    fn ids(findings: &[Finding]) -> Vec<(String, Severity)> {
        findings.iter().map(|finding| (finding.id.clone(), finding.severity)).collect()
    }

    #[test]
    fn expired_expiring_missing_and_lacking_names_each_have_their_finding() {
        let dir = tempfile::tempdir().unwrap();
        let cert_dir = dir.path();
        store_lineage(cert_dir, "expired.fr", &issue(&["expired.fr"], 0x0e, -90, -2));
        store_lineage(cert_dir, "soon.fr", &issue(&["soon.fr"], 0x50, -85, 3));
        store_lineage(cert_dir, "fine.fr", &issue(&["fine.fr"], 0xf1, -1, 80));
        store_lineage(cert_dir, "short.fr", &issue(&["short.fr"], 0x5f, -1, 80));
        let examined = read_store(
            cert_dir,
            configured(&[
                ("expired.fr", &["expired.fr"]),
                ("soon.fr", &["soon.fr"]),
                ("fine.fr", &["fine.fr"]),
                ("absent.fr", &["absent.fr", "www.absent.fr"]),
                ("short.fr", &["short.fr", "www.short.fr"]),
            ]),
        );
        let timer = files_state(false, true, false, None);
        let findings = lineage_findings(&examined, cert_dir, Utc::now(), &timer, &command);
        assert_eq!(
            ids(&findings),
            [
                ("cert-expired:expired.fr".to_owned(), Severity::Error),
                ("cert-expiring:soon.fr".to_owned(), Severity::Warning),
                ("cert-missing:absent.fr".to_owned(), Severity::Error),
                ("cert-names:short.fr".to_owned(), Severity::Error),
            ]
        );

        let expired = &findings[0];
        assert!(
            expired.evidence.iter().any(|line| line.starts_with("not after: ") && line.contains("expired 2d")),
            "{expired:#?}"
        );
        assert!(expired.evidence.contains(&"serial: e".to_owned()), "{expired:#?}");
        assert!(expired.evidence.contains(&"names: expired.fr".to_owned()), "{expired:#?}");
        assert!(expired.fix.starts_with("`masstockctl --env local certs renew`"), "{}", expired.fix);

        let expiring = &findings[1];
        assert!(
            expiring.summary.contains("expires in 2d") || expiring.summary.contains("expires in 3d"),
            "{expiring:#?}"
        );
        assert!(expiring.evidence.iter().any(|line| line.starts_with("days left: ")), "{expiring:#?}");
        assert!(expiring.evidence.iter().any(|line| line.contains("renewal timer: none")), "{expiring:#?}");

        let missing = &findings[2];
        assert!(missing.evidence[0].contains("live/absent.fr/` does not exist"), "{missing:#?}");
        assert_eq!(missing.fix, "`masstockctl --env local certs issue` obtains it from the CA");

        let names = &findings[3];
        assert!(names.summary.contains("`www.short.fr`"), "{names:#?}");
        assert!(names.evidence.contains(&"missing: www.short.fr".to_owned()), "{names:#?}");
        assert!(names.fix.starts_with("`masstockctl --env local certs renew`: "), "{}", names.fix);
    }

    #[test]
    fn a_renewal_error_is_its_own_finding_only_when_nothing_else_says_it() {
        let dir = tempfile::tempdir().unwrap();
        let cert_dir = dir.path();
        store_lineage(cert_dir, "fine.fr", &issue(&["fine.fr"], 0xf1, -1, 80));
        store_lineage(cert_dir, "expired.fr", &issue(&["expired.fr"], 0x0e, -90, -2));
        for name in ["fine.fr", "expired.fr"] {
            store::record_error(cert_dir, name, Some("the CA refused the order: rateLimited")).unwrap();
        }
        let examined = read_store(cert_dir, configured(&[("fine.fr", &["fine.fr"]), ("expired.fr", &["expired.fr"])]));
        let findings = lineage_findings(&examined, cert_dir, Utc::now(), &TIMER_OK, &command);
        assert_eq!(
            ids(&findings),
            [
                ("cert-renewal-failed:fine.fr".to_owned(), Severity::Warning),
                ("cert-expired:expired.fr".to_owned(), Severity::Error),
            ]
        );
        for finding in &findings {
            assert!(
                finding.evidence.iter().any(|line| line.starts_with("last renewal error (")
                    && line.ends_with("): the CA refused the order: rateLimited")),
                "{finding:#?}"
            );
        }
        assert!(findings[1].fix.contains("last renewal error"), "{}", findings[1].fix);
    }

    #[test]
    fn an_unreadable_certificate_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert_dir = dir.path();
        store_lineage(cert_dir, "broken.fr", &issue(&["broken.fr"], 1, -1, 80));
        fs_err::write(cert_dir.join("archive/broken.fr/cert1.pem"), "garbage").unwrap();
        let examined = read_store(cert_dir, configured(&[("broken.fr", &["broken.fr"])]));
        let findings = lineage_findings(&examined, cert_dir, Utc::now(), &TIMER_OK, &command);
        assert_eq!(ids(&findings), [("cert-invalid:broken.fr".to_owned(), Severity::Error)]);
        assert!(findings[0].evidence[0].contains("live/broken.fr/cert.pem"), "{:#?}", findings[0]);
        assert!(findings[0].fix.contains("`masstockctl --env local certs issue`"), "{}", findings[0].fix);
    }

    fn stack(cert_dir: &Path, https_port: u16) -> Stack {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml");
        let mut stack =
            Stack::from_source_without_env_file(&crate::config::read_source(&path).unwrap(), "production").unwrap();
        stack.config.acme.cert_dir = cert_dir.to_path_buf();
        stack.config.acme.systemd_dir = Some(cert_dir.join("systemd"));
        stack.config.edge.upstream_host = std::net::Ipv4Addr::LOCALHOST.into();
        stack.config.edge.https_port = https_port;
        stack
    }

    fn context(stack: &Stack) -> Context<'_> {
        Context {
            stack,
            docker: Err("no engine in unit tests".into()),
            timeout: Duration::from_secs(5),
            now_ms: crate::doctor::now_ms(),
            invocation: "masstockctl".into(),
            env_file_error: None,
            inspections: std::sync::Mutex::default(),
        }
    }

    /// A TLS server on 127.0.0.1 that presents `issued` and its chain whatever the name asked,
    /// as nginx presents a `fullchain.pem`.
    fn tls_server(issued: &Issued) -> u16 {
        use rustls::pki_types::pem::PemObject as _;
        let chain = CertificateDer::from_pem_slice(issued.chain_pem.as_bytes()).unwrap();
        tls_server_with(vec![issued.cert_der.clone(), chain], issued.key_der.clone_key())
    }

    /// A TLS server on 127.0.0.1 that presents `chain` whatever the name asked.
    fn tls_server_with(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> u16 {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let config = Arc::clone(&config);
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let Ok(mut connection) = rustls::ServerConnection::new(config) else { return };
                    while connection.is_handshaking() {
                        if connection.complete_io(&mut stream).is_err() {
                            return;
                        }
                    }
                    let _ = connection.complete_io(&mut stream);
                });
            }
        });
        port
    }

    /// deploy.toml's domains, in site order (the sites' names: api, app, n8n, vitrine).
    const DOMAINS: [&str; 4] = ["api.masstock.fr", "app.masstock.fr", "n8n.masstock.fr", "masstock.fr"];

    #[tokio::test]
    async fn nothing_to_say_when_the_certificate_on_disk_is_the_one_served() {
        let dir = tempfile::tempdir().unwrap();
        let issued = issue(&DOMAINS, 0x42, -1, 80);
        store_lineage(dir.path(), "masstock.fr", &issued);
        fs_err::create_dir_all(dir.path().join("systemd")).unwrap();
        fs_err::write(dir.path().join("systemd").join(TIMER_UNIT), "[Timer]\n").unwrap();
        let mut stack = stack(dir.path(), tls_server(&issued));
        stack.config.edge.ca_bundle = Some(trusting(dir.path(), &issued.chain_pem));
        assert_eq!(stack.certificate_lineages(), configured(&[("masstock.fr", &DOMAINS)]), "the fixture's premise");
        // The units are in a folder of their own: they count whether systemd runs or not.
        assert_eq!(examine(&context(&stack)).await, []);
    }

    #[tokio::test]
    async fn another_certificate_served_is_named_per_domain() {
        let dir = tempfile::tempdir().unwrap();
        store_lineage(dir.path(), "masstock.fr", &issue(&DOMAINS, 0x42, -1, 80));
        let stale = issue(&DOMAINS, 0x99, -90, -1);
        let stack = stack(dir.path(), tls_server(&stale));
        let findings = examine(&context(&stack)).await;
        let not_served: Vec<&Finding> =
            findings.iter().filter(|finding| finding.id.starts_with("cert-not-served:")).collect();
        assert_eq!(
            not_served.iter().map(|finding| finding.id.as_str()).collect::<Vec<_>>(),
            DOMAINS.map(|domain| format!("cert-not-served:{domain}")),
        );
        let first = not_served[0];
        assert_eq!(first.severity, Severity::Error);
        assert!(first.summary.contains("serial `99`") && first.summary.contains("(`42`)"), "{first:#?}");
        assert!(
            first.evidence[0].starts_with("served: serial 99, not after ") && first.evidence[0].contains("expired")
        );
        assert!(first.evidence[1].contains("serial 42"), "{first:#?}");
        assert!(first.fix.starts_with("reload nginx so it loads the certificate on disk: `systemctl reload nginx`"));
    }

    /// `edge.ca_bundle` in `dir`, holding `roots_pem`.
    fn trusting(dir: &Path, roots_pem: &str) -> PathBuf {
        let bundle = dir.join("roots.pem");
        fs_err::write(&bundle, roots_pem).unwrap();
        bundle
    }

    fn untrusted_findings(findings: &[Finding]) -> Vec<&Finding> {
        findings.iter().filter(|finding| finding.id.starts_with("cert-untrusted:")).collect()
    }

    #[tokio::test]
    async fn a_certificate_no_trusted_root_vouches_for_is_one_finding_per_lineage() {
        let dir = tempfile::tempdir().unwrap();
        let issued = issue(&DOMAINS, 0x42, -1, 80);
        store_lineage(dir.path(), "masstock.fr", &issued);
        let mut stack = stack(dir.path(), tls_server(&issued));
        // The system's roots alone: the test CA is not among them.
        let findings = examine(&context(&stack)).await;
        let untrusted = untrusted_findings(&findings);
        assert_eq!(untrusted.len(), 1, "{findings:#?}");
        let finding = untrusted[0];
        assert_eq!((finding.id.as_str(), finding.severity), ("cert-untrusted:masstock.fr", Severity::Error));
        assert!(DOMAINS.iter().all(|domain| finding.summary.contains(domain)), "{finding:#?}");
        assert!(finding.evidence[0].contains("serial 42") && finding.evidence[0].contains("Doctor Test CA"));
        assert!(finding.evidence[1].contains("UnknownIssuer"), "{finding:#?}");
        assert!(finding.fix.contains("`masstockctl certs renew --force masstock.fr`"), "{}", finding.fix);
        assert!(finding.fix.contains("https://acme-v02.api.letsencrypt.org/directory"), "{}", finding.fix);

        // A bundle with another CA: adding the right root is the other way out.
        let other = issue(&DOMAINS, 0x43, -1, 80);
        stack.config.edge.ca_bundle = Some(trusting(dir.path(), &other.chain_pem));
        let findings = examine(&context(&stack)).await;
        let untrusted = untrusted_findings(&findings);
        assert_eq!(untrusted.len(), 1, "{findings:#?}");
        assert!(untrusted[0].evidence[1].contains("`edge.ca_bundle`"), "{:#?}", untrusted[0]);
        assert!(untrusted[0].fix.contains("add its root to"), "{}", untrusted[0].fix);
    }

    /// A root, an intermediate valid until `intermediate_to_days` from now, and a leaf for
    /// [`DOMAINS`] it signed: the root's PEM, and the leaf as stored (its chain the intermediate).
    fn three_levels(intermediate_to_days: i64) -> (String, Issued) {
        let root =
            rcgen::CertifiedIssuer::self_signed(ca_params("Doctor Test Root"), rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let intermediate_key = rcgen::KeyPair::generate().unwrap();
        let mut intermediate = ca_params("Doctor Test Intermediate");
        let now = time::OffsetDateTime::now_utc();
        intermediate.not_before = now - time::Duration::days(400);
        intermediate.not_after = now + time::Duration::days(intermediate_to_days);
        let intermediate = rcgen::CertifiedIssuer::signed_by(intermediate, intermediate_key, &root).unwrap();
        (root.pem(), leaf_under(&DOMAINS, 0x44, -1, 80, &intermediate))
    }

    /// nginx pointed at cert.pem instead of fullchain.pem: the root is trusted, the intermediate
    /// is not sent, and the fix is the site's `ssl_certificate`, not a new certificate.
    #[tokio::test]
    async fn a_chain_sent_without_its_intermediate_points_at_fullchain() {
        let dir = tempfile::tempdir().unwrap();
        let (root_pem, issued) = three_levels(400);
        store_lineage(dir.path(), "masstock.fr", &issued);
        // The leaf alone, as nginx sends cert.pem.
        let mut stack = stack(dir.path(), tls_server_with(vec![issued.cert_der.clone()], issued.key_der.clone_key()));
        stack.config.edge.ca_bundle = Some(trusting(dir.path(), &root_pem));
        let findings = examine(&context(&stack)).await;
        let untrusted = untrusted_findings(&findings);
        assert_eq!(untrusted.len(), 1, "{findings:#?}");
        assert!(untrusted[0].evidence[2].starts_with("nginx sends 1 certificate(s);"), "{:#?}", untrusted[0]);
        assert!(untrusted[0].evidence[2].ends_with("holds 2"), "{:#?}", untrusted[0]);
        assert!(untrusted[0].fix.starts_with("point the site's `ssl_certificate` at `"), "{}", untrusted[0].fix);

        // The whole chain sent: nothing to say.
        stack.config.edge.https_port = tls_server(&issued);
        let findings = examine(&context(&stack)).await;
        assert!(untrusted_findings(&findings).is_empty(), "{findings:#?}");
    }

    /// A leaf within its dates whose intermediate expired: only the chain says so.
    #[tokio::test]
    async fn an_expired_intermediate_is_untrusted() {
        let dir = tempfile::tempdir().unwrap();
        let (root_pem, issued) = three_levels(-1);
        store_lineage(dir.path(), "masstock.fr", &issued);
        let mut stack = stack(dir.path(), tls_server(&issued));
        stack.config.edge.ca_bundle = Some(trusting(dir.path(), &root_pem));
        let findings = examine(&context(&stack)).await;
        assert!(
            !findings.iter().any(|finding| finding.id.starts_with("cert-expired")),
            "the leaf is valid: {findings:#?}"
        );
        let untrusted = untrusted_findings(&findings);
        assert_eq!(untrusted.len(), 1, "{findings:#?}");
        assert!(untrusted[0].evidence[1].contains("an intermediate expired"), "{:#?}", untrusted[0]);
    }

    /// An expired certificate from a trusted CA is `cert-expired`, and that alone.
    #[tokio::test]
    async fn an_expired_leaf_is_not_also_untrusted() {
        let dir = tempfile::tempdir().unwrap();
        let expired = issue(&DOMAINS, 0x45, -90, -1);
        store_lineage(dir.path(), "masstock.fr", &expired);
        let mut stack = stack(dir.path(), tls_server(&expired));
        stack.config.edge.ca_bundle = Some(trusting(dir.path(), &expired.chain_pem));
        let findings = examine(&context(&stack)).await;
        assert!(findings.iter().any(|finding| finding.id == "cert-expired:masstock.fr"), "{findings:#?}");
        assert!(untrusted_findings(&findings).is_empty(), "{findings:#?}");
    }

    /// A certificate from the staging directory deploy.toml still names: the fix says to change
    /// the directory first, since renewing would bring another one nobody trusts.
    #[tokio::test]
    async fn a_staging_directory_is_named_in_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let issued = issue(&DOMAINS, 0x46, -1, 80);
        store_lineage(dir.path(), "masstock.fr", &issued);
        let mut stack = stack(dir.path(), tls_server(&issued));
        stack.config.acme.directory = "https://acme-staging-v02.api.letsencrypt.org/directory".into();
        let findings = examine(&context(&stack)).await;
        let untrusted = untrusted_findings(&findings);
        assert_eq!(untrusted.len(), 1, "{findings:#?}");
        assert!(untrusted[0].fix.starts_with("`[acme] directory` is a staging CA's"), "{}", untrusted[0].fix);
        assert!(untrusted[0].fix.ends_with("`masstockctl certs renew --force masstock.fr`"), "{}", untrusted[0].fix);
    }

    #[tokio::test]
    async fn an_edge_that_refuses_connections_is_one_finding() {
        let dir = tempfile::tempdir().unwrap();
        store_lineage(dir.path(), "masstock.fr", &issue(&DOMAINS, 0x42, -1, 80));
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut stack = stack(dir.path(), port);
        let findings = examine(&context(&stack)).await;
        let edge: Vec<&Finding> = findings.iter().filter(|finding| finding.id.starts_with("edge-")).collect();
        assert_eq!(edge.len(), 1, "{findings:#?}");
        assert_eq!(edge[0].id, "edge-unreachable");
        assert!(edge[0].evidence[0].contains(&format!("127.0.0.1:{port}")), "{:#?}", edge[0]);
        assert_eq!(
            edge[0].fix,
            "reload nginx: `systemctl reload nginx`, or start it if it is not running: `systemctl start nginx`"
        );
        assert!(!findings.iter().any(|finding| finding.id.starts_with("cert-not-served")), "{findings:#?}");

        stack.config.edge.start_command = vec!["nginx".into(), "-c".into(), "nginx.conf".into()];
        let findings = examine(&context(&stack)).await;
        let edge = findings.iter().find(|finding| finding.id == "edge-unreachable").unwrap();
        assert_eq!(edge.fix, "start nginx: `nginx -c nginx.conf`");
    }

    /// The timer as read without asking systemctl: systemd runs or not, the folder is one it
    /// loads units from or not, the unit is written or not, a crontab line runs `certs renew`.
    fn files_state(systemd_runs: bool, systemd_folder: bool, unit_exists: bool, cron: Option<&str>) -> TimerState {
        let folder = if systemd_folder { "/etc/systemd/system" } else { "/srv/masstock/.masstock/local/systemd" };
        TimerState::Files {
            unit: Path::new(folder).join(TIMER_UNIT),
            systemd_runs,
            systemd_folder,
            unit_exists,
            cron: cron.map(str::to_owned),
        }
    }

    const CRON_LINE: &str = "0 0,12 * * * /usr/local/bin/masstockctl --config /opt/masstock/deploy.toml certs renew";

    #[test]
    fn systemctl_decides_when_systemd_runs_and_loads_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let stack = stack(dir.path(), 443);
        let context = context(&stack);
        let systemd =
            |enabled: &str, active: &str| TimerState::Systemd { enabled: enabled.into(), active: active.into() };
        assert_eq!(timer_finding(&systemd("enabled", "active"), &context, CRON_LINE), None);
        let finding = timer_finding(&systemd("disabled", "inactive"), &context, CRON_LINE).unwrap();
        assert_eq!((finding.id.as_str(), finding.severity), ("renewal-timer-missing", Severity::Warning));
        assert_eq!(
            finding.evidence,
            [
                "`systemctl is-enabled masstock-certs.timer`: disabled",
                "`systemctl is-active masstock-certs.timer`: inactive"
            ]
        );
        assert_eq!(finding.fix, "`masstockctl certs install-timer` writes, enables and starts it");
        assert!(timer_finding(&systemd("enabled", "failed"), &context, CRON_LINE).is_some());
    }

    #[test]
    fn otherwise_the_unit_file_or_a_crontab_line_renews() {
        let dir = tempfile::tempdir().unwrap();
        let stack = stack(dir.path(), 443);
        let context = context(&stack);
        let cron = Some("`/etc/cron.d/masstock`: `0 3 * * * root masstockctl certs renew`");
        for systemd_runs in [false, true] {
            for systemd_folder in [false, true] {
                if systemd_runs && systemd_folder {
                    continue; // systemctl's case
                }
                for (unit_exists, cron) in [(true, None), (false, cron), (true, cron)] {
                    let state = files_state(systemd_runs, systemd_folder, unit_exists, cron);
                    assert_eq!(timer_finding(&state, &context, CRON_LINE), None, "{state:#?}");
                }
                let state = files_state(systemd_runs, systemd_folder, false, None);
                let finding = timer_finding(&state, &context, CRON_LINE).unwrap();
                assert_eq!(finding.id, "renewal-timer-missing");
                assert!(finding.fix.contains("`masstockctl certs install-timer --no-enable` writes the units"));
                assert!(finding.fix.contains(&format!("(`crontab -e`): `{CRON_LINE}`")), "{}", finding.fix);
                assert!(finding.evidence[1].ends_with("masstock-certs.timer` does not exist"), "{finding:#?}");
                assert!(finding.evidence[2].starts_with("no crontab line runs `certs renew`"), "{finding:#?}");
            }
        }

        // The local environment on a laptop that runs systemd: the units in a folder of their own.
        let local = timer_finding(&files_state(true, false, false, None), &context, CRON_LINE).unwrap();
        assert_eq!(
            local.evidence[0],
            "systemd does not load units from `/srv/masstock/.masstock/local/systemd` (`acme.systemd_dir`)"
        );
        assert!(local.fix.starts_with("`masstockctl certs install-timer --no-enable` writes the units to"));
        // No systemd at all: cron first.
        let bare = timer_finding(&files_state(false, true, false, None), &context, CRON_LINE).unwrap();
        assert!(bare.evidence[0].contains("systemd does not run on this host"), "{bare:#?}");
        assert!(bare.fix.starts_with("without systemd, have cron run the renewal"), "{}", bare.fix);

        assert!(files_state(false, true, false, cron).summary().starts_with("renewal: cron runs `certs renew`"));
    }

    #[test]
    fn the_cron_line_names_absolute_paths_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let mut stack = stack(dir.path(), 443);
        let config = fs_err::canonicalize(&stack.path).unwrap();
        let masstockctl = std::env::current_exe().unwrap();
        let line = cron_line(&context(&stack));
        assert_eq!(
            line,
            format!(
                "0 0,12 * * * {} --config {} certs renew",
                shell_word(&masstockctl).replace('%', "\\%"),
                shell_word(&config).replace('%', "\\%")
            )
        );
        assert!(!line.contains("cd ") && !line.contains("--env"), "{line}");
        stack.environment = "local".into();
        assert!(cron_line(&context(&stack)).ends_with(" --env local certs renew"));
    }
}
