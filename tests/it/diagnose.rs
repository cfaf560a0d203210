//! `masstockctl ports` and `cors test` against faults the tests cause for real: a port this test
//! process holds (and a port declared twice, which deploy.toml refuses), a real nginx rendered from deploy.toml in front of a
//! stand-in API, and a deploy.toml whose `[cors] origins` no longer matches what nginx serves.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use masstock_tests::{free_port, workspace_binary};
use serde_json::Value;

use crate::sandbox::RenderedSandbox;

/// The origin the shipped deploy.toml allows in production, and the stand-in API with it.
const APP_ORIGIN: &str = "https://app.masstock.fr";

/// Runs the current masstockctl on the sandbox's deploy.toml, environment `e2e`.
fn masstockctl(sandbox: &RenderedSandbox, args: &[&str]) -> Output {
    let config = sandbox.path("deploy.toml");
    Command::new(workspace_binary("masstockctl", "masstockctl"))
        .arg("--config")
        .arg(&config)
        .args(["--env", "e2e"])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run masstockctl")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("not JSON ({error}):\n{}", text(output)))
}

/// Every port of the production stack moved to a free one, and a project name of the test's
/// own, so that nothing else on this machine holds them or shares the containers' names.
fn sandbox_with_free_ports() -> RenderedSandbox {
    let project = format!("mst-diag-{}", std::process::id());
    let extra = format!(
        r#"
        [project]
        name = "{project}"
        [services.vitrine]
        ports = [{{ host = {}, container = 80 }}]
        [services.app]
        ports = [{{ host = {}, container = 80 }}]
        [services.n8n]
        ports = [{{ host = {}, container = 5678 }}]
        "#,
        free_port(),
        free_port(),
        free_port()
    );
    RenderedSandbox::with_overrides("production", &extra)
}

fn own_command_name() -> String {
    fs_err::read_to_string("/proc/self/comm").expect("/proc/self/comm").trim().to_owned()
}

