//! The edge of the deployed stack as an outside reviewer scans it: testssl.sh finds nothing of
//! severity MEDIUM or higher but what the local test setup causes ([`ALLOWED`], each with its
//! reason), every site negotiates TLS 1.3 and 1.2 and nothing older, and every site sends the
//! security headers on error pages too: a 404 from its upstream, and a 404 and a 413 nginx makes
//! itself.
//!
//! testssl.sh runs once, against the API's name (the TLS settings of every server come from one
//! template; its header checks see one site, the checks here see all of them), with the checks
//! that apply here: protocols, cipher categories, forward secrecy, server preferences and
//! defaults, headers and vulnerabilities. Left out: client simulation and each of 370 ciphers
//! (minutes, and the cipher categories and forward secrecy checks already list what is offered),
//! DNS (`--nodns none`, the names resolve nowhere: `--ip 127.0.0.1`).

use std::path::Path;
use std::process::Command;

use masstock_tests::require_tool;
use serde_json::Value;

use crate::nginx::{assert_tls_1_3_and_1_2_only, s_client};
use crate::stack::LocalStack;

/// testssl.sh findings of severity MEDIUM or higher (or a check it could not run, `WARN`) that
/// the local test setup causes or that are not weaknesses, by testssl id, each with its reason.
const ALLOWED: &[(&str, &str)] = &[
    (
        "cert_revocation",
        "the test CA's certificate names neither a CRL nor an OCSP responder; Let's Encrypt's name a CRL",
    ),
    (
        "cert_validityPeriod",
        "the test CA (rcgen) issues certificates valid until 4096; Let's Encrypt's last 90 days or less",
    ),
    (
        "HSTS_time",
        "the local environment's `edge.hsts` is `max-age=300` on purpose (deploy.toml: browsers remember \
         HSTS per name, a short one keeps a local experiment from sticking); production's is a year",
    ),
    ("engine_problem", "testssl's own OpenSSL has no GOST engine: the scanner, not the edge"),
    (
        "secure_renego",
        "testssl tests renegotiation without SNI, which the edge refuses (`ssl_reject_handshake`); \
         `secure_renegotiation_is_supported` below checks it with each site's name",
    ),
    (
        "sessionresumption_ticket",
        "testssl's ticket resumption check cannot connect (no SNI); TLS 1.2 sends no ticket \
         (`nginx::every_site_speaks_tls_1_3_and_1_2_only_whatever_the_host_config_says`)",
    ),
];

pub(super) fn check(stack: &LocalStack) {
    let started = std::time::Instant::now();
    let ca_file = stack.project.sandbox.path("ca.pem");
    every_site_speaks_tls_1_3_and_1_2_only(stack, &ca_file);
    testssl_finds_nothing_but_the_test_setup(stack, &ca_file);
    error_pages_carry_the_security_headers(stack);
    eprintln!("tls: checked in {:.0?}", started.elapsed());
}

fn every_site_speaks_tls_1_3_and_1_2_only(stack: &LocalStack, ca_file: &Path) {
    let port = stack.project.sandbox.https_port;
    for (_, site) in stack.project.sandbox.stack.sites() {
        assert_tls_1_3_and_1_2_only(port, &site.domain, ca_file);
        secure_renegotiation_is_supported(port, &site.domain, ca_file);
    }
}

/// RFC 5746, which testssl cannot check here (it connects without SNI).
fn secure_renegotiation_is_supported(port: u16, domain: &str, ca_file: &Path) {
    let (success, output) = s_client(port, Some(domain), ca_file, &["-tls1_2"]);
    assert!(success && output.contains("Secure Renegotiation IS supported"), "{domain}:\n{output}");
}

