//! The rendered host nginx site passes `nginx -t`, and a real nginx serving it redirects to HTTPS,
//! sends the security headers, answers CORS preflight for the allowed origin only, and speaks
//! TLS 1.3 and 1.2 only, with Mozilla's intermediate profile, although the sandbox's main
//! nginx.conf enables TLS 1.0 and 1.1 and every cipher at the `http` level
//! ([`crate::sandbox::HOST_TLS_SETTINGS`]).
//!
//! [`tls_handshake`] is `openssl s_client` against an edge, for this file and the hardening test.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use masstock_tests::{require_tool, ChildGuard};

use crate::sandbox::RenderedSandbox;

fn nginx_test(sandbox: &RenderedSandbox) -> std::process::Output {
    let config = sandbox.write_nginx_main_config();
    Command::new(require_tool("nginx"))
        .arg("-t")
        .arg("-p")
        .arg(sandbox.root())
        .arg("-c")
        .arg(&config)
        .output()
        .expect("run nginx -t")
}

#[test]
fn rendered_site_passes_nginx_t_in_every_environment() {
    let limit_req = "[edge.limit_req]\nenabled = true";
    // Shapes that once rendered into a site nginx refused: a project name with `-`, one service
    // behind two sites on two of its ports, credentials off.
    let odd_shapes = r#"
        [project]
        name = "mass-stock"
        [services.n8n]
        ports = [{ host = 15678, container = 5678 }, { host = 15679, container = 5679 }]
        [sites.hooks]
        domain = "hooks.masstock.fr"
        service = "n8n"
        port = 5679
        content_security_policy = "default-src 'none'"
        [cors]
        credentials = false
        origins = ["https://app.masstock.fr", "https://admin.masstock.fr:8443"]
    "#;
    for (base, extra) in
        [("production", ""), ("local", ""), ("production", limit_req), ("local", limit_req), ("production", odd_shapes)]
    {
        let sandbox = RenderedSandbox::with_overrides(base, extra);
        let output = nginx_test(&sandbox);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "nginx -t failed for `{base}` {extra}:\n{stderr}");
        assert!(stderr.contains("syntax is ok") && stderr.contains("test is successful"), "{stderr}");
        assert!(!stderr.contains("[warn]"), "nginx warns about the `{base}` site:\n{stderr}");
    }
}

/// A stand-in for the API behind nginx: answers every request with CORS headers of its own.
struct Backend {
    hits: Arc<AtomicUsize>,
    last_request: Arc<Mutex<String>>,
}

fn start_backend(port: u16) -> Backend {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the backend port");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let last_request = Arc::new(Mutex::new(String::new()));
    let recorded = Arc::clone(&last_request);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            *recorded.lock().unwrap() = masstock_tests::read_request_head(&mut stream);
            let body = r#"{"status":"ok"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Access-Control-Allow-Origin: https://app.masstock.fr\r\nAccess-Control-Allow-Credentials: true\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Backend { hits, last_request }
}

/// nginx serving the sandbox's rendered site, and a client that trusts its test CA and resolves
/// every domain of the stack to it.
fn start_nginx(sandbox: &RenderedSandbox) -> (ChildGuard, reqwest::blocking::Client) {
    let nginx = sandbox.start_nginx();
    let https: SocketAddr = ([127, 0, 0, 1], sandbox.https_port).into();
    let mut builder = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(sandbox.certificates.ca_pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10));
    for (_, site) in sandbox.stack.sites() {
        builder = builder.resolve(&site.domain, https);
    }
    (nginx, builder.build().unwrap())
}

