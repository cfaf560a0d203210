//! `masstockctl build` against the real Docker engine: the images run, hold no shell, run as
//! their user, carry the revision and both tags, are reused when nothing changed; the local redis
//! image answers PING; a third-party image that is not here fails with its name.
//!
//! Every image repository is `masstock-test-<random>/…`, and the images and containers a test
//! made are removed when it ends, failed or not. Binaries are built with `--cargo-profile dev`:
//! release builds take minutes on this 2-core machine, and the image is made the same way.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, ListImagesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt as _;
use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ is inside the workspace").to_path_buf()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// A connection to the engine, or a failure that says how to start it.
fn docker(runtime: &tokio::runtime::Runtime) -> Docker {
    runtime.block_on(masstockctl::docker::connect()).unwrap_or_else(|error| {
        panic!(
            "the Docker engine is not reachable ({}): run `script/bootstrap`, which starts dockerd",
            error.chain().join(": ")
        )
    })
}

/// Image repositories of this test's own (`masstock-test-<random>/…`), and the containers it
/// created: all removed on drop.
struct Scratch {
    prefix: String,
    runtime: tokio::runtime::Runtime,
    docker: Docker,
    dir: tempfile::TempDir,
    containers: std::cell::RefCell<Vec<String>>,
}

impl Scratch {
    fn new() -> Self {
        let runtime = runtime();
        let docker = docker(&runtime);
        let prefix = format!("masstock-test-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        Self {
            prefix,
            runtime,
            docker,
            dir: tempfile::tempdir().expect("temporary folder"),
            containers: std::cell::RefCell::default(),
        }
    }

    /// The shipped deploy.toml with our repositories, absolute asset folders, and n8n's image
    /// replaced by one that exists nowhere.
    fn write_config(&self) -> PathBuf {
        let shipped = fs_err::read_to_string(workspace_root().join("deploy.toml")).expect("read deploy.toml");
        for expected in ["image = \"masstock/", "assets = \"services/web/", "n8nio/n8n:1.70.3"] {
            assert!(shipped.contains(expected), "the shipped deploy.toml no longer contains {expected:?}");
        }
        let text = shipped
            .replace("image = \"masstock/", &format!("image = \"{}/", self.prefix))
            .replace("assets = \"services/web/", &format!("assets = \"{}/services/web/", workspace_root().display()))
            .replace("n8nio/n8n:1.70.3", &format!("{}/absent:1", self.prefix));
        let path = self.dir.path().join("deploy.toml");
        fs_err::write(&path, text).expect("write deploy.toml");
        path
    }

    /// Runs masstockctl from the workspace root (where cargo finds the workspace), with the
    /// caller's environment (cargo needs its home and target folder).
    fn masstockctl(args: &[&str]) -> (i32, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_masstockctl"))
            .args(args)
            .current_dir(workspace_root())
            .env("NO_COLOR", "1")
            .output()
            .expect("run masstockctl");
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8 output");
        (output.status.code().unwrap_or(-1), text(output.stdout), text(output.stderr))
    }

    fn create(&self, name: &str, image: &str, body: ContainerCreateBody) -> String {
        let name = format!("{}-{name}", self.prefix);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let body = ContainerCreateBody { image: Some(image.to_owned()), ..body };
        self.runtime.block_on(self.docker.create_container(Some(options), body)).expect("create container");
        self.containers.borrow_mut().push(name.clone());
        name
    }

    fn start(&self, name: &str) -> Result<(), String> {
        self.runtime.block_on(self.docker.start_container(name, None)).map_err(|error| error.to_string())
    }

    fn wait(&self, name: &str) -> i64 {
        self.runtime.block_on(async {
            let mut stream = self.docker.wait_container(name, None);
            match stream.next().await {
                Some(Ok(response)) => response.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                other => panic!("waiting for {name}: {other:?}"),
            }
        })
    }

    /// Runs `command` in the running container and answers its exit code.
    fn exec(&self, name: &str, command: &[&str], env: &[&str]) -> i64 {
        self.runtime.block_on(async {
            let config = ExecConfig {
                cmd: Some(command.iter().map(ToString::to_string).collect()),
                env: Some(env.iter().map(ToString::to_string).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            };
            let exec = self.docker.create_exec(name, config).await.expect("create exec");
            if let bollard::exec::StartExecResults::Attached { mut output, .. } =
                self.docker.start_exec(&exec.id, None).await.expect("start exec")
            {
                while output.next().await.is_some() {}
            }
            self.docker.inspect_exec(&exec.id).await.expect("inspect exec").exit_code.unwrap_or(-1)
        })
    }

    /// The user ids of the container's processes, as `docker top` shows them.
    fn process_users(&self, name: &str) -> Vec<String> {
        self.process_column(name, "UID")
    }

    /// One column of `docker top` for each of the container's processes.
    fn process_column(&self, name: &str, title: &str) -> Vec<String> {
        let top = self.runtime.block_on(self.docker.top_processes(name, None)).expect("top");
        let titles = top.titles.unwrap_or_default();
        let column = titles.iter().position(|shown| shown == title).unwrap_or_else(|| panic!("a {title} column"));
        top.processes.unwrap_or_default().into_iter().map(|process| process[column].clone()).collect()
    }

    /// The tar header of a path in the container (owner and mode).
    fn entry(&self, name: &str, path: &str) -> (u64, u32) {
        let bytes = self.runtime.block_on(async {
            let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
            let mut stream = self.docker.download_from_container(name, Some(options));
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(&chunk.expect("archive"));
            }
            bytes
        });
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entry = archive.entries().expect("tar").next().expect("an entry").expect("entry");
        let header = entry.header();
        (header.uid().expect("uid"), header.mode().expect("mode") & 0o7777)
    }

