//! `certs status` on a certificate folder of the test's making, and `certs install-timer`.

use std::path::Path;

use masstockctl::certs::store::{write_version, NewVersion, RenewalConf};
use serde_json::Value;

use crate::support::Sandbox;

/// The shipped deploy.toml with the certificates (and systemd units) in the sandbox.
fn sandbox() -> Sandbox {
    Sandbox::edited("cert_dir = \"/etc/letsencrypt\"\n", "cert_dir = \"letsencrypt\"\nsystemd_dir = \"units\"\n")
}

const PRODUCTION_DOMAINS: [&str; 4] = ["masstock.fr", "app.masstock.fr", "api.masstock.fr", "n8n.masstock.fr"];

/// Stores a certificate for `names` under `name`, valid from `from_hours` to `to_hours` from now.
fn store(cert_dir: &Path, name: &str, names: &[&str], from_hours: i64, to_hours: i64) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Pebble Intermediate CA 5e7a1b");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf =
        rcgen::CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>()).unwrap();
    leaf.serial_number = Some(rcgen::SerialNumber::from(0x0123_4567_89ab_u64));
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now + time::Duration::hours(from_hours);
    leaf.not_after = now + time::Duration::hours(to_hours);
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    let (privkey, cert, chain) = (key.serialize_pem(), leaf.pem(), ca.pem());
    let fullchain = format!("{cert}{chain}");
    let new = NewVersion { privkey_pem: &privkey, cert_pem: &cert, chain_pem: &chain, fullchain_pem: &fullchain };
    let conf = RenewalConf {
        server: "https://acme-v02.api.letsencrypt.org/directory".into(),
        webroot: "/var/www/certbot".into(),
        names: names.iter().map(|name| (*name).to_owned()).collect(),
        key_type: "ecdsa".into(),
    };
    write_version(cert_dir, name, &new, &conf).unwrap();
}

fn certificates(stdout: &str) -> Vec<Value> {
    let document: Value = serde_json::from_str(stdout).expect("one JSON document");
    document["certificates"].as_array().expect("certificates").clone()
}

