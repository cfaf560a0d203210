//! Secrets as files (issue 16, part 3): no secret value of the env file in `docker inspect` of any
//! container of the project, in the rendered compose file, in `docker-compose config`, nor in the
//! host's process list; each secret a file `/run/secrets/NAME` (0400, owned by the service's user,
//! in a 0500 folder of that user, mounted read-only) named by `NAME_FILE`. Then a rotation:
//! `secrets generate --force REDIS_PASSWORD` and a deploy recreate exactly the services that read
//! it, replace their files, remove the old ones, and leave a stack that queues and completes an
//! execution with the new password.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use masstock_tests::require_tool;
use serde_json::{json, Value};

use crate::stack::{add_user_as, inspect, log_in_as, project_objects, wait_execution, LocalStack, Project};

/// The services of the local stack that refer to secrets, and the variables that become files.
const SECRET_VARIABLES: &[(&str, &[&str])] = &[
    ("api", &["DATABASE_URL", "JWT_SECRET", "REDIS_URL"]),
    ("worker", &["DATABASE_URL", "GEMINI_API_KEY", "REDIS_URL"]),
    ("redis", &["REDIS_PASSWORD"]),
];

/// Every value the env file sets.
fn secret_values(project: &Project) -> BTreeMap<String, String> {
    fs_err::read_to_string(project.sandbox.path("secrets.env"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Fails, naming the secret (never its value), when `text` holds one of `secrets`.
fn assert_holds_none(secrets: &BTreeMap<String, String>, text: &str, what: &str) {
    for (name, value) in secrets {
        assert!(!text.contains(value.as_str()), "the value of `{name}` is in {what}");
    }
}

/// The host folder mounted at `/run/secrets` in `container`, checked read-only.
fn secrets_folder(container: &Value) -> PathBuf {
    let mounts = container["Mounts"].as_array().expect("Mounts");
    let mount = mounts
        .iter()
        .find(|mount| mount["Destination"] == "/run/secrets")
        .unwrap_or_else(|| panic!("no /run/secrets mount: {mounts:?}"));
    assert_eq!(mount["Type"], "bind", "{mount}");
    assert_eq!(mount["RW"], false, "the secret files are mounted read-only: {mount}");
    PathBuf::from(mount["Source"].as_str().expect("a source"))
}

/// The uid a container runs as: its `Config.User` (numeric in this stack), root when empty.
fn user_of(container: &Value) -> u32 {
    let user = container["Config"]["User"].as_str().unwrap_or_default();
    let uid = user.split(':').next().unwrap_or_default();
    if uid.is_empty() {
        0
    } else {
        uid.parse().unwrap_or_else(|_| panic!("a numeric user: {user}"))
    }
}

pub(super) fn check(stack: &LocalStack) {
    let project = &stack.project;
    let secrets = secret_values(project);
    assert!(secrets.contains_key("REDIS_PASSWORD") && secrets.contains_key("JWT_SECRET"), "{:?}", secrets.keys());

    // docker inspect of every container of the project, running or not.
    let containers = project_objects("container", &project.name);
    assert!(containers.len() >= 5, "{containers:?}");
    for id in &containers {
        let inspected = inspect("container", id).expect("the container");
        let name = inspected["Name"].as_str().unwrap_or(id).to_owned();
        assert_holds_none(&secrets, &inspected.to_string(), &format!("`docker inspect {name}`"));
    }

    // Each secret a file, named by NAME_FILE, 0400 and the service's user's, read-only.
    for (service, variables) in SECRET_VARIABLES {
        let container = inspect("container", &project.container(service)).expect("the container");
        let environment: Vec<&str> =
            container["Config"]["Env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        let folder = secrets_folder(&container);
        let uid = user_of(&container);
        let expected_uid = if *service == "redis" { 999 } else { 10001 };
        assert_eq!(uid, expected_uid, "{service} runs as its declared or image user");
        let metadata = fs_err::metadata(&folder).unwrap();
        assert_eq!((metadata.mode() & 0o7777, metadata.uid()), (0o500, uid), "{service}'s folder {}", folder.display());
        let mut names: Vec<String> = fs_err::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, *variables, "{service} gets the secrets it declares and no other");
        for variable in *variables {
            let line = format!("{variable}_FILE=/run/secrets/{variable}");
            assert!(environment.contains(&line.as_str()), "{service}: no `{line}` in {environment:?}");
            assert!(!environment.iter().any(|entry| entry.starts_with(&format!("{variable}="))), "{environment:?}");
            let file = folder.join(variable);
            let metadata = fs_err::metadata(&file).unwrap();
            assert_eq!((metadata.mode() & 0o7777, metadata.uid()), (0o400, uid), "{service}: {}", file.display());
        }
        let redis_url = folder.join("REDIS_URL");
        if redis_url.exists() {
            let url = fs_err::read_to_string(&redis_url).unwrap();
            assert_eq!(url, format!("redis://:{}@redis:6379", secrets["REDIS_PASSWORD"]), "the whole value");
        }
    }

    // The rendered compose file, and what docker-compose makes of it.
    let out = project.sandbox.path("rendered-secrets");
    project.ctl_ok(&["render", "--out", out.to_str().unwrap()]);
    let compose_file = out.join("docker-compose.yml");
    let rendered = fs_err::read_to_string(&compose_file).unwrap();
    assert_holds_none(&secrets, &rendered, "the rendered compose file");
    let config = Command::new(require_tool("docker-compose"))
        .arg("-p")
        .arg(&project.name)
        .arg("-f")
        .arg(&compose_file)
        .arg("--env-file")
        .arg(project.sandbox.path("secrets.env"))
        .arg("config")
        .output()
        .expect("run docker-compose");
    assert!(config.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&config.stderr));
    let resolved = String::from_utf8_lossy(&config.stdout);
    assert!(resolved.contains("REDIS_URL_FILE: /run/secrets/REDIS_URL"), "{resolved}");
    assert_holds_none(&secrets, &resolved, "`docker-compose config`");

    // The host's process list: every container's processes are in it. The fake Gemini server
    // (`fake-gemini`) is the test's, not the stack's: it is given the key it accepts on its
    // command line.
    let processes = Command::new("ps").args(["-eo", "args"]).output().expect("run ps");
    let processes = String::from_utf8_lossy(&processes.stdout);
    assert!(processes.contains("redis-server"), "the stack's redis is in the list:\n{processes}");
    for line in processes.lines().filter(|line| !line.contains("fake-gemini")) {
        for (name, value) in &secrets {
            // The program only: the rest of the line holds the value.
            let program = line.split_whitespace().next().unwrap_or_default();
            assert!(!line.contains(value.as_str()), "the value of `{name}` is in the arguments of `{program}`");
        }
    }
}

pub(super) fn rotate(stack: &mut LocalStack) {
    let project = &stack.project;
    let before = secret_values(project);
    let folders_before: BTreeMap<&str, PathBuf> = SECRET_VARIABLES
        .iter()
        .map(|(service, _)| {
            (*service, secrets_folder(&inspect("container", &project.container(service)).expect("the container")))
        })
        .collect();

    let generated = project.ctl_ok(&["--json", "secrets", "generate", "--force", "REDIS_PASSWORD"]).json();
    let outcomes: BTreeMap<String, String> = generated["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["name"].as_str().unwrap().to_owned(), entry["outcome"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(outcomes["REDIS_PASSWORD"], "regenerated", "{generated:#}");
    assert_eq!(outcomes["JWT_SECRET"], "kept", "{generated:#}");
    let after = secret_values(project);
    assert_ne!(after["REDIS_PASSWORD"], before["REDIS_PASSWORD"]);
    let unchanged = |name: &str| after[name] == before[name];
    assert!(unchanged("JWT_SECRET") && unchanged("DATABASE_URL") && unchanged("GEMINI_API_KEY"));

    // The plan recreates exactly the services that read REDIS_PASSWORD, because of their env.
    let actions = |document: &Value| -> BTreeMap<String, Value> {
        document["plan"]["services"]
            .as_array()
            .unwrap_or_else(|| panic!("a plan: {document:#}"))
            .iter()
            .map(|step| (step["service"].as_str().unwrap().to_owned(), json!([step["action"], step["reasons"]])))
            .collect()
    };
    let expected: BTreeMap<String, Value> = [
        ("redis", json!(["recreate", ["env"]])),
        ("api", json!(["recreate", ["env"]])),
        ("worker", json!(["recreate", ["env"]])),
        ("app", json!(["keep", []])),
        ("vitrine", json!(["keep", []])),
    ]
    .into_iter()
    .map(|(service, action)| (service.to_owned(), action))
    .collect();
    let plan = project.ctl_ok(&["--json", "deploy", "--plan", "--no-build"]).json();
    assert_eq!(actions(&plan), expected, "{plan:#}");

    let deployed = project.ctl(&["--json", "deploy", "--no-build"]);
    assert_eq!(deployed.code, 0, "the deploy after the rotation failed:\n{deployed}");
    assert_eq!(actions(&deployed.json()), expected, "{deployed}");
    project.wait_healthy(Duration::from_secs(120));

    // New files in place, the old ones gone, the new password in them.
    for (service, old_folder) in &folders_before {
        let folder = secrets_folder(&inspect("container", &project.container(service)).expect("the container"));
        assert_ne!(&folder, old_folder, "{service} got a new version of its files");
        assert!(!old_folder.exists(), "{service}'s old files {} are removed", old_folder.display());
        let file = if *service == "redis" { "REDIS_PASSWORD" } else { "REDIS_URL" };
        let value = fs_err::read_to_string(folder.join(file)).unwrap();
        assert!(value.contains(&after["REDIS_PASSWORD"]), "{service}'s {file} holds the new password");
    }
    check(stack);

    // The stack works with the new password: an execution is queued by the api (Redis) and
    // completed by the worker (Redis).
    let project = &stack.project;
    let email = format!("rotation-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "rotation horse battery staple";
    // The api reads DATABASE_URL_FILE for `user add` too.
    add_user_as(project, &email, password);
    let client = project.client(false);
    let token = log_in_as(&client, project, &email, password);
    let id = crate::stack::start_execution(&client, project, &token, &["a rotated lighthouse".to_owned()]);
    let done = wait_execution(&client, project, &token, &id, Duration::from_secs(90), "finished", |state| {
        state["status"] == "completed" || state["status"] == "failed"
    });
    assert_eq!(done["status"], "completed", "{done}");
}