    fn inspect_image(&self, reference: &str) -> bollard::models::ImageInspect {
        self.runtime.block_on(self.docker.inspect_image(reference)).expect("inspect image")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let containers = self.containers.take();
        self.runtime.block_on(async {
            for name in &containers {
                let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
                let _ = self.docker.remove_container(name, Some(options)).await;
            }
            let filters = HashMap::from([("reference".to_owned(), vec![format!("{}/*", self.prefix)])]);
            let options = ListImagesOptionsBuilder::default().filters(&filters).build();
            for image in self.docker.list_images(Some(options)).await.unwrap_or_default() {
                let options = RemoveImageOptionsBuilder::default().force(true).build();
                let _ = self.docker.remove_image(&image.id, Some(options), None).await;
            }
        });
    }
}

fn images_by_service(stdout: &str) -> HashMap<String, Value> {
    let document: Value = serde_json::from_str(stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"));
    document["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|image| (image["service"].as_str().expect("service").to_owned(), image.clone()))
        .collect()
}

/// GET `path` on 127.0.0.1:`port`, answering the body of a 200, within 20 s.
fn http_get(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        })();
        match attempt {
            Ok(answer) if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") => {
                return answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
            }
            other => assert!(Instant::now() < deadline, "GET {path} on port {port} never answered 200: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn built_images_run_minimal_and_are_reused_when_nothing_changed() {
    let scratch = Scratch::new();
    let config = scratch.write_config();
    let config = config.to_str().expect("utf-8 path");
    let args =
        ["--config", config, "--env", "local", "--json", "build", "--cargo-profile", "dev", "api", "app", "redis"];
    let (status, stdout, stderr) = Scratch::masstockctl(&args);
    assert_eq!(status, 0, "build failed:\n{stderr}");
    let images = images_by_service(&stdout);
    for service in ["api", "app", "redis"] {
        assert_eq!(images[service]["built"], true, "{service} was not built: {stdout}");
    }

    // The api image: both tags, the revision, its user, and nothing but the binary to run.
    let api = &images["api"];
    let reference = api["reference"].as_str().unwrap();
    let revision = api["revision"].as_str().expect("a revision");
    let head = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(workspace_root()).output().unwrap();
    assert!(revision.starts_with(String::from_utf8_lossy(&head.stdout).trim()), "revision {revision}");
    let inspect = scratch.inspect_image(reference);
    assert_eq!(inspect.id.as_deref(), api["id"].as_str());
    let tags = inspect.repo_tags.unwrap_or_default();
    assert!(tags.contains(&reference.to_owned()), "tags {tags:?}");
    assert!(tags.contains(&format!("{}/api:latest", scratch.prefix)), "tags {tags:?}");
    assert!(reference.starts_with(&format!("{}/api:{}", scratch.prefix, &revision[..12])), "{reference}");
    let config_of_image = inspect.config.expect("image config");
    assert_eq!(config_of_image.user.as_deref(), Some("10001:10001"));
    assert_eq!(
        config_of_image.labels.unwrap_or_default().get("org.opencontainers.image.revision").map(String::as_str),
        Some(revision)
    );

    let help = scratch.create(
        "api-help",
        reference,
        ContainerCreateBody { cmd: Some(vec!["masstock-api".into(), "--help".into()]), ..Default::default() },
    );
    scratch.start(&help).expect("start masstock-api --help");
    assert_eq!(scratch.wait(&help), 0, "masstock-api --help failed in its image");
    let shell = scratch.create(
        "api-shell",
        reference,
        ContainerCreateBody { cmd: Some(vec!["sh".into(), "-c".into(), "true".into()]), ..Default::default() },
    );
    let started = scratch.start(&shell);
    assert!(started.is_err() || scratch.wait(&shell) != 0, "the api image has a shell");

    // The app image serves /health, as its user, with writable folders that user owns.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let app_command = ["masstock-web", "--root", "/srv/www", "--port", "80"];
    let app = scratch.create(
        "app",
        images["app"]["reference"].as_str().unwrap(),
        ContainerCreateBody {
            cmd: Some(app_command.iter().map(ToString::to_string).collect()),
            env: Some(vec!["APP_ENV=local".into(), "API_BASE_URL=https://api.masstock.localhost:8443".into()]),
            // The engine publishes only ports the container exposes (the docker CLI adds them for
            // `-p`; the API does not).
            exposed_ports: Some(vec!["80/tcp".to_owned()]),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([(
                    "80/tcp".to_owned(),
                    Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(port.to_string()) }]),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    scratch.start(&app).expect("start the app");
    assert_eq!(http_get(port, "/health").trim(), "healthy");
    assert!(http_get(port, "/").contains("<html"), "the app's index.html is not served");
    assert_eq!(scratch.process_users(&app), vec!["10001".to_owned()]);
    assert_eq!(scratch.exec(&app, &["masstock-web", "healthcheck", "--url", "http://127.0.0.1:80/health"], &[]), 0);
    assert_eq!(scratch.entry(&app, "/app/uploads"), (10001, 0o755));
    assert_eq!(scratch.entry(&app, "/app/logs").0, 10001);
    assert_eq!(scratch.entry(&app, "/tmp").1, 0o1777);

    // The local redis image runs deploy.toml's command and health check with the password read
    // from its file, as deploy mounts it: 0400, owned by redis's user, in a 0500 folder of its own.
    let password = uuid::Uuid::new_v4().simple().to_string();
    let shipped: toml::Value =
        toml::from_str(&fs_err::read_to_string(workspace_root().join("deploy.toml")).unwrap()).unwrap();
    let redis_service = &shipped["services"]["redis"];
    let redis_command: Vec<String> =
        redis_service["command"].as_array().unwrap().iter().map(|part| part.as_str().unwrap().to_owned()).collect();
    let health = redis_service["healthcheck"]["shell"].as_str().unwrap().to_owned();
    let secrets = scratch.dir.path().join("redis-secrets");
    fs_err::create_dir(&secrets).unwrap();
    for (name, value) in [("REDIS_PASSWORD", password.as_str()), ("WRONG", "wrong")] {
        let file = secrets.join(name);
        fs_err::write(&file, value).unwrap();
        fs_err::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
        std::os::unix::fs::chown(&file, Some(999), Some(999)).unwrap();
    }
    std::os::unix::fs::chown(&secrets, Some(999), Some(999)).unwrap();
    fs_err::set_permissions(&secrets, std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
    let redis = scratch.create(
        "redis",
        images["redis"]["reference"].as_str().unwrap(),
        ContainerCreateBody {
            cmd: Some(redis_command),
            env: Some(vec!["REDIS_PASSWORD_FILE=/run/secrets/REDIS_PASSWORD".to_owned()]),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{}:/run/secrets:ro", secrets.display())]),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    scratch.start(&redis).expect("start redis");
    let deadline = Instant::now() + Duration::from_secs(20);
    while scratch.exec(&redis, &["sh", "-c", &health], &[]) != 0 {
        assert!(Instant::now() < deadline, "redis never answered PING with its password");
        std::thread::sleep(Duration::from_millis(200));
    }
    let wrong = ["REDIS_PASSWORD_FILE=/run/secrets/WRONG"];
    assert_ne!(scratch.exec(&redis, &["sh", "-c", &health], &wrong), 0, "a wrong password got PONG");
    // The shell became redis-server (one process: SIGTERM reaches it), whose command line holds
    // no password.
    let commands = scratch.process_column(&redis, "CMD");
    assert!(commands.len() == 1 && commands[0].starts_with("redis-server"), "{commands:?}");
    assert!(!commands[0].contains(&password), "{commands:?}");
    assert_eq!(scratch.process_users(&redis), vec!["999".to_owned()]);
    assert_eq!(scratch.entry(&redis, "/data").0, 999);

    // Nothing changed: the same images, reused.
    let (status, stdout, stderr) = Scratch::masstockctl(&args);
    assert_eq!(status, 0, "second build failed:\n{stderr}");
    let again = images_by_service(&stdout);
    for service in ["api", "app", "redis"] {
        assert_eq!(again[service]["built"], false, "{service} was built again: {stdout}");
        assert_eq!(again[service]["id"], images[service]["id"], "{service} changed");
    }
}

#[test]
fn a_third_party_image_that_is_absent_fails_with_its_name() {
    let scratch = Scratch::new();
    let config = scratch.write_config();
    let (status, _, stderr) = Scratch::masstockctl(&["--config", config.to_str().unwrap(), "build", "n8n"]);
    assert_eq!(status, 1, "{stderr}");
    assert!(stderr.contains(&format!("`{}/absent:1`", scratch.prefix)), "{stderr}");
    assert!(stderr.contains("docker load"), "{stderr}");
}

#[test]
fn an_unknown_service_is_a_usage_error_with_a_suggestion() {
    let scratch = Scratch::new();
    let config = scratch.write_config();
    let (status, _, stderr) = Scratch::masstockctl(&["--config", config.to_str().unwrap(), "build", "apii"]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("no service `apii`") && stderr.contains("did you mean `api`?"), "{stderr}");
}