#[test]
fn nginx_serves_the_rendered_site() {
    let sandbox = RenderedSandbox::new("production");
    let backend = start_backend(sandbox.api_port);
    let hits = &backend.hits;
    let (_nginx, client) = start_nginx(&sandbox);
    let http = |domain: &str| format!("http://{domain}:{}", sandbox.http_port);
    let https_url = |domain: &str| format!("https://{domain}:{}", sandbox.https_port);

    // Port 80 redirects to HTTPS, keeping the path and query.
    let redirect = client.get(format!("{}/login?next=%2Fx", http("app.masstock.fr"))).send().unwrap();
    assert_eq!(redirect.status(), 301);
    assert_eq!(redirect.headers()["location"], format!("{}/login?next=%2Fx", https_url("app.masstock.fr")).as_str());

    // ACME challenges are served over plain HTTP from the webroot.
    fs_err::write(sandbox.path("webroot/.well-known/acme-challenge/token-e2e"), "token-e2e.thumbprint").unwrap();
    let challenge = client.get(format!("{}/.well-known/acme-challenge/token-e2e", http("masstock.fr"))).send().unwrap();
    assert_eq!(challenge.status(), 200);
    assert_eq!(challenge.text().unwrap(), "token-e2e.thumbprint");

    // HTTPS to the API: proxied, the backend's CORS headers pass through, security headers added.
    let response = client
        .get(format!("{}/health", https_url("api.masstock.fr")))
        .header("Origin", "https://app.masstock.fr")
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(response.text().unwrap(), r#"{"status":"ok"}"#);
    assert_eq!(headers["strict-transport-security"], "max-age=31536000; includeSubDomains");
    assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
    assert_eq!(headers["access-control-allow-origin"], "https://app.masstock.fr");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    // A forged X-Forwarded-For is replaced by the real peer address; no version is disclosed.
    let request = backend.last_request.lock().unwrap().to_ascii_lowercase();
    assert!(request.contains("x-forwarded-for: 127.0.0.1\r\n"), "{request}");
    assert!(!request.contains("203.0.113.9"), "{request}");
    assert!(
        request.contains("x-forwarded-proto: https\r\n") && request.contains("x-real-ip: 127.0.0.1\r\n"),
        "{request}"
    );
    assert!(request.contains("host: api.masstock.fr"), "{request}");
    assert_eq!(headers["server"], "nginx");
    let backend_hits = hits.load(Ordering::SeqCst);
    assert_eq!(backend_hits, 1);

    // Preflight from the allowed origin: 204 at nginx, the reference's headers, backend untouched.
    let preflight = |origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{}/api/v1/auth/login", https_url("api.masstock.fr")))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
            .unwrap()
    };
    let allowed = preflight("https://app.masstock.fr");
    assert_eq!(allowed.status(), 204);
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://app.masstock.fr");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-allow-methods"], "GET, POST, PUT, DELETE, PATCH, OPTIONS");
    assert_eq!(headers["access-control-allow-headers"], "Content-Type, Authorization, X-Requested-With");
    assert_eq!(headers["access-control-max-age"], "86400");
    assert_eq!(headers["x-frame-options"], "SAMEORIGIN", "security headers on the preflight too");

    // Any other origin: still 204, but not a single Access-Control-* header.
    let refused = preflight("https://evil.example");
    assert_eq!(refused.status(), 204);
    let leaked: Vec<_> = refused.headers().keys().filter(|name| name.as_str().starts_with("access-control-")).collect();
    assert!(leaked.is_empty(), "headers for a foreign origin: {leaked:?}");
    assert_eq!(hits.load(Ordering::SeqCst), backend_hits, "preflight never reaches the backend");

    // The landing page and the app get their own Content-Security-Policy, even on a 502.
    let landing = client.get(format!("{}/", https_url("masstock.fr"))).send().unwrap();
    assert!(landing.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'"));
    assert_eq!(landing.headers()["referrer-policy"], "no-referrer-when-downgrade");
}

#[test]
fn limit_req_answers_429_beyond_the_burst() {
    let sandbox =
        RenderedSandbox::with_overrides("production", "[edge.limit_req]\nenabled = true\nrate = \"1/60s\"\nburst = 2");
    start_backend(sandbox.api_port);
    let (_nginx, client) = start_nginx(&sandbox);
    let url = format!("https://api.masstock.fr:{}/health", sandbox.https_port);
    let statuses: Vec<u16> = (0..5).map(|_| client.get(&url).send().unwrap().status().as_u16()).collect();
    // One request at the rate, two more from the burst, then the limit.
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // The limit covers the API only: the app is not limited.
    let app = format!("https://app.masstock.fr:{}/", sandbox.https_port);
    assert_ne!(client.get(&app).send().unwrap().status().as_u16(), 429);
}

#[test]
fn names_the_site_does_not_serve_get_no_tls_answer() {
    let sandbox = RenderedSandbox::new("production");
    start_backend(sandbox.api_port);
    let (_nginx, _client) = start_nginx(&sandbox);
    let https: SocketAddr = ([127, 0, 0, 1], sandbox.https_port).into();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(sandbox.certificates.ca_pem.as_bytes()).unwrap())
        .resolve("unknown.example", https)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let error = client
        .get(format!("https://unknown.example:{}/", sandbox.https_port))
        .send()
        .expect_err("an unknown name must not be served");
    assert!(error.is_connect(), "the TLS handshake is refused: {error:?}");
}

/// What `openssl s_client -brief` got from one handshake.
pub(crate) struct Handshake {
    /// The protocol negotiated (`TLSv1.3`), when the handshake succeeded and the certificate
    /// verified against the CA for the name.
    pub(crate) protocol: Option<String>,
    pub(crate) cipher: Option<String>,
    /// What `s_client` said, for assertion messages.
    pub(crate) output: String,
}

