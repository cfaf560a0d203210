//! A small client of the W3C `WebDriver` protocol for Debian's `chromedriver` driving headless `chromium`: enough
//! to navigate, fill forms, click, wait, take screenshots and read the browser's console.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::{free_port, require_tool, wait_for_port, ChildGuard};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; the browser and its driver stop when it is dropped.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::blocking::Client,
    session: String,
    base: String,
    _driver: ChildGuard,
}

// Waits and scripts are often called for their effect alone; their value is there when wanted.
#[allow(clippy::must_use_candidate)]
impl Browser {
    /// Starts chromedriver and a headless Chromium that resolves every name in `host_rules`
    /// (Chromium's `--host-resolver-rules`) and accepts the test CA's certificates.
    #[must_use]
    pub fn start(host_rules: &str, width: u32, height: u32) -> Self {
        Self::start_with(host_rules, width, height, json!({}))
    }

    /// Like [`Browser::start`], emulating a phone's screen of `width` × `height` CSS pixels
    /// (headless Chromium will not make a window narrower than 500 px).
    pub fn start_phone(host_rules: &str, width: u32, height: u32) -> Self {
        let emulation =
            json!({ "mobileEmulation": { "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2 } } });
        Self::start_with(host_rules, 800, 900, emulation)
    }

    fn start_with(host_rules: &str, width: u32, height: u32, extra_options: Value) -> Self {
        let port = free_port();
        let driver = ChildGuard(
            Command::new(require_tool("chromedriver"))
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10));
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut options = json!({
            "binary": require_tool("chromium").display().to_string(),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                format!("--host-resolver-rules={host_rules}"), format!("--window-size={width},{height}"),
            ],
        });
        if let (Some(options), Value::Object(extra)) = (options.as_object_mut(), extra_options) {
            options.extend(extra);
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": options,
        }}});
        let answer: Value = http.post(format!("{base}/session")).json(&capabilities).send().unwrap().json().unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused a session: {answer}"))
            .to_owned();
        Self { http, session, base, _driver: driver }
    }

    fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = self.http.request(method, url);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let answer: Value = request.send().expect("talk to chromedriver").json().expect("a JSON answer");
        answer["value"].clone()
    }

    /// Like `command`, failing the test with the driver's message when the command failed.
    fn checked(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let value = self.command(method, path, body);
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            panic!("webdriver `{path}`: {error}: {}", value["message"].as_str().unwrap_or_default());
        }
        value
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.checked(reqwest::Method::POST, path, Some(body))
    }

    pub fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    #[must_use]
    pub fn url(&self) -> String {
        self.checked(reqwest::Method::GET, "/url", None).as_str().unwrap_or_default().to_owned()
    }

    pub fn refresh(&self) {
        self.post("/refresh", json!({}));
    }

    /// Runs `script` (a function body) in the page with `args`; its return value.
    pub fn script(&self, script: &str, args: &[Value]) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
    }

    /// The element matching `selector`, if there is one now.
    #[must_use]
    pub fn find(&self, selector: &str) -> Option<String> {
        let found = self.command(
            reqwest::Method::POST,
            "/element",
            Some(json!({ "using": "css selector", "value": selector })),
        );
        found.get(ELEMENT).and_then(Value::as_str).map(str::to_owned)
    }

    /// Waits until `condition` (a script returning a truthy value) holds; fails with `what`, the
    /// page's URL and its console.
    pub fn wait_until(&self, what: &str, within: Duration, condition: &str) -> Value {
        let deadline = Instant::now() + within;
        let mut last_error = String::new();
        loop {
            // A script error (the page navigating, say) means "not yet", not "yes".
            let value =
                self.command(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": condition, "args": [] })));
            match value.get("error").and_then(Value::as_str) {
                Some(error) => last_error = format!("{error}: {}", value["message"].as_str().unwrap_or_default()),
                None if !(value.is_null() || value == json!(false) || value == json!("")) => return value,
                None => {}
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?} (at {}; last script error: {last_error}); console:\n{}",
                self.url(),
                self.console().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for `selector` to match.
    pub fn wait_for(&self, selector: &str, within: Duration) -> String {
        let condition = format!("return document.querySelector({}) !== null;", json!(selector));
        self.wait_until(&format!("`{selector}` appears"), within, &condition);
        self.find(selector).expect("the element just appeared")
    }

    /// Types `text` into the element matching `selector`, after clearing it.
    pub fn fill(&self, selector: &str, text: &str) {
        let element = self.wait_for(selector, Duration::from_secs(10));
        self.post(&format!("/element/{element}/clear"), json!({}));
        self.post(&format!("/element/{element}/value"), json!({ "text": text }));
    }

    pub fn click(&self, selector: &str) {
        let element = self.wait_for(selector, Duration::from_secs(10));
        self.post(&format!("/element/{element}/click"), json!({}));
    }

    /// Saves a PNG of the viewport at `path`.
    pub fn screenshot(&self, path: &Path) {
        let data = self.checked(reqwest::Method::GET, "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap_or_default()).unwrap();
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, png).unwrap();
    }

    /// The console messages logged since the last call, as `LEVEL message`.
    #[must_use]
    pub fn console(&self) -> Vec<String> {
        let entries = self.post("/se/log", json!({ "type": "browser" }));
        entries
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|entry| {
                        format!(
                            "{} {}",
                            entry["level"].as_str().unwrap_or("?"),
                            entry["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send();
    }
}
