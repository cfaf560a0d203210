//! The day the backups are needed: the stack destroyed (`down --volumes`: Redis, uploads and logs
//! gone; the database dropped and created again empty, as a new managed PostgreSQL would come),
//! deployed again (an empty stack: the user cannot even log in), then `restore --yes redis uploads
//! postgres`: safety snapshots first, every figure checked, and through the API every execution
//! and every result image back, the jobs that waited at backup time processed by the worker.
//!
//! Then a restore interrupted by SIGINT once it has stopped redis (after its safety snapshots):
//! the safety snapshots it took are listed by `backup ls`, and the services run again.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use masstock_tests::workspace_root;

use super::stored::COMPONENTS;
use super::workload::{can_log_in, Workload};
use super::{snapshots, Witness};
use crate::stack::{inspect, LocalStack, Project, Run};

pub(super) fn destroy_and_restore(stack: &LocalStack, witness: &Witness, workload: &Workload) {
    let project = &stack.project;
    witness.ctl_ok(project, &["--json", "down", "--volumes"]);
    let runtime = runtime();
    let (admin, database) = admin_and_database(project);
    runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&admin).await.expect("connect to the postgres database");
        sqlx::query(&format!("drop database if exists {database} with (force)")).execute(&pool).await.unwrap();
        sqlx::query(&format!("create database {database}")).execute(&pool).await.unwrap();
    });
    witness.ctl_ok(project, &["--json", "deploy", "--cargo-profile", "dev"]);
    project.wait_healthy(Duration::from_secs(180));
    assert!(!can_log_in(project, workload.email()), "the destroyed stack knows no user");

    let before = snapshots(witness, project).len();
    let run = witness.ctl(project, &["--json", "restore", "--yes", "redis", "uploads", "postgres"]);
    assert_eq!(run.code, 0, "the restore succeeds:\n{run}");
    let report = run.json();
    assert_eq!(report["ok"], true, "{report}");
    let safety = report["safety_snapshots"].as_array().expect("safety_snapshots");
    assert!(!safety.is_empty(), "what a restore replaces is kept first: {report}");
    let listed = snapshots(witness, project);
    for taken in safety {
        let id = taken["snapshot"].as_str().expect("a snapshot id");
        let entry = listed
            .iter()
            .find(|entry| entry["id"] == id || entry["short_id"] == id)
            .unwrap_or_else(|| panic!("`backup ls` lists the safety snapshot {id}: {listed:?}"));
        assert_eq!(entry["kind"], "safety", "{entry}");
    }
    assert_eq!(listed.len(), before + safety.len(), "the safety snapshots, and nothing else, were added");
    let components = report["components"].as_array().expect("components");
    let names: Vec<&str> = components.iter().filter_map(|component| component["component"].as_str()).collect();
    assert_eq!(sorted(names), COMPONENTS.to_vec(), "{report}");
    for component in components {
        assert_eq!(component["ok"], true, "{component}");
        for figure in component["figures"].as_array().expect("figures") {
            assert_eq!(figure["ok"], true, "{figure}");
            assert_eq!(figure["recorded"], figure["restored"], "{figure}");
        }
    }

    project.wait_healthy(Duration::from_secs(180));
    workload.verify(project);
}

pub(super) fn interrupted(stack: &LocalStack, witness: &Witness) {
    let project = &stack.project;
    let safety_before = safety_snapshots(witness, project);
    let config = project.sandbox.path("deploy.toml");
    let child = Command::new(&project.ctl)
        .arg("--config")
        .arg(&config)
        .args(["--env", "e2e", "--no-progress", "--json", "restore", "--yes", "redis", "uploads", "postgres"])
        .current_dir(workspace_root())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run masstockctl restore");
    let pid = child.id().to_string();
    // Midway: once it stops redis, which it does after the safety snapshots (the worker and the
    // api are stopped before them, so nothing writes while they are taken) and before putting
    // anything back.
    let redis = project.container("redis");
    let started = Instant::now();
    loop {
        let running = inspect("container", &redis).is_some_and(|container| container["State"]["Running"] == true);
        if !running {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "the restore never stopped redis");
        std::thread::sleep(Duration::from_millis(50));
    }
    let signalled = Command::new("kill").args(["-INT", &pid]).status().expect("run kill");
    assert!(signalled.success(), "SIGINT reached the restore");
    let output = child.wait_with_output().expect("wait for the restore");
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    let run =
        Run { code: output.status.code().unwrap_or(-1), stdout: text(output.stdout), stderr: text(output.stderr) };
    witness.keep(&run);
    assert_ne!(run.code, 0, "an interrupted restore does not say it succeeded:\n{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");

    // What it said, for whoever reads a failure below (its secrets are checked with the rest).
    eprintln!("the interrupted restore:\n{run}");
    let safety_after = safety_snapshots(witness, project);
    assert!(
        safety_after.len() > safety_before.len(),
        "the interrupted restore's safety snapshot is listed: before {safety_before:?}, after {safety_after:?}\n{run}"
    );
    project.wait_healthy(Duration::from_secs(180));
    let worker = inspect("container", &project.container("worker")).expect("the worker");
    assert_eq!(worker["State"]["Running"], true, "the worker runs again: {}", worker["State"]);
}

/// The ids of the safety snapshots `backup ls` lists.
fn safety_snapshots(witness: &Witness, project: &Project) -> Vec<String> {
    snapshots(witness, project)
        .iter()
        .filter(|snapshot| snapshot["kind"] == "safety")
        .filter_map(|snapshot| snapshot["id"].as_str().map(str::to_owned))
        .collect()
}

fn sorted(mut names: Vec<&str>) -> Vec<&str> {
    names.sort_unstable();
    names
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

/// A URL to the server's `postgres` database, and the project's database name.
fn admin_and_database(project: &Project) -> (String, String) {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by .cargo/config.toml");
    let (server, _) = base.rsplit_once('/').expect("a database in DATABASE_URL");
    (format!("{server}/postgres"), project.name.clone())
}

/// The databases of the server whose names match the SQL pattern `like`.
pub(super) fn databases_named_like(like: &str) -> Vec<String> {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by .cargo/config.toml");
    let (server, _) = base.rsplit_once('/').expect("a database in DATABASE_URL");
    let admin = format!("{server}/postgres");
    runtime().block_on(async {
        let pool = sqlx::PgPool::connect(&admin).await.expect("connect to the postgres database");
        let names: Vec<(String,)> = sqlx::query_as("select datname from pg_database where datname like $1")
            .bind(like)
            .fetch_all(&pool)
            .await
            .expect("list the databases");
        names.into_iter().map(|(name,)| name).collect()
    })
}
