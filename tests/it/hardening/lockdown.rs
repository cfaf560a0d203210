//! Issue 16, "containers locked down": every container of the deployed stack as deploy.toml's
//! `[hardening]` declares it, seen by the engine (`docker inspect`) and by the kernel
//! (`/proc/<pid>/status` of its process: no capability, `NoNewPrivs`), with its root filesystem
//! refusing a write; then the worker at its memory limit, for real.
//!
//! [`check`] leaves the stack as it found it. [`oom`] comes last: it first measures the worker's
//! peak memory with three answers at its 40 MiB answer limit in flight (what its 512 MiB are
//! sized for), then redeploys it with 48 MiB and gives it a 24 MiB image (the fake Gemini's
//! `[bloat:24]`) it cannot hold, and reads `doctor --json` until it names the OOM kill and the
//! restart. The worker keeps dying on that job's retries afterwards: the stack is left broken.

use std::process::Command;
use std::time::{Duration, Instant};

use masstock_tests::require_tool;
use masstockctl::config::Lockdown;
use serde_json::{json, Value};

use crate::stack::{add_user, inspect, log_in, start_execution, wait_execution, LocalStack, Project, Run};

/// The worker's memory in [`oom`]: enough to start and idle, far from enough for a 24 MiB image.
const SMALL_MEMORY: &str = "48m";

pub(super) fn check(stack: &LocalStack) {
    let project = &stack.project;
    let deployed = &project.sandbox.stack;
    let services: Vec<&str> = deployed.services().map(|(name, _)| name).collect();
    assert!(services.len() >= 5, "{services:?}");
    for service in &services {
        let container = project.container(service);
        let inspected = inspect("container", &container).unwrap_or_else(|| panic!("no container {container}"));
        assert_locked_down(&container, &inspected, &deployed.lockdown_of(service));
        let pid = inspected["State"]["Pid"].as_i64().expect("a running container has a pid");
        let status = fs_err::read_to_string(format!("/proc/{pid}/status")).expect("read the process's status");
        for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(status_field(&status, field), "0000000000000000", "{container}: {field} in\n{status}");
        }
        assert_eq!(status_field(&status, "NoNewPrivs"), "1", "{container}");
    }
    // The only image with a shell: its root filesystem refuses a write, its volume takes one.
    let redis = project.container("redis");
    let write = |path: &str| {
        Command::new(require_tool("docker"))
            .args(["exec", &redis, "sh", "-c", &format!("echo x > {path}")])
            .output()
            .expect("docker exec")
    };
    let refused = write("/probe");
    assert!(!refused.status.success(), "a write to redis's root filesystem succeeded");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Read-only file system"), "{refused:?}");
    let data = write("/data/probe");
    assert!(data.status.success(), "redis cannot write to its volume: {data:?}");
    let run = project.ctl(&["--json", "doctor", "--timeout", "10s"]);
    let unlocked = findings(&run, "container-");
    assert!(
        unlocked.iter().all(|id| !id.starts_with("container-unlocked") && !id.starts_with("container-oom")),
        "{run}"
    );
}

/// The engine's view of a container against the lockdown deploy.toml gives its service.
fn assert_locked_down(container: &str, inspected: &Value, lockdown: &Lockdown) {
    let host = &inspected["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], json!(true), "{container}");
    assert_eq!(host["CapDrop"], json!(["ALL"]), "{container}");
    assert!(host["CapAdd"].as_array().is_none_or(Vec::is_empty), "{container}: {}", host["CapAdd"]);
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges:true"]), "{container}");
    assert_eq!(host["Memory"], json!(lockdown.memory.bytes), "{container}");
    assert_eq!(host["MemorySwap"], host["Memory"], "{container}: no swap");
    assert_eq!(host["NanoCpus"], json!(lockdown.nano_cpus()), "{container}");
    assert_eq!(host["PidsLimit"], json!(lockdown.pids_limit), "{container}");
    assert_eq!(host["LogConfig"]["Type"], json!("json-file"), "{container}");
    assert_eq!(host["LogConfig"]["Config"]["max-size"], json!(lockdown.log_max_size.to_string()), "{container}");
    assert_eq!(host["LogConfig"]["Config"]["max-file"], json!(lockdown.log_max_file.to_string()), "{container}");
    let tmpfs: Vec<&String> = host["Tmpfs"].as_object().map(|tmpfs| tmpfs.keys().collect()).unwrap_or_default();
    let declared: Vec<&String> = lockdown.tmpfs.iter().map(|tmpfs| &tmpfs.target).collect();
    assert_eq!(tmpfs, declared, "{container}");
    // Every service runs as a user of its own (the image's, or `user` in deploy.toml), never root.
    let user = inspected["Config"]["User"].as_str().unwrap_or_default();
    let uid = user.split(':').next().unwrap_or_default();
    assert!(!uid.is_empty() && uid != "0" && uid != "root", "{container} runs as root (`{user}`)");
}

/// A field of `/proc/<pid>/status`: `CapEff:\t0000000000000000` gives `0000000000000000`.
fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map_or_else(|| panic!("no `{field}` in\n{status}"), str::trim)
}

