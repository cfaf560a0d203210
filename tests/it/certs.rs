//! `certs issue` and `certs renew` against a private Pebble 2.4.0, with a real nginx serving the
//! rendered site (and its ACME webroot) on the port Pebble validates HTTP-01 on.
//!
//! Pebble 2.4.0 has no ARI: the ARI decision is unit-tested with a recorded `renewalInfo` answer
//! in `cli/src/certs/due.rs`; here renewal falls back to the one-third rule.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use masstock_tests::{require_tool, ChildGuard, Pebble};
use masstockctl::certs::install::served_serial;
use masstockctl::certs::lifecycle::{self, Action, Outcome, RenewOptions};
use masstockctl::certs::store;
use masstockctl::config::Stack;
use masstockctl::report::Silent;
use masstockctl::ui::Ui;

use crate::sandbox::RenderedSandbox;

/// The production stack's four domains, one SAN certificate named after the apex.
const LINEAGE: &str = "masstock.fr";

struct Setup {
    sandbox: RenderedSandbox,
    pebble: Pebble,
    _nginx: ChildGuard,
    stack: Stack,
}

impl Setup {
    /// nginx on the sandbox's ports serving the production site, a Pebble validating on its
    /// HTTP port, and the stack pointed at both.
    fn new(validity_seconds: u64, nonce_reject_percent: u8) -> Self {
        let sandbox = RenderedSandbox::new("production");
        let nginx = sandbox.start_nginx();
        let pebble = Pebble::start(sandbox.http_port, validity_seconds, nonce_reject_percent);
        let mut stack = sandbox.stack.clone();
        let root = sandbox.root().display().to_string();
        let nginx_conf = sandbox.path("nginx.conf").display().to_string();
        let nginx_bin = require_tool("nginx").display().to_string();
        stack.config.project.state_dir = sandbox.path("state");
        stack.config.acme.directory.clone_from(&pebble.directory);
        stack.config.acme.staging_directory = Some(pebble.directory.clone());
        stack.config.acme.ca_bundle = Some(pebble.ca_bundle.clone());
        stack.config.edge.test_command = vec![
            nginx_bin.clone(),
            "-t".into(),
            "-q".into(),
            "-p".into(),
            root.clone(),
            "-c".into(),
            nginx_conf.clone(),
        ];
        stack.config.edge.reload_command =
            vec![nginx_bin, "-s".into(), "reload".into(), "-p".into(), root, "-c".into(), nginx_conf];
        stack.config.edge.start_command = Vec::new();
        Self { sandbox, pebble, _nginx: nginx, stack }
    }

    fn cert_dir(&self) -> PathBuf {
        self.stack.config.acme.cert_dir.clone()
    }

    fn issue(&self) -> Outcome {
        let mut outcomes =
            lifecycle::issue(&self.stack, &Silent, &[]).unwrap_or_else(|error| panic!("{:?}", error.chain()));
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        outcomes.remove(0)
    }

    fn renew(&self, options: &RenewOptions) -> Outcome {
        let outcomes =
            lifecycle::renew(&self.stack, &Silent, options).unwrap_or_else(|error| panic!("{:?}", error.chain()));
        let mut ours: Vec<Outcome> = outcomes.into_iter().filter(|outcome| outcome.lineage == LINEAGE).collect();
        assert_eq!(ours.len(), 1, "{ours:?}");
        ours.remove(0)
    }

    fn served_serials(&self) -> Vec<String> {
        let edge = (self.stack.config.edge.upstream_host, self.sandbox.https_port).into();
        self.stack.sites().map(|(_, site)| served_serial(edge, &site.domain).expect("a TLS handshake")).collect()
    }

    fn live_version(&self) -> u32 {
        store::read_lineage(&self.cert_dir(), LINEAGE).unwrap().expect("the lineage").version
    }
}

fn quiet() -> Ui {
    Ui { json: false, verbosity: -1, progress: false }
}

