//! Support for end-to-end tests against the real tools: free ports, processes that are stopped
//! even when a test fails, test certificates, and deploy.toml variants pointing into a sandbox.
//!
//! `ChildGuard` stops a process even when a test panics, `free_port` finds a port, `require_tool`
//! fails with "run `script/bootstrap`", `TestCertificates` is an rcgen CA with a leaf, and
//! `config_with_environment` builds the shipped deploy.toml plus an `e2e` environment that points
//! into a temporary folder. `webdriver` is a small client of the W3C `WebDriver` protocol (reqwest,
//! JSON) for Debian's `chromedriver` and headless `chromium`. `workspace_binary`
//! builds masstockctl and fake-gemini with the running cargo, since `CARGO_BIN_EXE_*` only names a
//! package's own binaries.

pub mod webdriver;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The workspace's root folder.
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// The path of a tool the test needs; fails with how to get it when it is missing.
#[must_use]
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|folder| folder.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed: run `script/bootstrap` (it installs and starts what the tests need)")
        })
}

/// A TCP port nobody uses right now, below the kernel's ephemeral range (32768–60999): a port the
/// kernel hands out may be taken by any outgoing connection before the test binds it (a deploy
/// once failed so: "address already in use" on a port this function had just returned). Each
/// call in a process gets another port; processes start at different places.
#[must_use]
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let seed = std::process::id().wrapping_mul(7_919)
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.subsec_nanos());
    let _ = NEXT.compare_exchange(u32::MAX, seed % COUNT, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..COUNT {
        let port = u16::try_from(FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT).expect("a port number");
        let bindable = |address: [u8; 4]| TcpListener::bind(SocketAddr::from((address, port))).is_ok();
        if bindable([127, 0, 0, 1]) && bindable([0, 0, 0, 0]) {
            return port;
        }
    }
    panic!("no free TCP port between {FIRST} and {}", FIRST + COUNT)
}

/// The request line and headers a client sent on `stream` (up to the blank line), for test
/// servers that answer by hand.
pub fn read_request_head(stream: &mut impl std::io::Read) -> String {
    let mut request = Vec::new();
    let mut buffer = [0; 1024];
    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => request.extend_from_slice(&buffer[..read]),
        }
    }
    String::from_utf8_lossy(&request).into_owned()
}