/// The ids of `doctor --json`'s findings that start with `prefix`.
fn findings(run: &Run, prefix: &str) -> Vec<String> {
    run.json()["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings in\n{run}"))
        .iter()
        .filter_map(|finding| finding["id"].as_str())
        .filter(|id| id.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

pub(super) fn oom(stack: &LocalStack) {
    let project = &stack.project;
    let client = project.client(true);
    let token = logged_in(&client, project);
    let worker = project.container("worker");
    let limit = project.sandbox.stack.lockdown_of("worker").memory;

    // The worst case the worker is sized for: WORKER_CONCURRENCY (3) answers at its limit at once.
    let started = Instant::now();
    let executions: Vec<String> = (0..3)
        .map(|index| start_execution(&client, project, &token, &[format!("worst case {index} [bloat:28]")]))
        .collect();
    for id in &executions {
        wait_execution(&client, project, &token, id, Duration::from_secs(180), "completed", |state| {
            state["status"] == "completed"
        });
    }
    let peak = peak_rss_kib(&worker);
    eprintln!(
        "lockdown: the worker's peak RSS with three 28 MiB answers: {} MiB (limit {limit}, {:?})",
        peak / 1024,
        started.elapsed()
    );
    assert!(peak * 1024 < limit.bytes, "peak {peak} KiB is over the worker's limit {limit}");

    // The same worker with too little memory for one answer.
    let config = project.sandbox.path("deploy-oom.toml");
    let mut document: toml::Table =
        toml::from_str(&fs_err::read_to_string(project.sandbox.path("deploy.toml")).unwrap()).unwrap();
    let layer: toml::Table =
        toml::from_str(&format!("[services.worker.hardening]\nmemory = \"{SMALL_MEMORY}\"\n")).unwrap();
    let e2e = document["environments"]["e2e"].as_table_mut().expect("[environments.e2e]");
    masstockctl::config::merge(e2e, &layer);
    fs_err::write(&config, toml::to_string(&document).unwrap()).unwrap();
    let config = config.to_str().expect("a UTF-8 path");
    let ctl = |args: &[&str]| {
        project.run_masstockctl(&[&["--config", config, "--env", "e2e", "--no-progress"], args].concat())
    };
    let run = ctl(&["--json", "deploy", "--no-build", "worker"]);
    assert_eq!(run.code, 0, "deploy the worker with {SMALL_MEMORY}:\n{run}");
    let plan = run.json()["plan"]["services"].clone();
    let planned = plan.as_array().unwrap().iter().find(|service| service["service"] == "worker").cloned();
    let planned = planned.unwrap_or_else(|| panic!("no worker in the plan: {plan}"));
    assert_eq!((&planned["action"], &planned["reasons"]), (&json!("recreate"), &json!(["config"])), "{plan}");
    let memory = inspect("container", &worker).unwrap()["HostConfig"]["Memory"].clone();
    assert_eq!(memory, json!(48 << 20));

    start_execution(&client, project, &token, &["too big for the worker [bloat:24]".to_owned()]);
    let started = Instant::now();
    loop {
        let run = ctl(&["--json", "doctor", "--timeout", "10s"]);
        let document = run.json();
        let finding = document["findings"]
            .as_array()
            .and_then(|findings| findings.iter().find(|finding| finding["id"] == "container-oom:worker"))
            .cloned();
        let restarted = finding.as_ref().is_some_and(|finding| {
            finding["evidence"].as_array().is_some_and(|lines| {
                lines
                    .iter()
                    .any(|line| line.as_str().is_some_and(|line| line.starts_with("restarted: running again since")))
            })
        });
        if let (Some(finding), true) = (&finding, restarted) {
            let evidence = finding["evidence"].to_string();
            assert_eq!(finding["severity"], "warning", "{finding}");
            assert!(evidence.contains("memory limit 48 MiB"), "{finding}");
            assert!(evidence.contains("killed by the kernel's OOM killer"), "{finding}");
            assert!(finding["fix"].as_str().unwrap().contains("[services.worker.hardening]"), "{finding}");
            assert_eq!(run.code, 1, "a finding makes doctor exit 1");
            eprintln!("lockdown: doctor named the OOM kill after {:?}: {finding}", started.elapsed());
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no OOM kill and restart in doctor's findings:\n{run}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A token for the e2e user, adding the user when an earlier part did not.
fn logged_in(client: &reqwest::blocking::Client, project: &Project) -> String {
    let response = client
        .post(project.api_url("/api/v1/auth/login"))
        .json(&json!({ "email": crate::stack::EMAIL, "password": crate::stack::PASSWORD }))
        .send()
        .expect("log in through nginx");
    if response.status() != 200 {
        add_user(project);
    }
    log_in(client, project)
}

/// The peak resident memory (`VmHWM`) of a container's main process, in KiB.
fn peak_rss_kib(container: &str) -> u64 {
    let inspected = inspect("container", container).unwrap_or_else(|| panic!("no container {container}"));
    let pid = inspected["State"]["Pid"].as_i64().expect("a pid");
    let status = fs_err::read_to_string(format!("/proc/{pid}/status")).expect("read the process's status");
    let peak = status_field(&status, "VmHWM");
    peak.trim_end_matches("kB").trim().parse().unwrap_or_else(|_| panic!("VmHWM `{peak}`"))
}