#[test]
fn ports_names_the_process_that_holds_a_declared_port() {
    let sandbox = sandbox_with_free_ports();
    let squatter = TcpListener::bind(("127.0.0.1", sandbox.api_port)).expect("hold the API's port");
    let (pid, name) = (std::process::id(), own_command_name());
    let project = sandbox.stack.config.project.name.clone();

    let output = masstockctl(&sandbox, &["ports"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "port {} is taken by `{name}` (pid {pid}), so {project}_api cannot start: stop it or change `[services.api] \
         ports`",
        sandbox.api_port
    );
    assert!(stderr.contains(&expected), "{}", text(&output));

    let output = masstockctl(&sandbox, &["ports", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let document = json(&output);
    let rows = document["ports"].as_array().expect("ports");
    // vitrine, app, api, n8n, and the edge's two.
    assert_eq!(rows.len(), 6, "{document:#}");
    let api = rows.iter().find(|row| row["port"] == sandbox.api_port).expect("the API's row");
    assert_eq!(api["declared_by"], "[services.api] ports");
    assert_eq!(api["container_port"], 3000);
    assert_eq!(api["address"], "127.0.0.1");
    assert_eq!(api["bound"], true);
    assert_eq!(api["owner"]["kind"], "process");
    assert_eq!(api["owner"]["pid"], pid);
    assert_eq!(api["owner"]["name"], name.as_str());
    assert_eq!(api["expected"], format!("{project}_api"));
    assert_eq!(api["conflict"], expected.as_str());
    for row in rows.iter().filter(|row| row["port"] != sandbox.api_port) {
        assert_eq!(row["bound"], false, "{row}");
        assert_eq!(row["owner"]["kind"], "none", "{row}");
        assert!(row["conflict"].is_null(), "{row}");
    }
    let https = rows.iter().find(|row| row["declared_by"] == "[edge] https_port").expect("the edge's row");
    assert_eq!(https["port"], sandbox.https_port);
    assert_eq!(https["expected"], "nginx");
    assert!(https["container_port"].is_null());

    // The port freed, nothing is in the way.
    drop(squatter);
    let output = masstockctl(&sandbox, &["ports"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    // Two services on one host port: deploy.toml is refused, pointing at the second one.
    let path = sandbox.path("deploy.toml");
    let mut document: toml::Table = toml::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
    let app = &mut document["environments"]["e2e"]["services"]["app"];
    let mut port = toml::Table::new();
    port.insert("host".to_owned(), i64::from(sandbox.api_port).into());
    port.insert("container".to_owned(), 80.into());
    app["ports"] = toml::Value::Array(vec![port.into()]);
    fs_err::write(&path, toml::to_string(&document).unwrap()).unwrap();
    let output = masstockctl(&sandbox, &["ports"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("host port {} is used by service", sandbox.api_port)),
        "{}",
        text(&output)
    );
}

#[test]
fn ports_accepts_nginx_on_the_edge_ports() {
    let sandbox = sandbox_with_free_ports();
    let _nginx = sandbox.start_nginx();
    let output = masstockctl(&sandbox, &["ports", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let document = json(&output);
    for key in ["[edge] http_port", "[edge] https_port"] {
        let row = document["ports"].as_array().unwrap().iter().find(|row| row["declared_by"] == key).unwrap();
        assert_eq!(row["bound"], true, "{row}");
        assert_eq!(row["owner"]["kind"], "process", "{row}");
        assert_eq!(row["owner"]["name"], "nginx", "{row}");
        assert!(row["conflict"].is_null(), "{row}");
    }
}

/// A stand-in for the API behind nginx, answering as `services/api`'s CORS layer does: 401 to a
/// request without credentials, `Vary: Origin`, and the origin echoed with credentials when it is
/// one of `allowed`.
fn start_api_stand_in(port: u16, allowed: &'static [&'static str]) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the API's port");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let request = masstock_tests::read_request_head(&mut stream);
            let origin = request
                .lines()
                .find_map(|line| line.strip_prefix("Origin: ").or_else(|| line.strip_prefix("origin: ")))
                .map(str::trim)
                .filter(|origin| allowed.contains(origin));
            let cors = origin
                .map(|origin| {
                    format!("Access-Control-Allow-Origin: {origin}\r\nAccess-Control-Allow-Credentials: true\r\n")
                })
                .unwrap_or_default();
            let body = r#"{"error":"unauthorized","message":"Authentication required"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nVary: Origin\r\n\
                 {cors}Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

/// The sandbox's nginx, in front of the stand-in API, with deploy.toml trusting the test CA.
fn cors_sandbox() -> RenderedSandbox {
    let mut sandbox = sandbox_with_free_ports();
    let ca = sandbox.path("test-ca.pem");
    fs_err::write(&ca, &sandbox.certificates.ca_pem).unwrap();
    sandbox.reconfigure(&[&trusting(&sandbox.stack.config.project.name, &ca)]);
    start_api_stand_in(sandbox.api_port, &[APP_ORIGIN]);
    sandbox
}

fn trusting(project: &str, ca: &Path) -> String {
    format!("[project]\nname = \"{project}\"\n[edge]\nca_bundle = \"{}\"", ca.display())
}

#[test]
fn cors_test_passes_for_the_allowed_origin_and_sees_a_foreign_one_refused() {
    let sandbox = cors_sandbox();
    let _nginx = sandbox.start_nginx();

    let output = masstockctl(&sandbox, &["cors", "test"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("preflight OPTIONS → 204"), "{stdout}");
    assert!(stdout.contains("request   GET → 401"), "{stdout}");
    assert!(stdout.contains(&format!("Access-Control-Allow-Origin: {APP_ORIGIN}")), "{stdout}");
    assert!(stdout.contains(&format!("ok: `{APP_ORIGIN}` is allowed, as deploy.toml wants")), "{stdout}");

    let output = masstockctl(&sandbox, &["cors", "test", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let report = json(&output);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["origin"], APP_ORIGIN);
    assert_eq!(report["url"], format!("https://api.masstock.fr:{}/api/v1/workflows", sandbox.https_port));
    assert_eq!(report["preflight"]["status"], 204);
    let preflight = &report["preflight"]["headers"];
    assert_eq!(preflight["access-control-allow-origin"], APP_ORIGIN);
    assert_eq!(preflight["access-control-allow-credentials"], "true");
    assert_eq!(preflight["access-control-allow-methods"], "GET, POST, PUT, DELETE, PATCH, OPTIONS");
    assert_eq!(preflight["access-control-allow-headers"], "Content-Type, Authorization, X-Requested-With");
    assert_eq!(preflight["vary"], "Origin");
    assert_eq!(report["request"]["status"], 401);
    assert_eq!(report["request"]["headers"]["access-control-allow-origin"], APP_ORIGIN);
    // No container of this project exists: nothing to compare, and no failure for it.
    assert!(report["container_cors_origin"].is_null());
    assert_eq!(report["reasons"], serde_json::json!([]));

    let output = masstockctl(&sandbox, &["cors", "test", "--origin", "https://evil.example", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let report = json(&output);
    assert_eq!(report["verdict"], "ok: `https://evil.example` is refused, as deploy.toml wants", "{report:#}");
    assert_eq!(report["preflight"]["status"], 204);
    assert!(report["preflight"]["headers"]["access-control-allow-origin"].is_null(), "{report:#}");
    assert!(report["request"]["headers"]["access-control-allow-origin"].is_null(), "{report:#}");
}

#[test]
fn cors_test_fails_when_deploy_toml_allows_an_origin_the_edge_was_not_rendered_with() {
    let mut sandbox = cors_sandbox();
    let _nginx = sandbox.start_nginx();
    // deploy.toml now names another origin; nginx and the API still run with the old one.
    let moved = "https://app.masstock.fr:9443";
    let ca = sandbox.path("test-ca.pem");
    let project = sandbox.stack.config.project.name.clone();
    sandbox.reconfigure(&[&trusting(&project, &ca), &format!("[cors]\norigins = [\"{moved}\"]")]);

    let output = masstockctl(&sandbox, &["cors", "test"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let all = text(&output);
    assert!(
        all.contains(&format!("broken: `{moved}` is listed in `[cors] origins`, but a browser would not get through")),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "the preflight carries no `Access-Control-Allow-Origin` for `{moved}`: the edge does not follow \
             deploy.toml's `[cors]` (`masstockctl deploy` renders nginx's site again)"
        )),
        "{all}"
    );
    assert!(all.contains("the request's answer carries no `Access-Control-Allow-Origin`"), "{all}");

    // The origin nginx still allows is now a foreign one that gets through: also a failure.
    let output = masstockctl(&sandbox, &["cors", "test", "--origin", APP_ORIGIN, "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report = json(&output);
    assert_eq!(report["ok"], false);
    let reasons = report["reasons"].to_string();
    assert!(reasons.contains("which `[cors] origins` does not list"), "{report:#}");
}
