//! The local MasStock stack deployed for real as a project of a test's own, and the tools to use
//! it: masstockctl on its deploy.toml, the engine's view of its objects, the API through nginx.
//!
//! Everything is the test's own: project `mst<random>` (containers, network, volumes), image
//! repositories `mst<random>/…`, free ports, a PostgreSQL database, the fake Gemini server, an
//! nginx with its own prefix folder. [`Cleanup`] removes all of it even when an assertion fails.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use masstock_tests::{free_port, require_tool, wait_for_port, workspace_binary, workspace_root, ChildGuard};
use serde_json::{json, Value};

use crate::browser::Database;
use crate::sandbox::RenderedSandbox;

pub(crate) const EMAIL: &str = "e2e@example.com";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// What a masstockctl run said.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not one JSON document ({error}):\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A sandboxed deploy.toml environment for project `mst<random>`, and masstockctl to run on it.
pub(crate) struct Project {
    pub(crate) name: String,
    pub(crate) sandbox: RenderedSandbox,
    pub(crate) ctl: PathBuf,
    /// The overrides every version of deploy.toml starts from: names, ports, paths, the edge,
    /// then whatever [`Project::keep_layer`] added.
    base: Vec<String>,
}

impl Project {
    pub(crate) fn new(gemini_port: u16) -> Self {
        let name = format!("mst{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let mut sandbox = RenderedSandbox::new("local");
        let root = sandbox.root().display().to_string();
        let workspace = workspace_root().display().to_string();
        let nginx = require_tool("nginx").display().to_string();
        let (app_port, vitrine_port) = (free_port(), free_port());
        // The site lives where the sandbox rendered nothing, so the first deploy installs it and
        // starts this nginx (`start_command`).
        let base = format!(
            r#"
            [project]
            name = "{name}"
            network = "{name}_network"
            state_dir = "{root}/state"
            [services.vitrine]
            image = "{name}/vitrine"
            build = {{ assets = "{workspace}/services/web/vitrine" }}
            ports = [{{ host = {vitrine_port}, container = 80 }}]
            [services.app]
            image = "{name}/app"
            build = {{ assets = "{workspace}/services/web/app" }}
            ports = [{{ host = {app_port}, container = 80 }}]
            [services.api]
            image = "{name}/api"
            [services.worker]
            image = "{name}/worker"
            [services.worker.env]
            GEMINI_BASE_URL = "http://host.docker.internal:{gemini_port}"
            GEMINI_RPM = "600"
            [services.redis]
            image = "{name}/redis:local"
            [edge]
            site_file = "{root}/nginx/masstock.conf"
            test_command = ["{nginx}", "-t", "-q", "-p", "{root}", "-c", "{root}/nginx.conf"]
            reload_command = ["{nginx}", "-s", "reload", "-p", "{root}", "-c", "{root}/nginx.conf"]
            start_command = ["{nginx}", "-p", "{root}", "-c", "{root}/nginx.conf"]
            ca_bundle = "{root}/ca.pem"
            [rate_limits]
            general = "100000/60s"
            auth = "1000/60s"
            "#
        );
        sandbox.reconfigure(&[&base]);
        sandbox.write_nginx_main_config();
        fs_err::write(sandbox.path("ca.pem"), &sandbox.certificates.ca_pem).expect("write the CA");
        let ctl = workspace_binary("masstockctl", "masstockctl");
        Self { name, sandbox, ctl, base: vec![base] }
    }

    /// deploy.toml as the base plus `layers`, in turn.
    pub(crate) fn configure(&mut self, layers: &[&str]) {
        let mut documents: Vec<&str> = self.base.iter().map(String::as_str).collect();
        documents.extend_from_slice(layers);
        self.sandbox.reconfigure(&documents);
    }

    /// Adds `layer` to the base every later [`Project::configure`] starts from, and writes
    /// deploy.toml with it.
    pub(crate) fn keep_layer(&mut self, layer: &str) {
        self.base.push(layer.to_owned());
        self.configure(&[]);
    }

    pub(crate) fn ctl(&self, args: &[&str]) -> Run {
        let config = self.sandbox.path("deploy.toml");
        let config = config.to_str().expect("a UTF-8 path");
        self.run_masstockctl(&[&["--config", config, "--env", "e2e", "--no-progress"], args].concat())
    }

    /// Runs this masstockctl with exactly `args`, as an operator would from the workspace.
    pub(crate) fn run_masstockctl(&self, args: &[&str]) -> Run {
        let output = Command::new(&self.ctl)
            .args(args)
            // cargo finds the workspace from here when `build` runs it.
            .current_dir(workspace_root())
            .env("NO_COLOR", "1")
            .output()
            .expect("run masstockctl");
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        Run { code: output.status.code().unwrap_or(-1), stdout: text(output.stdout), stderr: text(output.stderr) }
    }

    /// Runs masstockctl and fails the test, with what it said, unless it exits 0.
    pub(crate) fn ctl_ok(&self, args: &[&str]) -> Run {
        let run = self.ctl(args);
        assert_eq!(run.code, 0, "`masstockctl {}` failed:\n{run}", args.join(" "));
        run
    }

    pub(crate) fn container(&self, service: &str) -> String {
        format!("{}_{service}", self.name)
    }

    pub(crate) fn domain(&self, site: &str) -> String {
        self.sandbox.stack.config.sites[site].domain.clone()
    }

    /// An HTTPS client that reaches every site through this project's nginx and trusts its CA.
    /// Without `reuse`, each request opens a new connection.
    pub(crate) fn client(&self, reuse: bool) -> reqwest::blocking::Client {
        let edge = std::net::SocketAddr::from(([127, 0, 0, 1], self.sandbox.https_port));
        let mut builder = reqwest::blocking::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.sandbox.certificates.ca_pem.as_bytes()).expect("the test CA"),
            )
            .timeout(Duration::from_secs(10));
        for site in ["api", "app", "vitrine"] {
            builder = builder.resolve(&self.domain(site), edge);
        }
        if !reuse {
            builder = builder.pool_max_idle_per_host(0);
        }
        builder.build().expect("HTTPS client")
    }

    pub(crate) fn api_url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.domain("api"), self.sandbox.https_port)
    }

    pub(crate) fn health(&self) -> Run {
        self.ctl(&["--json", "health", "--timeout", "10s"])
    }

    /// Runs `health` until it says healthy; fails with its last answer after `within`.
    pub(crate) fn wait_healthy(&self, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let run = self.health();
            if run.code == 0 && run.json()["healthy"] == json!(true) {
                return started.elapsed();
            }
            assert!(started.elapsed() < within, "`health` is not green after {within:?}:\n{run}");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Removes what the test made when dropped, failed or not: containers, network and volumes
/// (`down --volumes`, then the docker CLI for anything left, such as a standby), images, the
/// nginx that deploy started, and the database.
pub(crate) struct Cleanup {
    project: String,
    root: PathBuf,
    config: PathBuf,
    ctl: PathBuf,
}

impl Cleanup {
    /// Cleans up after `project`; it must outlive the guard (`down` reads its deploy.toml).
    pub(crate) fn of(project: &Project) -> Self {
        Self {
            project: project.name.clone(),
            root: project.sandbox.root().to_path_buf(),
            config: project.sandbox.path("deploy.toml"),
            ctl: project.ctl.clone(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let docker = |args: &[&str]| -> String {
            Command::new("docker")
                .args(args)
                .stderr(Stdio::null())
                .output()
                .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
                .unwrap_or_default()
        };
        // A lock left by the test itself must not stop `down`.
        let _ = fs_err::remove_file(self.root.join(format!("state/{}.deploy.lock", self.project)));
        let _ = Command::new(&self.ctl)
            .arg("--config")
            .arg(&self.config)
            .args(["--env", "e2e", "--no-progress", "down", "--volumes"])
            .output();
        for kind in ["container", "network", "volume"] {
            let ids = project_objects(kind, &self.project);
            if !ids.is_empty() {
                let remove = if kind == "container" { vec![kind, "rm", "-f", "-v"] } else { vec![kind, "rm"] };
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                docker(&[remove.as_slice(), ids.as_slice()].concat());
            }
        }
        // By tag, not by ID: an ID cannot be removed while an image built FROM it exists, but a
        // tag can, and the engine removes the untagged parent with its last child.
        let filter = format!("reference={}/*", self.project);
        let images = docker(&["image", "ls", "--filter", &filter, "--format", "{{.Repository}}:{{.Tag}}"]);
        let images: Vec<&str> = images.split_whitespace().collect();
        if !images.is_empty() {
            docker(&[["image", "rm", "-f"].as_slice(), images.as_slice()].concat());
        }
        if let Ok(pid) = fs_err::read_to_string(self.root.join("nginx.pid")) {
            let _ = Command::new("kill").args(["-QUIT", pid.trim()]).status();
        }
    }
}

/// A project deployed on the real engine: its first `deploy --cargo-profile dev` ran (whether it
/// succeeded is for the test to check), with a database, the secrets and the fake Gemini server
/// it needs. Dropping it removes everything, in this order: the fake Gemini, the project's
/// objects and nginx ([`Cleanup`]), the database (once no container uses it), the sandbox.
pub(crate) struct LocalStack {
    _gemini: ChildGuard,
    _cleanup: Cleanup,
    _database: Database,
    pub(crate) project: Project,
    /// Where the fake Gemini server listens on the host (its `/_fake/` control endpoints too).
    pub(crate) gemini_port: u16,
    /// The only key the fake Gemini server accepts, which the env file gives the worker.
    pub(crate) gemini_key: String,
}

impl LocalStack {
    /// Prepares a project and deploys it once; the stack, the first deploy's run and how long it
    /// took.
    pub(crate) fn deploy() -> (Self, Run, Duration) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let gemini_port = free_port();
        let gemini_key = format!("e2e-{}", uuid::Uuid::new_v4().simple());
        let project = Project::new(gemini_port);
        let database = Database::create_named(&runtime, &project.name);
        let cleanup = Cleanup::of(&project);
        // Containers reach the host's PostgreSQL through host.docker.internal (host-gateway).
        let container_database_url = database.url.replace("127.0.0.1", "host.docker.internal");
        assert!(container_database_url.contains("host.docker.internal"), "{}", database.url);
        let jwt_secret = format!("e2e-jwt-{}", uuid::Uuid::new_v4().simple());
        project.sandbox.set_secrets(&[
            ("DATABASE_URL", &container_database_url),
            ("GEMINI_API_KEY", &gemini_key),
            ("JWT_SECRET", &jwt_secret),
        ]);
        let gemini_binary = workspace_binary("masstock-fake-gemini", "fake-gemini");
        let gemini = ChildGuard(
            Command::new(gemini_binary)
                .args(["--host", "0.0.0.0", "--port", &gemini_port.to_string(), "--api-key", &gemini_key])
                .stdout(Stdio::null())
                .spawn()
                .expect("start the fake Gemini server"),
        );
        wait_for_port(([127, 0, 0, 1], gemini_port).into(), Duration::from_secs(20));
        let stack = Self { _gemini: gemini, _cleanup: cleanup, _database: database, project, gemini_port, gemini_key };

        // A deploy on an empty project builds the images and creates everything. The dev
        // profile: release builds take minutes on this machine.
        let started = Instant::now();
        let run = stack.project.ctl(&["--json", "deploy", "--cargo-profile", "dev"]);
        let took = started.elapsed();
        (stack, run, took)
    }
}

/// The IDs of a project's containers (running or not), networks or volumes.
pub(crate) fn project_objects(kind: &str, project: &str) -> Vec<String> {
    let label = format!("label=com.docker.compose.project={project}");
    let list: &[&str] = if kind == "container" { &["ps", "-aq"] } else { &[kind, "ls", "-q"] };
    let output = Command::new("docker").args(list).args(["--filter", &label]).output().expect("run docker");
    assert!(output.status.success(), "docker {kind} ls: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect()
}

/// Builds `tag` from `dockerfile` with no context; says what docker said when it fails.
pub(crate) fn docker_build(tag: &str, dockerfile: &str) {
    let mut build = Command::new(require_tool("docker"))
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker build");
    build.stdin.take().unwrap().write_all(dockerfile.as_bytes()).unwrap();
    let output = build.wait_with_output().unwrap();
    assert!(output.status.success(), "docker build {tag}: {}", String::from_utf8_lossy(&output.stderr));
}

/// `docker inspect` of one object; `None` when there is none.
pub(crate) fn inspect(kind: &str, name: &str) -> Option<Value> {
    let output = Command::new(require_tool("docker")).args([kind, "inspect", name]).output().expect("run docker");
    output.status.success().then(|| serde_json::from_slice::<Value>(&output.stdout).expect("JSON")[0].clone())
}

/// Adds the user [`EMAIL`] with [`PASSWORD`] with the api's own command, inside its container.
pub(crate) fn add_user(project: &Project) {
    add_user_as(project, EMAIL, PASSWORD);
}

/// Adds the user `email` with `password` with the api's own command, inside its container.
pub(crate) fn add_user_as(project: &Project, email: &str, password: &str) {
    let mut add_user = Command::new(require_tool("docker"))
        .args(["exec", "-i", &project.container("api"), "masstock-api", "user", "add", "--email", email])
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker exec");
    add_user.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    let added = add_user.wait_with_output().unwrap();
    assert!(added.status.success(), "user add: {}", String::from_utf8_lossy(&added.stderr));
}

/// Logs [`EMAIL`] in through the edge; the access token, for `Authorization: Bearer`.
pub(crate) fn log_in(client: &reqwest::blocking::Client, project: &Project) -> String {
    log_in_as(client, project, EMAIL, PASSWORD)
}

/// Logs `email` in through the edge; the access token, for `Authorization: Bearer`.
pub(crate) fn log_in_as(client: &reqwest::blocking::Client, project: &Project, email: &str, password: &str) -> String {
    let response = client
        .post(project.api_url("/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .expect("log in through nginx");
    assert_eq!(response.status(), 200, "log in: {:?}", response.text());
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|cookie| cookie.strip_prefix("access_token="))
        .and_then(|rest| rest.split(';').next())
        .expect("an access_token cookie")
        .to_owned()
}

/// Queues an execution of the first workflow on `prompts`; its id.
pub(crate) fn start_execution(
    client: &reqwest::blocking::Client,
    project: &Project,
    token: &str,
    prompts: &[String],
) -> String {
    let workflows: Value =
        client.get(project.api_url("/api/v1/workflows")).bearer_auth(token).send().unwrap().json().unwrap();
    let workflow = workflows["items"][0]["id"].as_str().expect("a workflow").to_owned();
    let response = client
        .post(project.api_url("/api/v1/executions"))
        .bearer_auth(token)
        .json(&json!({ "workflowId": workflow, "prompts": prompts }))
        .send()
        .expect("start an execution");
    assert_eq!(response.status(), 202, "start an execution: {:?}", response.text());
    response.json::<Value>().unwrap()["id"].as_str().expect("an execution id").to_owned()
}

pub(crate) fn execution(client: &reqwest::blocking::Client, project: &Project, token: &str, id: &str) -> Value {
    let response = client.get(project.api_url(&format!("/api/v1/executions/{id}"))).bearer_auth(token).send();
    response.expect("fetch the execution").json().expect("JSON")
}

/// Polls the execution until `done` says so; its last state.
pub(crate) fn wait_execution(
    client: &reqwest::blocking::Client,
    project: &Project,
    token: &str,
    id: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let state = execution(client, project, token, id);
        if done(&state) {
            return state;
        }
        assert!(started.elapsed() < within, "the execution is not {what} after {within:?}: {state}");
        std::thread::sleep(Duration::from_millis(250));
    }
}