/// Waits until something accepts connections on `address`.
pub fn wait_for_port(address: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {address} after {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process stopped and reaped when dropped, so a failing test leaves nothing running.
///
/// It is asked to stop with SIGTERM first: a daemon such as nginx then stops its own workers,
/// which a SIGKILL of the master would leave orphaned. SIGKILL follows after five seconds.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        let terminated = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        if terminated.is_ok_and(|status| status.success()) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(self.0.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shipped deploy.toml plus an environment `e2e`: the environment `base` with each of
/// `overrides` (TOML documents) merged over it in turn, so tests run the real configuration with
/// sandboxed paths and ports.
#[must_use]
pub fn config_with_environment(base: &str, overrides: &[&str]) -> String {
    let shipped = fs_err::read_to_string(workspace_root().join("deploy.toml")).expect("read deploy.toml");
    let mut document: toml::Table = toml::from_str(&shipped).expect("deploy.toml is TOML");
    let environments = document.get_mut("environments").and_then(toml::Value::as_table_mut).expect("[environments]");
    let mut environment = environments.get(base).and_then(toml::Value::as_table).cloned().unwrap_or_default();
    for document in overrides {
        masstockctl::config::merge(&mut environment, &toml::from_str(document).expect("overrides are TOML"));
    }
    environments.insert("e2e".to_owned(), toml::Value::Table(environment));
    toml::to_string(&document).expect("serialize deploy.toml")
}

/// A test certificate authority and a certificate it signed for some domains (ECDSA P-256).
#[derive(Debug)]
pub struct TestCertificates {
    pub ca_pem: String,
    pub fullchain_pem: String,
    pub key_pem: String,
}

impl TestCertificates {
    #[must_use]
    pub fn for_domains(domains: &[String]) -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "masstockctl e2e test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("self-sign the CA");
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf = rcgen::CertificateParams::new(domains.to_vec())
            .expect("leaf parameters")
            .signed_by(&key, &ca)
            .expect("sign the leaf");
        Self { ca_pem: ca.pem(), fullchain_pem: format!("{}{}", leaf.pem(), ca.pem()), key_pem: key.serialize_pem() }
    }

    /// Writes them where the rendered site expects them (certbot's `live/` layout).
    pub fn install(&self, fullchain: &Path, key: &Path) {
        fs_err::create_dir_all(fullchain.parent().expect("a folder")).expect("create live/");
        fs_err::write(fullchain, &self.fullchain_pem).expect("write fullchain.pem");
        fs_err::write(key, &self.key_pem).expect("write privkey.pem");
    }
}

/// Runs `script` with the Python of the bootstrap's venv (it has `bullmq`, `html5lib`, …) and
/// `args`; its stdout. Fails with stderr when the script fails.
#[must_use]
pub fn python(script: &str, args: &[&str]) -> String {
    let python = workspace_root().join(".venv/bin/python");
    assert!(python.exists(), "no Python venv at {}: run `script/bootstrap`", python.display());
    let output = Command::new(python).arg("-c").arg(script).args(args).output().expect("run python");
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8")
}

/// A URL to the `#[sqlx::test]` database behind `pool`, on the server `DATABASE_URL` names (set by
/// `.cargo/config.toml`), for a process started by the test.
#[must_use]
pub fn database_url_of(pool: &sqlx::PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by .cargo/config.toml");
    let database = pool.connect_options().get_database().expect("a named test database").to_owned();
    let (server, _) = base.rsplit_once('/').expect("a database in DATABASE_URL");
    format!("{server}/{database}")
}

/// The path of binary `bin` of workspace package `package`, built now with the cargo running the
/// tests (same profile and target folder), so a test runs the current source. Cargo does not build
/// another package's binaries for this package's tests (`CARGO_BIN_EXE_*` only names our own).
#[must_use]
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--quiet", "--message-format=json", "-p", package, "--bin", bin])
        .current_dir(workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(output.status.success(), "`cargo build -p {package} --bin {bin}` failed (its messages are above)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == bin)
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo did not say where it put `{bin}`"))
}

/// Where `script/bootstrap` keeps Pebble's TLS certificate, key and CA.
pub const PEBBLE_STATE: &str = "/var/lib/masstock-test/pebble";

/// A private Pebble (Let's Encrypt's test CA) on free ports, using the bootstrap's
/// pebble-challtestsrv as its DNS (every name is 127.0.0.1), validating HTTP-01 on `http_port`.
#[derive(Debug)]
pub struct Pebble {
    process: Option<ChildGuard>,
    config: PathBuf,
    nonce_reject_percent: u8,
    pub directory: String,
    pub listen_port: u16,
    pub management_port: u16,
    /// The CA of Pebble's own HTTPS listener (not of the certificates it issues: see [`Pebble::root_pem`]).
    pub ca_bundle: PathBuf,
    _folder: tempfile::TempDir,
}

impl Pebble {
    /// Starts Pebble; certificates last `validity_seconds`; `nonce_reject_percent` of the nonces
    /// are refused as `badNonce`.
    #[must_use]
    pub fn start(http_port: u16, validity_seconds: u64, nonce_reject_percent: u8) -> Self {
        let state = Path::new(PEBBLE_STATE);
        for file in ["ca.pem", "server.pem", "server.key"] {
            assert!(
                state.join(file).exists(),
                "no `{}`: run `script/bootstrap` (it sets up Pebble)",
                state.join(file).display()
            );
        }
        let challtestsrv: SocketAddr = ([127, 0, 0, 1], 8055).into();
        assert!(
            TcpStream::connect_timeout(&challtestsrv, Duration::from_secs(2)).is_ok(),
            "pebble-challtestsrv is not running (management port 8055): run `script/bootstrap`"
        );
        let folder = tempfile::tempdir().expect("temporary folder");
        let (listen_port, management_port, tls_port) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen_port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": state.join("server.pem"),
                "privateKey": state.join("server.key"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity_seconds,
            }
        });
        let config_path = folder.path().join("pebble-config.json");
        fs_err::write(&config_path, config.to_string()).expect("write the Pebble config");
        let mut pebble = Self {
            process: None,
            config: config_path,
            nonce_reject_percent,
            directory: format!("https://127.0.0.1:{listen_port}/dir"),
            listen_port,
            management_port,
            ca_bundle: state.join("ca.pem"),
            _folder: folder,
        };
        pebble.spawn();
        pebble
    }

    fn spawn(&mut self) {
        let log = fs_err::File::create(self.config.with_file_name("pebble.log")).expect("Pebble's log");
        let child = Command::new(require_tool("pebble"))
            .arg("-config")
            .arg(&self.config)
            .args(["-dnsserver", "127.0.0.1:8053"])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", self.nonce_reject_percent.to_string())
            // Fresh authorizations every time: each order is really validated.
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.into_parts().0)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pebble");
        self.process = Some(ChildGuard(child));
        wait_for_port(([127, 0, 0, 1], self.listen_port).into(), Duration::from_secs(20));
        wait_for_port(([127, 0, 0, 1], self.management_port).into(), Duration::from_secs(20));
    }

    /// Stops and starts it again: it forgets every account, order and its CA.
    pub fn restart(&mut self) {
        self.process = None;
        self.spawn();
    }

    /// What Pebble logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs_err::read_to_string(self.config.with_file_name("pebble.log")).unwrap_or_default()
    }

    /// The root that signs the certificates this instance issues (regenerated at every start).
    #[must_use]
    pub fn root_pem(&self) -> String {
        let ca = fs_err::read(&self.ca_bundle).expect("Pebble's CA");
        let client = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a PEM CA"))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        client
            .get(format!("https://127.0.0.1:{}/roots/0", self.management_port))
            .send()
            .and_then(reqwest::blocking::Response::error_for_status)
            .and_then(reqwest::blocking::Response::text)
            .expect("Pebble's root from its management port")
    }
}
