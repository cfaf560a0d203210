//! `masstockctl deploy` and its companions against the real engine, end to end: the whole local
//! stack deployed behind its own nginx, used through it over HTTPS, redeployed under load, broken
//! on purpose, rolled back, locked, and taken down.
//!
//! Everything is the test's own: project `mst<random>` (containers, network, volumes), image
//! repositories `mst<random>/…`, free ports, a PostgreSQL database, the fake Gemini server, an
//! nginx with its own prefix folder. [`Cleanup`] removes all of it even when an assertion fails.
//!
//! One stack walks through issue 6: health green, a no-change deploy, an execution through nginx
//! to `completed`, an api redeploy under a request loop with 0 failures, a worker redeploy in the
//! middle of an execution that still completes, an unhealthy api refused with its evidence while
//! the old one serves, rollback, the lock, a site nginx refuses, `kill -9` of the api, `down`. One
//! stack for all of it keeps the suite's time down. `stack.rs` holds what deploying such a stack
//! takes (`LocalStack`, `Project`, `Cleanup`, the API client steps), shared with `doctor.rs`, which
//! deploys a second one.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use masstock_tests::{free_port, require_tool};
use serde_json::{json, Value};

use crate::stack::{
    add_user, docker_build, inspect, log_in, project_objects, start_execution, wait_execution, Cleanup, LocalStack,
    Project,
};

const SERVICES: [&str; 5] = ["redis", "api", "app", "vitrine", "worker"];

/// The services of a deploy's `--json` plan with the action each got.
fn planned(document: &Value) -> Vec<(String, String)> {
    document["plan"]["services"]
        .as_array()
        .expect("plan.services")
        .iter()
        .map(|step| (step["service"].as_str().unwrap().to_owned(), step["action"].as_str().unwrap().to_owned()))
        .collect()
}

fn action_of(document: &Value, service: &str) -> Value {
    document["plan"]["services"]
        .as_array()
        .expect("plan.services")
        .iter()
        .find(|step| step["service"] == service)
        .cloned()
        .unwrap_or_else(|| panic!("no `{service}` in the plan: {document}"))
}

