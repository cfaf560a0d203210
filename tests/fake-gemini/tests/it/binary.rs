//! The `fake-gemini` binary: prints its address, serves, and exits 0 on SIGTERM or SIGINT.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{client, post, request_body, MODEL};

const BINARY: &str = env!("CARGO_BIN_EXE_fake-gemini");
const PATIENCE: Duration = Duration::from_secs(60);

/// A running `fake-gemini`, killed if a test fails before stopping it.
struct Running {
    child: Child,
    url: String,
}

impl Running {
    fn start(arguments: &[&str]) -> Self {
        let mut child = Command::new(BINARY)
            .args(arguments)
            .env_remove("FAKE_GEMINI_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("`fake-gemini` starts");
        let stdout = child.stdout.take().unwrap();
        let (line_sender, line) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first_line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut first_line);
            let _ = line_sender.send(first_line);
        });
        let mut running = Self { child, url: String::new() };
        let first_line = line.recv_timeout(PATIENCE).expect("`fake-gemini` prints a line");
        let url = first_line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("`listening on URL`, not `{first_line}`"))
            .trim_end();
        running.url.push_str(url);
        running
    }

    fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let killed = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(killed.success(), "`kill -{signal}` works");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "`fake-gemini` stops on SIG{signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn it_prints_its_address_serves_and_stops_on_sigterm() {
    let mut running = Running::start(&["--port", "0", "--api-key", "binary-key", "--requests-per-minute", "2"]);
    assert!(running.url.starts_with("http://127.0.0.1:"), "{}", running.url);
    assert!(!running.url.ends_with(":0"), "a real port: {}", running.url);

    let url = format!("{}/v1beta/models/{MODEL}:generateContent", running.url);
    assert_eq!(post(&url, Some("other"), &request_body("a cat")).status, 400);
    assert_eq!(post(&url, Some("binary-key"), &request_body("a cat")).status, 200);
    assert_eq!(post(&url, Some("binary-key"), &request_body("a dog")).status, 200);
    assert_eq!(post(&url, Some("binary-key"), &request_body("a bird")).status, 429);

    let stats: Value = client().get(format!("{}/_fake/stats", running.url)).send().unwrap().json().unwrap();
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["by_status"]["429"], 1);

    let status = running.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn it_stops_on_sigint_too() {
    let mut running = Running::start(&["--latency-ms", "1", "--failure-rate", "0", "--host", "127.0.0.1"]);
    let url = format!("{}/v1beta/models/{MODEL}:generateContent", running.url);
    assert_eq!(post(&url, Some("any"), &request_body("a cat")).status, 200);
    assert_eq!(running.signal_and_wait("INT").code(), Some(0));
}

#[test]
fn bad_flags_are_usage_errors() {
    let output = Command::new(BINARY).args(["--failure-rate", "2"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not between 0 and 1"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn a_port_in_use_is_a_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = Command::new(BINARY).args(["--port", &port]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot listen on `127.0.0.1:{port}`")), "{stderr}");
}
