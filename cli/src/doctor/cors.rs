//! The reference's "CORS errors" scenario: a browser's preflight from the app's origin to the API
//! through the edge, judged as `cors test` judges it, and the API container's `CORS_ORIGIN`
//! against deploy.toml's `[cors] origins`.
//!
//! It uses `cors test`'s `exchange` and `judge` (the preflight and the real GET from the first of
//! `[cors] origins`, what `cors test` sends), and `origins_differ` on the API container's
//! `CORS_ORIGIN` as its own finding (`cors-origin-mismatch`), since the edge and the API are fixed
//! by different deploys.
//!
//! Through an edge that is down, or with the API down: a refused connection is the certificates
//! group's `edge-unreachable`; a preflight refused on the certificate says so and points at the
//! certificate findings, which name the cause; a real request answered 502–504 by nginx is the API
//! down (the services group's finding), so only the preflight, which nginx answers itself, is
//! judged then.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::{Context, Finding, Inspected};
use crate::cors::{self, Answer};
use crate::health;

/// The route the probe asks for: a GET that needs authentication (401, CORS headers all the same).
const PATH: &str = "/api/v1/workflows";

pub async fn examine(context: &Context<'_>) -> Vec<Finding> {
    let stack = context.stack;
    let Some(site) = cors::api_site(stack) else { return Vec::new() };
    let Some(origin) = stack.config.cors.origins.first() else { return Vec::new() };
    let edge = &stack.config.edge;
    let edge_address = SocketAddr::new(edge.upstream_host, edge.https_port);
    let url = health::edge_url(&site.domain, edge_address, PATH);
    let container = stack.container_name(&site.service);
    let mut findings = Vec::new();

    let exchange = async {
        match health::edge_client(&site.domain, edge_address, edge.ca_bundle.as_deref(), context.timeout) {
            Ok(client) => Ok(cors::exchange(&client, &url, origin).await),
            Err(error) => Err(error.to_string()),
        }
    };
    let running_value = async {
        match context.inspect(&container).await {
            found @ Inspected::Found(_) => Some(cors::cors_origin_in(found.environment())),
            Inspected::Missing | Inspected::Unknown(_) => None,
        }
    };
    let (exchange, running_value) = tokio::join!(exchange, running_value);

    match exchange {
        Err(reason) => findings.push(
            Finding::error(
                "cors-preflight",
                format!("the CORS preflight to `{}` cannot be sent: {reason}", site.domain),
                "check `[edge] ca_bundle` in deploy.toml",
            )
            .with_evidence([format!("OPTIONS {url}")]),
        ),
        // An edge that refuses connections is the certificates group's `edge-unreachable`.
        Ok((preflight, _)) if preflight.error.as_deref().is_some_and(is_connection_refused) => {}
        Ok((preflight, _)) if preflight.status.is_none() => {
            let reason = preflight.error.as_deref().unwrap_or_default();
            let (summary, fix) = if is_certificate_problem(reason) {
                (
                    format!("browsers cannot reach the API: the edge's certificate for `{}` is refused", site.domain),
                    "the certificate findings (`cert-…`) say why, and what to run".to_owned(),
                )
            } else {
                (
                    format!("browsers cannot reach the API: the edge does not answer for `{}`", site.domain),
                    format!(
                        "`nginx -t` says what it refuses; then reload it (`{}`)",
                        stack.config.edge.reload_command.join(" ")
                    ),
                )
            };
            findings.push(
                Finding::error("cors-preflight", summary, fix)
                    .with_evidence([format!("OPTIONS {url} with Origin: {origin} → {}", answer_line(&preflight))]),
            );
        }
        Ok((preflight, request)) => {
            // The edge answers the preflight itself; the GET goes to the API. A 502–504 there is
            // the API down (the services group's finding), not its CORS.
            let request = if matches!(request.status, Some(502..=504)) { Answer::default() } else { request };
            // The container is judged on its own below; here only what a browser sees.
            let report = cors::judge(&stack.config.cors, origin, &url, preflight, request, None, &container);
            if !report.ok {
                let mut evidence = vec![
                    format!("OPTIONS {url} with Origin: {origin} → {}", answer_line(&report.preflight)),
                    format!("GET {url} with Origin: {origin} → {}", answer_line(&report.request)),
                ];
                evidence.extend(report.reasons.iter().cloned());
                findings.push(
                    Finding::error(
                        "cors-preflight",
                        format!("browsers on `{origin}` cannot call the API: {}", report.verdict),
                        format!(
                            "{} renders nginx's site from `[cors]` again and recreates the API with its \
                             `CORS_ORIGIN`; {} shows the exchange",
                            context.command("deploy"),
                            context.command("cors test")
                        ),
                    )
                    .with_evidence(evidence),
                );
            }
        }
    }

    // An absent container is the services group's finding; only a readable value is compared.
    if let Some(value) = running_value {
        if let Some(reason) = cors::origins_differ(&container, value.as_deref(), &stack.config.cors.origins) {
            findings.push(
                Finding::error(
                    "cors-origin-mismatch",
                    format!("`{container}` does not allow the origins deploy.toml lists"),
                    format!(
                        "{} recreates it with `[cors] origins`",
                        context.command(&format!("deploy {}", site.service))
                    ),
                )
                .with_evidence([
                    format!("container: CORS_ORIGIN={}", value.as_deref().unwrap_or("(unset)")),
                    format!("deploy.toml: [cors] origins = {}", stack.config.cors.origins.join(",")),
                    reason,
                ]),
            );
        }
    }
    findings
}

/// Whether a request failed because nothing listens (or the host refuses the connection).
fn is_connection_refused(reason: &str) -> bool {
    let lower = reason.to_lowercase();
    lower.contains("connection refused") || lower.contains("tcp connect error")
}

/// Whether a request failed on the TLS certificate (expired, unknown issuer, wrong name) rather
/// than on the connection.
fn is_certificate_problem(reason: &str) -> bool {
    let lower = reason.to_lowercase();
    ["certificate", "unknownissuer", "expired", "notvalidforname"].iter().any(|word| lower.contains(word))
}

/// `204, access-control-allow-origin: …, vary: Origin`, or why no answer came.
fn answer_line(answer: &Answer) -> String {
    match (answer.status, &answer.error) {
        (Some(status), _) => {
            let mut line = status.to_string();
            if answer.headers.is_empty() {
                line.push_str(", no Access-Control-* header");
            }
            for (name, value) in &answer.headers {
                let _ = write!(line, ", {name}: {value}");
            }
            line
        }
        (None, Some(error)) => format!("no answer: {error}"),
        (None, None) => "no answer".to_owned(),
    }
}