fn testssl_finds_nothing_but_the_test_setup(stack: &LocalStack, ca_file: &Path) {
    let domain = stack.project.domain("api");
    let report = stack.project.sandbox.path("testssl.json");
    let output = Command::new(require_tool("testssl"))
        .args(["--quiet", "--color", "0", "--warnings", "off", "--nodns", "none", "--ip", "127.0.0.1"])
        .args(["--connect-timeout", "10", "--openssl-timeout", "10", "--add-ca"])
        .arg(ca_file)
        .arg("--jsonfile")
        .arg(&report)
        // No `--severity`: the OK findings show the scan saw the edge; severities are judged here.
        .args(["-p", "-s", "-f", "-P", "-S", "-h", "-U"])
        .arg(format!("{domain}:{}", stack.project.sandbox.https_port))
        .current_dir(stack.project.sandbox.root())
        .output()
        .expect("run testssl");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let text =
        fs_err::read_to_string(&report).unwrap_or_else(|error| panic!("testssl wrote no report ({error}):\n{said}"));
    let findings: Vec<Value> =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("testssl's report ({error}):\n{text}"));
    let finding = |id: &str| {
        findings
            .iter()
            .find(|finding| finding["id"] == id)
            .map(|finding| finding["finding"].as_str().unwrap_or_default().to_owned())
    };
    // The scan reached the edge: it saw TLS 1.3 and no TLS 1.0.
    assert!(finding("TLS1_3").is_some_and(|text| text.starts_with("offered")), "{said}");
    assert_eq!(finding("TLS1").as_deref(), Some("not offered"), "{said}");
    let (allowed, severe): (Vec<&Value>, Vec<&Value>) = findings
        .iter()
        .filter(|finding| {
            matches!(finding["severity"].as_str(), Some("MEDIUM" | "HIGH" | "CRITICAL" | "WARN" | "FATAL"))
        })
        .partition(|finding| ALLOWED.iter().any(|(allowed, _)| finding["id"] == *allowed));
    let describe = |findings: &[&Value]| {
        findings
            .iter()
            .map(|finding| {
                let field = |name: &str| finding[name].as_str().unwrap_or_default().to_owned();
                format!("  {} {}: {}", field("severity"), field("id"), field("finding"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(severe.is_empty(), "testssl's findings on {domain}:\n{}\n\n{said}", describe(&severe));
    eprintln!("tls: testssl's findings on {domain} that the test setup causes (see ALLOWED):\n{}", describe(&allowed));
}

fn error_pages_carry_the_security_headers(stack: &LocalStack) {
    let config = &stack.project.sandbox.stack.config;
    let client = stack.project.client(false);
    for (_, site) in stack.project.sandbox.stack.sites() {
        let base = format!("https://{}:{}", site.domain, stack.project.sandbox.https_port);
        let mut expected: Vec<(&str, &str)> = vec![
            ("strict-transport-security", config.edge.hsts.as_str()),
            ("content-security-policy", site.content_security_policy.as_str()),
        ];
        expected.extend(config.edge.security_headers.iter().map(|(name, value)| (name.as_str(), value.as_str())));
        // Beyond every site's `client_max_body_size` (the API's is the largest, 10m).
        let too_large = vec![b'x'; 11 << 20];
        let responses = [
            (
                "a 404 from the upstream (a missing asset, an unknown route)",
                client.get(format!("{base}/h1-missing-asset.js")).send(),
                404,
            ),
            ("nginx's own 404", client.get(format!("{base}/metrics")).send(), 404),
            ("nginx's own 413", client.post(format!("{base}/")).body(too_large).send(), 413),
        ];
        for (what, response, status) in responses {
            let response = response.unwrap_or_else(|error| panic!("{} {what}: {error:?}", site.domain));
            assert_eq!(response.status().as_u16(), status, "{} {what}", site.domain);
            for (name, value) in &expected {
                let sent = response.headers().get(*name).map(|sent| sent.to_str().unwrap_or_default());
                assert_eq!(sent, Some(*value), "{} {what}: `{name}`", site.domain);
            }
        }
    }
}
