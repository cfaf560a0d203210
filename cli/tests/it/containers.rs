//! `status`, `logs` and `health` against real containers of a project of the test's own
//! (`mst-test-<random>`), run from a tiny image the test builds: `FROM scratch` with the host's
//! `/bin/sh`, `sleep` and the libraries they load. Everything the test creates carries the
//! project's label or name and is removed when the test ends, failed or not.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HealthConfig, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt as _;
use masstock_tests::free_port;
use serde_json::Value;

use crate::support::{shipped_config, Run, Sandbox};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

fn docker(runtime: &tokio::runtime::Runtime) -> Docker {
    runtime
        .block_on(masstockctl::docker::connect())
        .unwrap_or_else(|error| panic!("{}: run `script/bootstrap` (it starts dockerd)", error.chain().join(": ")))
}

/// A project of the test's own: its image, its containers, and a deploy.toml naming it.
pub(crate) struct Project {
    name: String,
    image: String,
    runtime: tokio::runtime::Runtime,
    docker: Docker,
    sandbox: Sandbox,
    /// The host port deploy.toml says the API publishes (nothing listens there).
    api_port: u16,
}

impl Project {
    pub(crate) fn new() -> Self {
        let runtime = runtime();
        let docker = docker(&runtime);
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let name = format!("mst-test-{suffix}");
        let image = format!("{name}:latest");
        let api_port = free_port();
        let config = shipped_config()
            .replacen("name = \"masstock\"", &format!("name = \"{name}\""), 1)
            .replacen("network = \"masstock_network\"", &format!("network = \"{name}_network\""), 1)
            .replacen("{ host = 3000, container = 3000 }", &format!("{{ host = {api_port}, container = 3000 }}"), 1)
            .replacen("{ host = 8080,", &format!("{{ host = {},", free_port()), 1)
            .replacen("{ host = 8081,", &format!("{{ host = {},", free_port()), 1);
        let project = Self { name, image, runtime, docker, sandbox: Sandbox::with_config(&config), api_port };
        project.build_image();
        project
    }

    /// `FROM scratch` plus the host's `sh` and `sleep` and the libraries `ldd` says they need.
    fn build_image(&self) {
        let mut files: Vec<PathBuf> = Vec::new();
        for binary in ["/bin/sh", "/bin/sleep"] {
            files.push(PathBuf::from(binary));
            let ldd = Command::new("ldd").arg(binary).output().expect("run ldd");
            for line in String::from_utf8_lossy(&ldd.stdout).lines() {
                let path = line.split("=>").last().unwrap_or_default().split_whitespace().next().unwrap_or_default();
                if path.starts_with('/') {
                    files.push(PathBuf::from(path));
                }
            }
        }
        let mut context = tar::Builder::new(Vec::new());
        let dockerfile = b"FROM scratch\nCOPY rootfs/ /\n";
        append(&mut context, Path::new("Dockerfile"), dockerfile, 0o644);
        for file in files {
            let bytes = fs_err::read(&file).unwrap_or_else(|error| panic!("read {}: {error}", file.display()));
            append(&mut context, &Path::new("rootfs").join(file.strip_prefix("/").unwrap()), &bytes, 0o755);
        }
        let context = context.into_inner().expect("the build context");
        let labels =
            HashMap::from([(masstockctl::docker::labels::REVISION, "0123456789abcdef0123456789abcdef01234567")]);
        let options = BuildImageOptionsBuilder::default().t(&self.image).rm(true).labels(&labels).build();
        self.runtime.block_on(async {
            let mut build = self.docker.build_image(options, None, Some(bollard::body_full(context.into())));
            while let Some(step) = build.next().await {
                let step = step.unwrap_or_else(|error| panic!("build {}: {error}", self.image));
                assert!(step.error_detail.is_none(), "build {}: {:?}", self.image, step.error_detail);
            }
        });
    }

    fn container_name(&self, service: &str) -> String {
        format!("{}_{service}", self.name)
    }