fn mode(path: &Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn issues_a_four_name_certificate_then_renews_only_when_a_third_of_its_life_is_left() {
    // 20 s certificates: due after about 13 s.
    let setup = Setup::new(20, 0);
    let cert_dir = setup.cert_dir();

    let started = Instant::now();
    let issued = setup.issue();
    let took = started.elapsed();
    eprintln!("issued and installed a 4-name certificate from Pebble in {:.2}s", took.as_secs_f64());
    assert_eq!(issued.action, Action::Issued, "{issued:?}");
    assert_eq!(issued.names, ["masstock.fr", "api.masstock.fr", "app.masstock.fr", "n8n.masstock.fr"]);
    assert_eq!(issued.version, Some(1));

    // certbot's layout: archive/<name>/<kind>1.pem, relative live symlinks, a private key.
    let archive = cert_dir.join("archive").join(LINEAGE);
    for kind in ["cert", "chain", "fullchain", "privkey"] {
        assert!(archive.join(format!("{kind}1.pem")).is_file(), "{kind}1.pem");
        let link = fs_err::read_link(cert_dir.join("live").join(LINEAGE).join(format!("{kind}.pem"))).unwrap();
        assert_eq!(link, Path::new("../../archive").join(LINEAGE).join(format!("{kind}1.pem")));
    }
    assert_eq!(mode(&archive.join("privkey1.pem")), 0o600);
    let account = masstockctl::certs::acme::account_path(&cert_dir.join("accounts"), &setup.pebble.directory);
    assert_eq!(mode(&account), 0o600, "the account key is private");
    assert!(
        fs_err::read_dir(setup.stack.config.acme.webroot.join(".well-known/acme-challenge")).unwrap().next().is_none(),
        "challenge files are removed"
    );

    // The chain leads to the root Pebble issues from; every name is in the certificate.
    let root = cert_dir.join("pebble-root.pem");
    fs_err::write(&root, setup.pebble.root_pem()).unwrap();
    let verify = Command::new(require_tool("openssl"))
        .args(["verify", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(archive.join("chain1.pem"))
        .arg(archive.join("cert1.pem"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let lineage = store::read_lineage(&cert_dir, LINEAGE).unwrap().unwrap();
    let mut names = lineage.cert.names.clone();
    names.sort();
    assert_eq!(names, ["api.masstock.fr", "app.masstock.fr", "masstock.fr", "n8n.masstock.fr"]);

    // nginx serves it for every name.
    let serial = issued.serial.clone().unwrap();
    assert_eq!(setup.served_serials(), vec![serial.clone(); 4]);

    // Not due yet: nothing happens.
    let early = setup.renew(&RenewOptions::default());
    assert_eq!(early.action, Action::NotDue, "{early:?}");
    assert!(early.due.as_deref().unwrap_or("").contains("OneThird"), "{early:?}");
    assert_eq!(setup.live_version(), 1);

    // A rehearsal runs the whole flow against the staging CA (here the same Pebble) and changes
    // nothing.
    let rehearsal = setup.renew(&RenewOptions { dry_run: true, ..RenewOptions::default() });
    assert_eq!(rehearsal.action, Action::Rehearsed, "{rehearsal:?}");
    assert_eq!(setup.live_version(), 1);
    assert!(!archive.join("cert2.pem").exists(), "a dry run writes nothing to the certificate folder");
    assert_eq!(setup.served_serials(), vec![serial.clone(); 4]);

    // Once less than a third of its life is left, it is renewed.
    let due_at = lineage.cert.not_after - (lineage.cert.not_after - lineage.cert.not_before) / 3;
    let wait = (due_at - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(500);
    std::thread::sleep(wait);
    let renewed = setup.renew(&RenewOptions::default());
    assert_eq!(renewed.action, Action::Issued, "{renewed:?}");
    assert_eq!(renewed.version, Some(2));
    assert_ne!(renewed.serial.as_ref(), Some(&serial));
    assert_eq!(setup.served_serials(), vec![renewed.serial.clone().unwrap(); 4]);
    assert_eq!(setup.live_version(), 2);
}

#[test]
fn a_failed_install_goes_back_to_the_previous_version() {
    let mut setup = Setup::new(3600, 0);
    let first = setup.issue();
    assert_eq!(first.action, Action::Issued, "{first:?}");
    let serial = first.serial.unwrap();

    // nginx accepts its configuration before the order (renew checks that first, so as not to
    // spend an issuance), then refuses it with the new certificate: it must not stay live.
    let calls = setup.sandbox.path("test-command-calls");
    let script = format!(
        "n=$(cat '{calls}' 2>/dev/null || echo 0); echo $((n + 1)) > '{calls}'; \
         [ \"$n\" -eq 0 ] || {{ echo 'nginx: [emerg] broken on purpose' >&2; exit 1; }}",
        calls = calls.display()
    );
    setup.stack.config.edge.test_command = vec!["sh".into(), "-c".into(), script];
    let second = setup.renew(&RenewOptions { force: true, ..RenewOptions::default() });
    assert_eq!(second.action, Action::Failed, "{second:?}");
    let error = second.error.unwrap();
    assert!(error.contains("nginx refused the new certificate") && error.contains("broken on purpose"), "{error}");
    assert!(error.contains("back on version 1"), "{error}");
    assert_eq!(setup.live_version(), 1);
    let cert_link = fs_err::read_link(setup.cert_dir().join("live").join(LINEAGE).join("cert.pem")).unwrap();
    assert!(cert_link.ends_with("cert1.pem"), "{}", cert_link.display());
    assert_eq!(setup.served_serials(), vec![serial; 4]);
    let lineage = store::read_lineage(&setup.cert_dir(), LINEAGE).unwrap().unwrap();
    assert!(
        lineage.last_error.unwrap_or_default().contains("broken on purpose"),
        "the error is kept for `certs status`"
    );

    // An nginx that refuses its configuration already: nothing is ordered, exit status 1 through
    // the command's report.
    let outcomes =
        lifecycle::renew(&setup.stack, &Silent, &RenewOptions { force: true, ..RenewOptions::default() }).unwrap();
    let refused = outcomes.iter().find(|outcome| outcome.lineage == LINEAGE).unwrap();
    assert!(refused.error.as_deref().unwrap_or_default().contains("no certificate was ordered"), "{refused:?}");
    assert_eq!(setup.live_version(), 1);
    assert!(!setup.cert_dir().join("archive").join(LINEAGE).join("cert3.pem").exists(), "nothing was issued");
    assert_eq!(masstockctl::commands::certs::report(&quiet(), &outcomes), std::process::ExitCode::from(1));
}

#[test]
fn survives_ninety_percent_nonce_rejection_and_a_ca_that_forgot_the_account() {
    let mut setup = Setup::new(3600, 90);
    let first = setup.issue();
    assert_eq!(first.action, Action::Issued, "{first:?}");
    let account = masstockctl::certs::acme::account_path(&setup.cert_dir().join("accounts"), &setup.pebble.directory);
    let before = fs_err::read_to_string(&account).unwrap();

    // A restarted Pebble knows no account: the stored one is refused, and a new one registered.
    setup.pebble.restart();
    let second = setup.issue();
    assert_eq!(second.action, Action::Issued, "{second:?}");
    assert_eq!(second.version, Some(2));
    let after = fs_err::read_to_string(&account).unwrap();
    assert_ne!(before, after, "the account was registered again");
    assert_eq!(mode(&account), 0o600);
}

#[test]
fn the_self_check_stops_before_the_ca_validates_anything() {
    let mut setup = Setup::new(3600, 0);
    // Challenges go to a folder nginx does not serve.
    setup.stack.config.acme.webroot = setup.sandbox.path("not-served");
    let outcome = setup.issue();
    assert_eq!(outcome.action, Action::Failed, "{outcome:?}");
    let error = outcome.error.unwrap();
    assert!(error.contains("self-check of the HTTP-01 challenge"), "{error}");
    assert!(error.contains("answered 404"), "{error}");
    assert!(error.contains("the CA was not asked to validate anything"), "{error}");
    assert!(outcome.hint.unwrap_or_default().contains("/.well-known/acme-challenge/"));
}

/// A lineage certbot made, as certbot lays it out: `archive/<name>/<kind>1.pem`, relative `live/`
/// links, `renewal/<name>.conf` without our marker.
fn write_certbot_lineage(cert_dir: &Path, domains: &[String]) {
    let certificates = masstock_tests::TestCertificates::for_domains(domains);
    let archive = cert_dir.join("archive").join(LINEAGE);
    let live = cert_dir.join("live").join(LINEAGE);
    let _ = fs_err::remove_dir_all(&live);
    fs_err::create_dir_all(&archive).unwrap();
    fs_err::create_dir_all(&live).unwrap();
    let leaf = certificates.fullchain_pem.replace(&certificates.ca_pem, "");
    for (kind, pem) in [
        ("cert", leaf.as_str()),
        ("chain", certificates.ca_pem.as_str()),
        ("fullchain", certificates.fullchain_pem.as_str()),
        ("privkey", certificates.key_pem.as_str()),
    ] {
        fs_err::write(archive.join(format!("{kind}1.pem")), pem).unwrap();
        fs_err::os::unix::fs::symlink(
            Path::new("../../archive").join(LINEAGE).join(format!("{kind}1.pem")),
            live.join(format!("{kind}.pem")),
        )
        .unwrap();
    }
    fs_err::create_dir_all(cert_dir.join("renewal")).unwrap();
    let conf = format!(
        "# renew_before_expiry = 30 days\nversion = 2.1.0\narchive_dir = {archive}\ncert = {live}/cert.pem\n\
         privkey = {live}/privkey.pem\nchain = {live}/chain.pem\nfullchain = {live}/fullchain.pem\n\n\
         # Options used in the renewal process\n[renewalparams]\naccount = 0123456789abcdef\n\
         authenticator = webroot\nwebroot_path = /var/www/certbot,\nserver = https://acme-v02.api.letsencrypt.org/directory\n\
         key_type = ecdsa\n",
        archive = archive.display(),
        live = live.display(),
    );
    fs_err::write(cert_dir.join("renewal").join(format!("{LINEAGE}.conf")), conf).unwrap();
}

/// Through the binary, as an operator (or the systemd timer) runs it: a certbot lineage is
/// recognised by `certs status`, left alone by `certs renew` while it is not due, and taken over
/// by `certs renew --force`, after which certbot's own timer would leave it alone.
#[test]
fn the_commands_take_over_a_lineage_certbot_made() {
    // 30-day certificates: neither due nor within `status`'s 7-day warning.
    let mut setup = Setup::new(30 * 86_400, 0);
    let root = setup.sandbox.root().display().to_string();
    let edge = &setup.stack.config.edge;
    let quote = |command: &[String]| {
        format!("[{}]", command.iter().map(|part| format!("{part:?}")).collect::<Vec<_>>().join(", "))
    };
    let overrides = format!(
        "[project]\nstate_dir = \"{root}/state\"\n\
         [acme]\ndirectory = \"{directory}\"\nstaging_directory = \"{directory}\"\nca_bundle = \"{bundle}\"\n\
         [edge]\ntest_command = {test}\nreload_command = {reload}\nstart_command = []\n",
        directory = setup.pebble.directory,
        bundle = setup.pebble.ca_bundle.display(),
        test = quote(&edge.test_command),
        reload = quote(&edge.reload_command),
    );
    setup.sandbox.reconfigure(&[&overrides]);
    assert_eq!(setup.sandbox.stack.config.acme.directory, setup.pebble.directory);
    let cert_dir = setup.cert_dir();
    let domains: Vec<String> = setup.stack.sites().map(|(_, site)| site.domain.clone()).collect();
    write_certbot_lineage(&cert_dir, &domains);

    let masstockctl = masstock_tests::workspace_binary("masstockctl", "masstockctl");
    let run = |args: &[&str]| {
        let output = Command::new(&masstockctl)
            .arg("--config")
            .arg(setup.sandbox.path("deploy.toml"))
            .args(["--env", "e2e", "--json"])
            .args(args)
            .output()
            .expect("run masstockctl");
        let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!("`{}` printed no JSON ({error}):\n{}", args.join(" "), String::from_utf8_lossy(&output.stderr))
        });
        (output.status.code(), document)
    };

    let (status, document) = run(&["certs", "status"]);
    let ours = |document: &serde_json::Value| {
        document["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|certificate| certificate["name"] == LINEAGE)
            .cloned()
            .unwrap()
    };
    assert_eq!(status, Some(0), "{document:#}");
    assert_eq!(ours(&document)["manager"], "certbot", "{document:#}");

    let (status, document) = run(&["certs", "renew"]);
    assert_eq!(status, Some(0), "a fresh certificate is not due: {document:#}");
    assert_eq!(setup.live_version(), 1, "{document:#}");

    let (status, document) = run(&["certs", "renew", "--force"]);
    assert_eq!(status, Some(0), "{document:#}");
    assert_eq!(setup.live_version(), 2, "{document:#}");
    let lineage = store::read_lineage(&cert_dir, LINEAGE).unwrap().unwrap();
    assert_eq!(setup.served_serials(), vec![lineage.cert.serial.clone(); 4], "nginx serves the new certificate");

    let renewal = cert_dir.join("renewal");
    let conf = fs_err::read_to_string(renewal.join(format!("{LINEAGE}.conf"))).unwrap();
    assert!(store::is_ours(&conf) && conf.contains("autorenew = False"), "{conf}");
    assert!(renewal.join(format!("{LINEAGE}.conf.certbot")).is_file(), "certbot's file is kept beside ours");
    let (status, document) = run(&["certs", "status"]);
    assert_eq!(status, Some(0), "{document:#}");
    assert_eq!(ours(&document)["manager"], "masstockctl", "{document:#}");
}