#[test]
fn a_valid_certificate_exits_0() {
    let sandbox = sandbox();
    let cert_dir = sandbox.path("letsencrypt");
    store(&cert_dir, "masstock.fr", &PRODUCTION_DOMAINS, -24 * 10, 24 * 80);

    let run = sandbox.run(&["certs", "status"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    assert!(run.stdout.starts_with("masstock.fr  ok\n"), "{}", run.stdout);
    assert!(run.stdout.contains("  names       masstock.fr, app.masstock.fr, api.masstock.fr, n8n.masstock.fr\n"));
    assert!(run.stdout.contains("  serial      123456789ab\n"), "{}", run.stdout);
    assert!(run.stdout.contains("(one-third; `certs renew` also asks the CA's ARI window)"), "{}", run.stdout);
    assert!(run.stdout.contains("  managed by  masstockctl\n  last error  none\n"), "{}", run.stdout);

    let run = sandbox.run(&["--json", "certs", "status"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    let certificates = certificates(&run.stdout);
    assert_eq!(certificates.len(), 1);
    let certificate = &certificates[0];
    assert_eq!(certificate["name"], "masstock.fr");
    assert_eq!(certificate["status"], "ok");
    assert_eq!(certificate["rule"], "one-third");
    assert_eq!(certificate["manager"], "masstockctl");
    assert_eq!(certificate["issuer"], "CN=Pebble Intermediate CA 5e7a1b");
    assert_eq!(certificate["days_left"], 79);
    assert_eq!(certificate["last_error"], Value::Null);
    assert_eq!(certificate["names"].as_array().unwrap().len(), 4);
    // A third of 90 days before expiry: 50 days from now.
    let due: chrono::DateTime<chrono::Utc> = certificate["renewal_due_at"].as_str().unwrap().parse().unwrap();
    assert_eq!((due - chrono::Utc::now()).num_days(), 49, "{due}");
}

#[test]
fn expiring_expired_and_missing_certificates_exit_1() {
    // One certificate per domain, so that each domain's lineage can stand differently.
    let sandbox = Sandbox::edited_many(&[
        ("cert_dir = \"/etc/letsencrypt\"\n", "cert_dir = \"letsencrypt\"\n"),
        ("certificates = \"san\"\n", "certificates = \"per-domain\"\n"),
    ]);
    let cert_dir = sandbox.path("letsencrypt");
    store(&cert_dir, "masstock.fr", &["masstock.fr"], -24 * 87, 24 * 3);
    store(&cert_dir, "app.masstock.fr", &["app.masstock.fr"], -24 * 91, -24);
    store(&cert_dir, "api.masstock.fr", &["api.masstock.fr"], -24, 24 * 89);
    masstockctl::certs::store::record_error(
        &cert_dir,
        "masstock.fr",
        Some("`nginx -t` failed: the old certificate is back"),
    )
    .unwrap();

    let run = sandbox.run(&["--json", "certs", "status"]);
    assert_eq!(run.status, 1, "{}", run.transcript());
    let certificates = certificates(&run.stdout);
    let by_name = |name: &str| certificates.iter().find(|row| row["name"] == name).unwrap_or_else(|| panic!("{name}"));
    let expiring = by_name("masstock.fr");
    assert_eq!((expiring["status"].as_str(), expiring["days_left"].as_i64()), (Some("expiring"), Some(2)));
    assert_eq!(expiring["last_error"], "`nginx -t` failed: the old certificate is back");
    let expired = by_name("app.masstock.fr");
    assert_eq!((expired["status"].as_str(), expired["rule"].as_str()), (Some("expired"), Some("expired")));
    assert_eq!(by_name("api.masstock.fr")["status"], "ok");
    let missing = by_name("n8n.masstock.fr");
    assert_eq!((missing["status"].as_str(), missing["serial"].as_str()), (Some("missing"), None));
    assert!(run.stderr.contains("3 certificate problems: "), "{}", run.stderr);
    for problem in ["`masstock.fr` expiring", "`app.masstock.fr` expired", "`n8n.masstock.fr` missing"] {
        assert!(run.stderr.contains(problem), "{}", run.stderr);
    }

    let run = sandbox.run(&["certs", "status"]);
    assert_eq!(run.status, 1, "{}", run.transcript());
    assert!(
        run.stdout.contains("n8n.masstock.fr  missing\n  expected    [SANDBOX]/letsencrypt/live/n8n.masstock.fr/\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("app.masstock.fr  expired\n"), "{}", run.stdout);
    assert!(run.stdout.contains("  renewal     now: expired\n"), "{}", run.stdout);
    assert!(run.stdout.contains("(`nginx -t` failed: the old certificate is back)"), "{}", run.stdout);
    assert!(run.stderr.contains("hint: `masstockctl certs issue`"), "{}", run.stderr);
}

#[test]
fn install_timer_prints_its_units() {
    let sandbox = sandbox();
    let run = sandbox.run(&["certs", "install-timer", "--print"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    let transcript = run.transcript().replace(env!("CARGO_BIN_EXE_masstockctl"), "[MASSTOCKCTL]");
    insta::assert_snapshot!(transcript);
}

#[test]
fn install_timer_writes_the_units_and_says_systemctl_is_missing() {
    let sandbox = sandbox();
    let empty_path = sandbox.path("no-tools");
    fs_err::create_dir(&empty_path).unwrap();
    let run = sandbox.run_with_env(
        &["--env", "local", "certs", "install-timer"],
        &[("NO_COLOR", "1"), ("PATH", empty_path.to_str().unwrap())],
    );
    assert_eq!(run.status, 1, "{}", run.transcript());
    assert!(run.stderr.contains("`systemctl` was not found: this host does not run systemd"), "{}", run.stderr);
    // The local environment's own `acme.systemd_dir`.
    let service = fs_err::read_to_string(sandbox.path(".masstock/local/systemd/masstock-certs.service")).unwrap();
    let exec_start = format!(
        "ExecStart={} --config {} --env local certs renew\n",
        env!("CARGO_BIN_EXE_masstockctl"),
        sandbox.path("deploy.toml").display()
    );
    assert!(service.contains(&exec_start), "{service}");
    let timer = fs_err::read_to_string(sandbox.path(".masstock/local/systemd/masstock-certs.timer")).unwrap();
    assert!(timer.contains("OnCalendar=*-*-* 00,12:00:00\nRandomizedDelaySec=1h\nPersistent=true\n"), "{timer}");
}

/// `--no-enable` writes the units and never asks systemctl: it succeeds where there is none.
#[test]
fn install_timer_no_enable_writes_the_units_only() {
    let sandbox = sandbox();
    let empty_path = sandbox.path("no-tools");
    fs_err::create_dir(&empty_path).unwrap();
    let run = sandbox.run_with_env(
        &["certs", "install-timer", "--no-enable"],
        &[("NO_COLOR", "1"), ("PATH", empty_path.to_str().unwrap())],
    );
    assert_eq!(run.status, 0, "{}", run.transcript());
    assert!(run.stdout.contains("is written, not enabled"), "{}", run.transcript());
    for unit in ["masstock-certs.service", "masstock-certs.timer"] {
        assert!(sandbox.path(&format!("units/{unit}")).is_file(), "`{unit}` is written to `acme.systemd_dir`");
    }
}

/// A systemctl that cannot work (systemd is not PID 1, as in a container): the units are still
/// written, and the failure quotes systemctl and points at `--no-enable`.
#[test]
fn install_timer_says_what_to_do_when_systemctl_fails() {
    use std::os::unix::fs::PermissionsExt as _;

    let sandbox = sandbox();
    let tools = sandbox.path("tools");
    fs_err::create_dir(&tools).unwrap();
    let systemctl = tools.join("systemctl");
    fs_err::write(
        &systemctl,
        "#!/bin/sh\necho \"System has not been booted with systemd as init system (PID 1). Can't operate.\" >&2\nexit 1\n",
    )
    .unwrap();
    fs_err::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = sandbox.run_with_env(
        &["certs", "install-timer"],
        &[("NO_COLOR", "1"), ("PATH", &format!("{}:/usr/bin:/bin", tools.display()))],
    );
    assert_eq!(run.status, 1, "{}", run.transcript());
    assert!(run.stderr.contains("`systemctl daemon-reload` failed"), "{}", run.stderr);
    assert!(run.stderr.contains("has not been booted with systemd"), "systemctl's own words: {}", run.stderr);
    assert!(run.stderr.contains("--no-enable"), "the way out: {}", run.stderr);
    assert!(sandbox.path("units/masstock-certs.timer").is_file(), "the units are written first");
}