    /// Creates (and unless `start` is false, starts) `<project>_<service>` running `script` in `sh`.
    fn container(&self, service: &str, script: &str, host: HostConfig, healthcheck: Option<HealthConfig>, start: bool) {
        let labels = HashMap::from([
            (masstockctl::docker::labels::PROJECT.to_owned(), self.name.clone()),
            (masstockctl::docker::labels::SERVICE.to_owned(), service.to_owned()),
            (masstockctl::docker::labels::ROLE.to_owned(), "primary".to_owned()),
        ]);
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()]),
            labels: Some(labels),
            host_config: Some(host),
            healthcheck,
            ..Default::default()
        };
        let name = self.container_name(service);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.runtime.block_on(async {
            self.docker
                .create_container(Some(options), body)
                .await
                .unwrap_or_else(|error| panic!("create {name}: {error}"));
            if start {
                self.docker.start_container(&name, None).await.unwrap_or_else(|error| panic!("start {name}: {error}"));
            }
        });
    }

    /// Waits until the container's inspection satisfies `ready`.
    fn wait_for(&self, service: &str, what: &str, ready: impl Fn(&bollard::models::ContainerInspectResponse) -> bool) {
        let name = self.container_name(service);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let inspected = self.runtime.block_on(self.docker.inspect_container(&name, None)).expect("inspect");
            if ready(&inspected) {
                return;
            }
            assert!(Instant::now() < deadline, "{name} is not {what} after 30s: {:?}", inspected.state);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--env", "local"];
        all.extend_from_slice(args);
        self.sandbox.run(&all)
    }

    /// Waits until the API's three lines are all in the engine's log (it keeps them in the order
    /// it got them, so `three` last means all three).
    pub(crate) fn wait_for_the_api_lines(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.run(&["logs", "api", "--tail", "1"]).stdout != "three\n" {
            assert!(Instant::now() < deadline, "`three` was not logged within 10s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The API runs `sh` that writes three lines, 200 ms apart so that their order is certain (the
    /// second on stderr), and sleeps, healthy;
    /// the worker exits with code 3 and is restarted twice; redis is never created.
    pub(crate) fn with_api_and_crashing_worker(self) -> Self {
        let healthcheck = HealthConfig {
            test: Some(vec!["CMD".to_owned(), "/bin/sh".to_owned(), "-c".to_owned(), "exit 0".to_owned()]),
            interval: Some(500_000_000),
            timeout: Some(2_000_000_000),
            retries: Some(3),
            ..Default::default()
        };
        self.container(
            "api",
            "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three; exec sleep 600",
            HostConfig::default(),
            Some(healthcheck),
            true,
        );
        let restart = HostConfig {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(2),
            }),
            ..Default::default()
        };
        self.container("worker", "echo bye; exit 3", restart, None, true);
        self.wait_for("api", "healthy", |inspected| {
            inspected.state.as_ref().and_then(|state| state.health.as_ref()).and_then(|health| health.status)
                == Some(bollard::models::HealthStatusEnum::HEALTHY)
        });
        self.wait_for("worker", "exited after two restarts", |inspected| {
            inspected.restart_count == Some(2)
                && inspected.state.as_ref().and_then(|state| state.status)
                    == Some(bollard::models::ContainerStateStatusEnum::EXITED)
        });
        self
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{}={}", masstockctl::docker::labels::PROJECT, self.name)],
        )]);
        self.runtime.block_on(async {
            let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
            for container in self.docker.list_containers(Some(options)).await.unwrap_or_default() {
                let Some(id) = container.id else { continue };
                let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
                let _ = self.docker.remove_container(&id, Some(options)).await;
            }
            let options = RemoveImageOptionsBuilder::default().force(true).build();
            let _ = self.docker.remove_image(&self.image, Some(options), None).await;
        });
    }
}

fn append(context: &mut tar::Builder<Vec<u8>>, path: &Path, bytes: &[u8], mode: u32) {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    context.append_data(&mut header, path, bytes).expect("add to the build context");
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|error| panic!("not JSON ({error}):\n{}", run.transcript()))
}

fn row<'a>(document: &'a Value, service: &str) -> &'a Value {
    document["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|row| row["service"] == service)
        .unwrap_or_else(|| panic!("no row for {service}: {document:#}"))
}