/// `openssl s_client` to 127.0.0.1:`port`, with `servername` as SNI (none when `None`), the
/// certificate verified against `ca_file` for that name, and `options`. The client allows every
/// cipher (security level 0) unless `options` name theirs, so that a refusal is the server's.
pub(crate) fn s_client(port: u16, servername: Option<&str>, ca_file: &Path, options: &[&str]) -> (bool, String) {
    let mut command = Command::new(require_tool("openssl"));
    command.args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-CAfile"]).arg(ca_file);
    match servername {
        Some(name) => command.args(["-servername", name, "-verify_hostname", name, "-verify_return_error"]),
        None => command.arg("-noservername"),
    };
    if !options.contains(&"-cipher") {
        command.args(["-cipher", "DEFAULT:@SECLEVEL=0"]);
    }
    let output = command.args(options).stdin(Stdio::null()).output().expect("run openssl s_client");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// One TLS handshake (`openssl s_client -brief`, see [`s_client`]) with `options` such as
/// `-tls1_3`.
pub(crate) fn tls_handshake(port: u16, servername: Option<&str>, ca_file: &Path, options: &[&str]) -> Handshake {
    let (success, output) = s_client(port, servername, ca_file, &[&["-brief"], options].concat());
    let field = |name: &str| {
        output.lines().find_map(|line| line.strip_prefix(name)).map(|value| value.trim().to_owned()).filter(|_| success)
    };
    Handshake { protocol: field("Protocol version:"), cipher: field("Ciphersuite:"), output }
}

/// `domain` at `port` agrees on TLS 1.3 and on TLS 1.2, and on neither TLS 1.1 nor 1.0.
pub(crate) fn assert_tls_1_3_and_1_2_only(port: u16, domain: &str, ca_file: &Path) {
    for (option, protocol) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let handshake = tls_handshake(port, Some(domain), ca_file, &[option]);
        assert_eq!(handshake.protocol.as_deref(), Some(protocol), "{domain} {option}:\n{}", handshake.output);
    }
    for option in ["-tls1_1", "-tls1"] {
        let handshake = tls_handshake(port, Some(domain), ca_file, &[option]);
        assert_eq!(handshake.protocol, None, "{domain} {option} is refused:\n{}", handshake.output);
    }
}

/// Whether a TLS 1.2 handshake gets a session ticket (part of the handshake in TLS 1.2); what
/// `s_client` said.
fn tls12_session_ticket(port: u16, servername: &str, ca_file: &Path) -> (bool, String) {
    let (success, output) = s_client(port, Some(servername), ca_file, &["-tls1_2"]);
    assert!(success, "a TLS 1.2 handshake with {servername}:\n{output}");
    (output.contains("TLS session ticket lifetime hint"), output)
}

#[test]
fn every_site_speaks_tls_1_3_and_1_2_only_whatever_the_host_config_says() {
    let sandbox = RenderedSandbox::new("production");
    start_backend(sandbox.api_port);
    let _nginx = sandbox.start_nginx();
    let ca_file = sandbox.path("ca.pem");
    fs_err::write(&ca_file, &sandbox.certificates.ca_pem).unwrap();
    let port = sandbox.https_port;
    for (_, site) in sandbox.stack.sites() {
        let name = Some(site.domain.as_str());
        // The host's main config allows TLS 1.0 and 1.1; the site does not.
        assert_tls_1_3_and_1_2_only(port, &site.domain, &ca_file);
        // TLS 1.2: ECDHE with an AEAD, never a CBC suite (which the host allows), no ticket
        // (which the host turns on), and the client's choice among the allowed suites.
        let cbc = tls_handshake(port, name, &ca_file, &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"]);
        assert_eq!(cbc.protocol, None, "{} offers a CBC suite:\n{}", site.domain, cbc.output);
        let (ticket, output) = tls12_session_ticket(port, &site.domain, &ca_file);
        assert!(!ticket, "{} sends a session ticket:\n{output}", site.domain);
        // Key exchange on Mozilla's curves only: X25519 first, secp521r1 (nginx's `auto` has it) refused.
        let handshake = tls_handshake(port, name, &ca_file, &["-tls1_3"]);
        assert!(handshake.output.contains("Server Temp Key: X25519"), "{}", handshake.output);
        let handshake = tls_handshake(port, name, &ca_file, &["-tls1_3", "-groups", "secp521r1"]);
        assert_eq!(handshake.protocol, None, "{} agrees on secp521r1:\n{}", site.domain, handshake.output);
        let chacha = "ECDHE-ECDSA-CHACHA20-POLY1305";
        let handshake = tls_handshake(
            port,
            name,
            &ca_file,
            &["-tls1_2", "-cipher", &format!("{chacha}:ECDHE-ECDSA-AES256-GCM-SHA384")],
        );
        assert_eq!(
            handshake.cipher.as_deref(),
            Some(chacha),
            "a client that puts ChaCha20 first gets it:\n{}",
            handshake.output
        );
        // Otherwise the server's order (AES-128-GCM first) decides, as testssl wants one.
        let handshake = tls_handshake(
            port,
            name,
            &ca_file,
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"],
        );
        assert_eq!(
            handshake.cipher.as_deref(),
            Some("ECDHE-ECDSA-AES128-GCM-SHA256"),
            "the server's order wins:\n{}",
            handshake.output
        );
    }
    // A name no site serves, or none at all, gets no handshake in any protocol.
    for name in [Some("unknown.example"), None] {
        for option in ["-tls1_3", "-tls1_2", "-tls1"] {
            let handshake = tls_handshake(port, name, &ca_file, &[option]);
            assert_eq!(handshake.protocol, None, "{name:?} {option} is refused:\n{}", handshake.output);
        }
    }
}