#[test]
#[allow(clippy::too_many_lines)] // one stack, deployed once, proven step by step
fn deploy_serves_redeploys_rolls_back_and_takes_down_the_stack() {
    // 1. A deploy on an empty project builds the images and creates everything, and the stack
    // is healthy.
    let (mut stack, run, full_deploy) = LocalStack::deploy();
    let gemini_port = stack.gemini_port;
    let project = &mut stack.project;
    assert_eq!(run.code, 0, "the first deploy failed:\n{run}");
    let document = run.json();
    assert_eq!(document["outcome"]["ok"], json!(true), "{document}");
    let mut actions = planned(&document);
    actions.sort();
    let mut expected: Vec<(String, String)> =
        SERVICES.iter().map(|service| ((*service).to_owned(), "create".to_owned())).collect();
    expected.sort();
    assert_eq!(actions, expected, "the first deploy creates every service");
    assert_eq!(document["plan"]["network"], "create", "{document}");
    assert_eq!(document["plan"]["edge"], "install", "{document}");
    let health = project.health();
    assert_eq!(health.json()["healthy"], json!(true), "`health` after the first deploy:\n{health}");
    for service in SERVICES {
        let container = inspect("container", &project.container(service))
            .unwrap_or_else(|| panic!("no container {} after deploy", project.container(service)));
        let labels = &container["Config"]["Labels"];
        assert_eq!(labels["com.docker.compose.project"], json!(project.name), "{service}: {labels}");
        assert_eq!(labels["com.docker.compose.service"], json!(service), "{service}: {labels}");
        assert!(labels["io.masstock.config-hash"].as_str().is_some_and(|hash| !hash.is_empty()), "{service}: {labels}");
        assert_eq!(container["State"]["Status"], "running", "{service}");
    }
    assert!(inspect("network", &format!("{}_network", project.name)).is_some(), "the project's network exists");
    for volume in ["redis_data", "logs", "uploads"] {
        assert!(inspect("volume", &format!("{}_{volume}", project.name)).is_some(), "volume {volume} exists");
    }
    // docker-compose sees the stack as its own, from the rendered compose file.
    let rendered = project.sandbox.path("rendered");
    project.ctl_ok(&["render", "--out", rendered.to_str().unwrap()]);
    let compose = Command::new(require_tool("docker-compose"))
        .args(["-p", &project.name, "-f"])
        .arg(rendered.join("docker-compose.yml"))
        .arg("--env-file")
        .arg(project.sandbox.path("secrets.env"))
        .arg("ps")
        .output()
        .expect("run docker-compose ps");
    let listed = String::from_utf8_lossy(&compose.stdout);
    assert!(compose.status.success(), "docker-compose ps: {}", String::from_utf8_lossy(&compose.stderr));
    for service in SERVICES {
        let line = listed.lines().find(|line| line.starts_with(&project.container(service)));
        assert!(line.is_some_and(|line| line.contains(" Up ")), "docker-compose ps lists {service} up:\n{listed}");
    }

    // 2. Deploying again changes nothing, and says so.
    let started = Instant::now();
    let run = project.ctl_ok(&["--json", "deploy", "--cargo-profile", "dev"]);
    let no_change_deploy = started.elapsed();
    let document = run.json();
    assert_eq!(document["plan"]["changes"], json!(false), "a second deploy plans no change: {document}");
    assert!(planned(&document).iter().all(|(_, action)| action == "keep"), "{document}");
    assert_eq!(document["outcome"]["services"], json!([]), "nothing was applied: {document}");
    let text = project.ctl_ok(&["deploy", "--no-build"]);
    assert!(text.stdout.contains("Nothing to do"), "the operator is told nothing changed:\n{text}");
    eprintln!("full deploy {full_deploy:.1?}, no-change deploy {no_change_deploy:.1?}");

    // 3. A user runs an execution through nginx over HTTPS and fetches one of its images.
    add_user(project);
    let client = project.client(true);
    let token = log_in(&client, project);
    let prompts: Vec<String> = ["a red fox", "a blue whale"].map(str::to_owned).to_vec();
    let id = start_execution(&client, project, &token, &prompts);
    let done = wait_execution(&client, project, &token, &id, Duration::from_secs(60), "completed", |state| {
        state["status"] == "completed" || state["status"] == "failed"
    });
    assert_eq!(done["status"], "completed", "{done}");
    let results = done["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "one image per prompt: {done}");
    let url = results[0]["url"].as_str().expect("a result URL");
    let url = if url.starts_with('/') { project.api_url(url) } else { url.to_owned() };
    let image = client.get(&url).bearer_auth(&token).send().expect("fetch the image through nginx");
    assert_eq!(image.status(), 200, "{url}");
    let bytes = image.bytes().unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "the result is a PNG ({} bytes)", bytes.len());

    // 4. The api is replaced under load without a failed request.
    let api_generation_2 = "[services.api.env]\nE2E_GENERATION = \"2\"";
    project.configure(&[api_generation_2]);
    let old_api = inspect("container", &project.container("api")).unwrap()["Id"].clone();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    // A new connection per request: nginx's graceful reload closes its old workers' idle
    // keep-alive connections, which a client sees as a closed connection on its next request
    // (browsers retry those). A fresh connection per request measures what matters: whether any
    // request reaching nginx fails while the api is replaced.
    let load = {
        let (client, url) = (project.client(false), project.api_url("/health"));
        let (stop, sent, failures) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&failures));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let outcome = client.get(&url).send();
                sent.fetch_add(1, Ordering::SeqCst);
                match outcome {
                    Ok(response) if response.status().is_success() => {}
                    Ok(response) => failures.lock().unwrap().push(format!("status {}", response.status())),
                    Err(error) => failures.lock().unwrap().push(format!("{error:?}")),
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let run = project.ctl(&["--json", "deploy", "--no-build"]);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    assert_eq!(run.code, 0, "the api's redeploy failed:\n{run}");
    let document = run.json();
    let api = action_of(&document, "api");
    assert_eq!((api["action"].clone(), api["reasons"].clone()), (json!("recreate"), json!(["env"])), "{document}");
    assert!(
        planned(&document).iter().all(|(service, action)| service == "api" || action == "keep"),
        "only the api changes: {document}"
    );
    let new_api = inspect("container", &project.container("api")).unwrap();
    assert_ne!(new_api["Id"], old_api, "the api container was replaced");
    assert!(
        new_api["Config"]["Env"].as_array().unwrap().contains(&json!("E2E_GENERATION=2")),
        "the new api has the new env"
    );
    let failures = failures.lock().unwrap().clone();
    let sent = sent.load(Ordering::SeqCst);
    assert!(failures.is_empty(), "{} of {sent} requests failed during the redeploy: {failures:?}", failures.len());
    assert!(sent >= 200, "only {sent} requests were sent during the redeploy");
    eprintln!("api redeploy under load: {sent} requests, 0 failed");

    // 5. The worker is replaced while it processes an execution: no prompt is lost.
    let gemini = reqwest::blocking::Client::new();
    let settings = format!("http://127.0.0.1:{gemini_port}/_fake/settings");
    let slowed = gemini.post(&settings).json(&json!({ "latency_ms": 3000 })).send().expect("slow the fake Gemini");
    assert!(slowed.status().is_success(), "slow the fake Gemini: {slowed:?}");
    let prompts: Vec<String> = (1..=6).map(|index| format!("prompt {index} of the worker's redeploy")).collect();
    let id = start_execution(&client, project, &token, &prompts);
    wait_execution(&client, project, &token, &id, Duration::from_secs(30), "processing", |state| {
        state["status"] == "processing"
    });
    let worker_generation_2 = "[services.worker.env]\nE2E_GENERATION = \"2\"";
    project.configure(&[api_generation_2, worker_generation_2]);
    let run = project.ctl(&["--json", "deploy", "--no-build"]);
    assert_eq!(run.code, 0, "the worker's redeploy failed:\n{run}");
    assert_eq!(action_of(&run.json(), "worker")["action"], "recreate", "{run}");
    let done = wait_execution(&client, project, &token, &id, Duration::from_secs(120), "finished", |state| {
        state["status"] == "completed" || state["status"] == "failed"
    });
    assert_eq!(done["status"], "completed", "the execution survives the worker's redeploy: {done}");
    let indexes: Vec<i64> = done["results"].as_array().unwrap().iter().map(|r| r["index"].as_i64().unwrap()).collect();
    assert_eq!(indexes.len(), prompts.len(), "one result per prompt, none lost: {done}");
    gemini.post(&settings).json(&json!({ "latency_ms": 0 })).send().expect("speed the fake Gemini up");

    // 6. An api that cannot become healthy is not deployed: the previous one keeps serving.
    project.configure(&[api_generation_2, worker_generation_2, "[services.api.env]\nPORT = \"3999\""]);
    let serving = inspect("container", &project.container("api")).unwrap()["Id"].clone();
    let run = project.ctl(&["deploy", "--no-build", "--timeout", "20s"]);
    assert_eq!(run.code, 1, "a deploy of an unhealthy api fails:\n{run}");
    let standby = format!("{}_standby", project.container("api"));
    for evidence in [standby.as_str(), "exit code", "OOMKilled false", "health test", "log lines", "3999"] {
        assert!(run.stderr.contains(evidence), "the failure shows `{evidence}`:\n{run}");
    }
    assert!(inspect("container", &standby).is_none(), "the failed container is gone");
    assert_eq!(inspect("container", &project.container("api")).unwrap()["Id"], serving, "the api was left as it was");
    let answer = client.get(project.api_url("/health")).send().expect("the api answers through nginx");
    assert_eq!(answer.status(), 200, "the previous api still serves");
    project.configure(&[api_generation_2, worker_generation_2]);

    // 7. A deploy of another image, then `rollback` returns to the previous one.
    let built = inspect("image", &format!("{}/api:latest", project.name)).unwrap()["Id"].clone();
    let variant = format!("{}/api-variant:1", project.name);
    docker_build(&variant, &format!("FROM {}/api:latest\nLABEL io.masstock.e2e=variant\n", project.name));
    let variant_layer = format!("[services.api]\nimage = \"{variant}\"");
    project.configure(&[api_generation_2, worker_generation_2, &variant_layer]);
    let run = project.ctl(&["--json", "deploy", "--no-build"]);
    assert_eq!(run.code, 0, "the variant's deploy failed:\n{run}");
    assert_eq!(action_of(&run.json(), "api")["reasons"], json!(["image"]), "{run}");
    let running = inspect("container", &project.container("api")).unwrap();
    assert_ne!(running["Image"], built, "the api runs the variant");
    let run = project.ctl(&["rollback", "api"]);
    assert_eq!(run.code, 0, "rollback failed:\n{run}");
    let running = inspect("container", &project.container("api")).unwrap();
    assert_eq!(running["Image"], built, "rollback returns the api to the image it ran before");
    project.configure(&[api_generation_2, worker_generation_2]);
    project.wait_healthy(Duration::from_secs(30));

    // 8. A lock left by a crashed deploy stops the next one until `lock release`.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let hostname = fs_err::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    let lock = project.sandbox.path(&format!("state/{}.deploy.lock", project.name));
    let holder = json!({ "user": "crashed-operator", "host": hostname, "pid": dead_pid, "command": "deploy", "since": "2026-01-02T03:04:05Z" });
    fs_err::create_dir_all(lock.parent().unwrap()).unwrap();
    fs_err::write(&lock, holder.to_string()).unwrap();
    let run = project.ctl(&["deploy", "--no-build"]);
    assert_eq!(run.code, 1, "a deploy while the lock is held fails:\n{run}");
    for evidence in ["crashed-operator", &dead_pid.to_string(), "no longer running", "lock release"] {
        assert!(run.stderr.contains(evidence), "the refusal names `{evidence}`:\n{run}");
    }
    project.ctl_ok(&["lock", "release"]);
    assert!(!lock.exists(), "lock release removes the lock");
    project.ctl_ok(&["deploy", "--no-build"]);

    // 9. A site nginx refuses is not installed: the previous one stays, byte for byte.
    let site = project.sandbox.stack.config.edge.site_file.clone();
    let before = fs_err::read(&site).unwrap();
    let missing = project.sandbox.path("missing-certificates").display().to_string();
    project.configure(&[api_generation_2, worker_generation_2, &format!("[acme]\ncert_dir = \"{missing}\"")]);
    let run = project.ctl(&["deploy", "--no-build"]);
    assert_eq!(run.code, 1, "a deploy of a site nginx refuses fails:\n{run}");
    assert!(run.stderr.contains("nginx refused the new site"), "{run}");
    let after = fs_err::read(&site).unwrap();
    assert!(
        after == before,
        "the previous site is not restored byte for byte; {} now holds:\n{}",
        site.display(),
        String::from_utf8_lossy(&after)
    );
    let answer = client.get(project.api_url("/health")).send().expect("nginx still serves");
    assert_eq!(answer.status(), 200, "nginx still serves the api");
    project.configure(&[api_generation_2, worker_generation_2]);

    // An nginx of ours that stopped (a reboot) is started by the next deploy, though nothing
    // else changed.
    let root = project.sandbox.root().display().to_string();
    let nginx = require_tool("nginx");
    let quit = Command::new(&nginx).args(["-s", "quit", "-p", &root, "-c", &format!("{root}/nginx.conf")]).output();
    assert!(quit.unwrap().status.success(), "stop nginx");
    let edge = std::net::SocketAddr::from(([127, 0, 0, 1], project.sandbox.https_port));
    let started = Instant::now();
    while std::net::TcpStream::connect_timeout(&edge, Duration::from_millis(200)).is_ok() {
        assert!(started.elapsed() < Duration::from_secs(10), "nginx did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    project.ctl_ok(&["deploy", "--no-build"]);
    let answer = client.get(project.api_url("/health")).send().expect("deploy started nginx again");
    assert_eq!(answer.status(), 200, "nginx serves again after a deploy");

    // 10. Crash scenario 1: the api's process is killed; Docker restarts it, health is green again.
    let api = inspect("container", &project.container("api")).unwrap();
    let pid = api["State"]["Pid"].as_i64().expect("the api's host PID");
    assert!(pid > 0, "the api runs: {}", api["State"]);
    let killed = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success(), "kill -9 {pid}");
    let started = Instant::now();
    loop {
        let api = inspect("container", &project.container("api")).unwrap();
        if api["RestartCount"] == json!(1) && api["State"]["Running"] == json!(true) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "Docker did not restart the api: {}", api["State"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let recovered = project.wait_healthy(Duration::from_secs(60));
    eprintln!("health green again {recovered:.1?} after the api was restarted");

    // 11. `down` keeps the volumes; `down --volumes` removes them.
    project.ctl_ok(&["down"]);
    for service in SERVICES {
        assert!(inspect("container", &project.container(service)).is_none(), "down removes {service}");
    }
    assert!(inspect("network", &format!("{}_network", project.name)).is_none(), "down removes the network");
    for volume in ["redis_data", "logs", "uploads"] {
        assert!(inspect("volume", &format!("{}_{volume}", project.name)).is_some(), "down keeps volume {volume}");
    }
    project.ctl_ok(&["down", "--volumes"]);
    for volume in ["redis_data", "logs", "uploads"] {
        assert!(inspect("volume", &format!("{}_{volume}", project.name)).is_none(), "down --volumes removes {volume}");
    }
}

/// `deploy --plan` on a project with nothing deployed: every service is to be created, and the
/// engine is left untouched.
#[test]
fn deploy_plan_on_an_empty_project_lists_creations_and_changes_nothing() {
    let mut project = Project::new(free_port());
    let _cleanup = Cleanup::of(&project);
    // The plan only inspects images: one empty image stands for all of them.
    let image = format!("{}/empty:1", project.name);
    docker_build(&image, "FROM scratch\nLABEL io.masstock.e2e=empty\n");
    let layers: Vec<String> =
        SERVICES.iter().map(|service| format!("[services.{service}]\nimage = \"{image}\"")).collect();
    project.configure(&layers.iter().map(String::as_str).collect::<Vec<_>>());
    let run = project.ctl_ok(&["--json", "deploy", "--plan", "--no-build"]);
    let document = run.json();
    let mut actions = planned(&document);
    actions.sort();
    let mut expected: Vec<(String, String)> =
        SERVICES.iter().map(|service| ((*service).to_owned(), "create".to_owned())).collect();
    expected.sort();
    assert_eq!(actions, expected, "every service is to be created: {document}");
    assert_eq!(document["plan"]["changes"], json!(true), "{document}");
    assert_eq!(document["plan"]["network"], "create", "{document}");
    assert_eq!(document["outcome"], Value::Null, "nothing was applied: {document}");
    for kind in ["container", "network", "volume"] {
        assert_eq!(project_objects(kind, &project.name), Vec::<String>::new(), "the plan created a {kind}");
    }
    assert!(!project.sandbox.stack.config.edge.site_file.exists(), "the plan installed no nginx site");
    assert!(!project.sandbox.path(&format!("state/{}.deploy.lock", project.name)).exists(), "no lock left");
}