#[test]
fn status_shows_running_exited_absent_and_undeclared_containers() {
    let project = Project::new().with_api_and_crashing_worker();
    // A container of the project that deploy.toml does not declare, never started.
    project.container("ghost", "exit 0", HostConfig::default(), None, false);

    let run = project.run(&["status", "--json"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    let document = json(&run);
    assert_eq!(document["project"], project.name.as_str());

    let api = row(&document, "api");
    assert_eq!(api["container"], project.container_name("api").as_str());
    assert_eq!(api["state"], "running");
    assert_eq!(api["health"], "healthy");
    assert_eq!(api["restart_count"], 0);
    assert_eq!(api["exit_code"], Value::Null);
    assert!(api["uptime_s"].is_u64(), "{api:#}");
    assert_eq!(api["role"], "primary");
    assert_eq!(api["image"], project.image.as_str());
    assert_eq!(api["revision"], "0123456789abcdef0123456789abcdef01234567");

    let worker = row(&document, "worker");
    assert_eq!(worker["state"], "exited");
    assert_eq!(worker["exit_code"], 3);
    assert_eq!(worker["restart_count"], 2);
    assert_eq!(worker["health"], Value::Null);
    assert!(worker["exited_s"].is_u64(), "{worker:#}");
    assert_eq!(worker["uptime_s"], Value::Null);

    let redis = row(&document, "redis");
    assert_eq!(redis["state"], "absent");
    assert_eq!(redis["container"], Value::Null);

    let ghost = row(&document, "ghost");
    assert_eq!(ghost["declared"], false);
    assert_eq!(ghost["state"], "created");

    // The table says the same in words, and still exits 0: status informs, health judges.
    let run = project.run(&["status"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    let line = |service: &str| {
        run.stdout
            .lines()
            .find(|line| line.starts_with(&format!("{service} ")))
            .unwrap_or_else(|| panic!("no line for {service}:\n{}", run.stdout))
            .to_owned()
    };
    assert!(line("worker").contains("exited") && line("worker").contains("code 3"), "{}", run.stdout);
    assert!(line("api").contains("healthy") && line("api").contains("0123456789ab "), "{}", run.stdout);
    assert!(line("redis").contains("absent"), "{}", run.stdout);
    assert!(line("ghost").contains("(undeclared)"), "{}", run.stdout);
}

#[test]
fn logs_prints_the_last_lines_on_the_stream_they_were_written_to() {
    let project = Project::new().with_api_and_crashing_worker();
    project.wait_for_the_api_lines();

    let run = project.run(&["logs", "api", "--tail", "2"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    assert_eq!(run.stdout, "three\n", "{}", run.transcript());
    assert!(run.stderr.ends_with("two\n"), "{}", run.transcript());

    let run = project.run(&["logs", "api", "--since", "10m", "--timestamps"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.transcript());
    assert!(lines[0].ends_with(" one") && lines[0].contains('T'), "{}", run.transcript());

    let run = project.run(&["logs", "nosuch"]);
    assert_eq!(run.status, 2, "{}", run.transcript());
    assert!(run.stderr.contains("no service `nosuch`"), "{}", run.transcript());
    assert!(run.stderr.contains("api, app, redis, vitrine, worker"), "{}", run.transcript());

    let run = project.run(&["logs", "redis"]);
    assert_eq!(run.status, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains(&format!("no container `{}`", project.container_name("redis"))),
        "{}",
        run.transcript()
    );
    assert!(run.stderr.contains("deploy` creates it"), "{}", run.transcript());
}

#[test]
fn health_fails_on_a_missing_container_and_a_refused_http_check() {
    let project = Project::new().with_api_and_crashing_worker();

    let run = project.run(&["health", "--json", "--timeout", "2s"]);
    assert_eq!(run.status, 1, "{}", run.transcript());
    let document = json(&run);
    assert_eq!(document["healthy"], false);
    let checks = document["checks"].as_array().expect("checks");
    let check = |name: &str| {
        checks.iter().find(|check| check["name"] == name).unwrap_or_else(|| panic!("no check {name}: {document:#}"))
    };
    for check in checks {
        assert!(check["latency_ms"].is_u64() && check["detail"].is_string() && check["ok"].is_boolean(), "{check:#}");
    }

    assert_eq!(check("container api")["ok"], true, "{document:#}");
    let redis = check("container redis");
    assert_eq!(redis["ok"], false);
    let detail = redis["detail"].as_str().unwrap();
    assert!(detail.contains("no container") && detail.contains("masstockctl deploy"), "{detail}");
    let worker = check("container worker");
    assert_eq!(worker["ok"], false);
    assert!(worker["detail"].as_str().unwrap().contains("exit code 3"), "{worker:#}");

    let http = check("http api /health");
    assert_eq!(http["ok"], false);
    let detail = http["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("GET http://127.0.0.1:{}/health", project.api_port)), "{detail}");
    assert!(detail.to_lowercase().contains("refused"), "{detail}");

    // Redis has no container, so neither its check nor the heartbeat's can run: both say why.
    assert!(check("redis")["detail"].as_str().unwrap().contains("no container"), "{document:#}");
    assert_eq!(check("worker heartbeat")["ok"], false);

    let run = project.run(&["health", "--timeout", "2s"]);
    assert_eq!(run.status, 1, "{}", run.transcript());
    assert!(run.stdout.lines().any(|line| line.starts_with("✓ container api")), "{}", run.stdout);
    assert!(run.stdout.lines().any(|line| line.starts_with("✗ container redis")), "{}", run.stdout);
    assert!(run.stderr.contains("unhealthy:"), "{}", run.transcript());
}
