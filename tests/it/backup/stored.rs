//! The local repository: `backup` stores each component with the figures the workload implies
//! (no env file value in any process's argv while it runs: `/proc/*/cmdline` is polled, restic
//! must be seen), `backup ls` lists them newest first, `backup check` passes, `restore` without
//! `--yes` only says what it would do, `restore --drill` passes with every figure matching and
//! leaves no labelled object or scratch database, and an unknown snapshot id is refused clearly.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use masstock_tests::workspace_root;
use serde_json::Value;

use super::workload::{waiting_jobs, Workload};
use super::{assert_no_drill_leftovers, env_values, snapshots, url_passwords, Witness};
use crate::stack::{inspect, LocalStack, Project, Run};

/// The components of the local environment (n8n is disabled there).
pub(super) const COMPONENTS: [&str; 3] = ["postgres", "redis", "uploads"];

pub(super) fn local(stack: &LocalStack, witness: &Witness, workload: &Workload) {
    let project = &stack.project;
    let (run, seen) = backup_watching_processes(project, witness);
    let stored = assert_stored(&run, workload);
    assert!(seen.contains_key("restic"), "restic ran during the backup (processes seen: {seen:?})");
    eprintln!("backup: processes seen while it ran, none with a secret in argv: {seen:?}");

    // `backup ls`: newest first, this run's snapshots with the figures `backup` reported.
    let listed = snapshots(witness, project);
    let times: Vec<&str> = listed.iter().filter_map(|snapshot| snapshot["time"].as_str()).collect();
    assert_eq!(times.len(), listed.len(), "every snapshot has a time: {listed:?}");
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "newest first: {times:?}");
    for (component, (snapshot, figures)) in &stored {
        let entry = listed
            .iter()
            .find(|entry| entry["id"] == *snapshot || entry["short_id"] == *snapshot)
            .unwrap_or_else(|| panic!("`backup ls` lists {component}'s snapshot {snapshot}: {listed:?}"));
        assert_eq!(entry["component"], *component, "{entry}");
        assert_eq!(entry["kind"], "backup", "{entry}");
        assert_eq!(entry["run"], run.json()["run"], "{entry}");
        assert_eq!(&entry["figures"], figures, "the figures recorded on the snapshot: {entry}");
    }

    witness.ctl_ok(project, &["--json", "backup", "check"]);

    // Without --yes: a plan, exit 0, nothing stopped, no safety snapshot.
    let redis_started = inspect("container", &project.container("redis")).expect("redis")["State"]["StartedAt"].clone();
    let plan = witness.ctl_ok(project, &["restore", "redis"]);
    assert!(!plan.stdout.trim().is_empty() || !plan.stderr.trim().is_empty(), "the plan says something:\n{plan}");
    assert_eq!(snapshots(witness, project).len(), listed.len(), "a plan takes no safety snapshot:\n{plan}");
    let redis_started_after =
        inspect("container", &project.container("redis")).expect("redis")["State"]["StartedAt"].clone();
    assert_eq!(redis_started, redis_started_after, "a plan restarts nothing:\n{plan}");
    assert_eq!(waiting_jobs(witness, project), workload.waiting(), "a plan changes nothing in Redis");

    // The drill: every recorded figure restored in throwaway objects, all removed.
    let drilled = witness.ctl(project, &["--json", "restore", "--drill"]);
    assert_drill_passed(&drilled, &stored);
    assert_no_drill_leftovers(project, "a drill that passed");

    // A snapshot id the repository does not hold.
    for args in [
        &["restore", "--drill", "--snapshot", "0123abcd"][..],
        &["restore", "--yes", "--snapshot", "0123abcd", "redis"],
    ] {
        let refused = witness.ctl(project, args);
        assert_eq!(refused.code, 2, "an unknown snapshot is a usage error, as an unknown component is:\n{refused}");
        assert!(refused.stderr.contains("0123abcd"), "the error names the snapshot:\n{refused}");
        assert!(!refused.stderr.contains("panicked"), "{refused}");
    }
    assert_no_drill_leftovers(project, "a drill of an unknown snapshot");
    assert_eq!(waiting_jobs(witness, project), workload.waiting(), "a refused restore changes nothing in Redis");
}

/// `backup --json` exited 0 with every component stored and the figures the workload implies;
/// each component's snapshot id and figures.
pub(super) fn assert_stored(run: &Run, workload: &Workload) -> BTreeMap<String, (String, Value)> {
    assert_eq!(run.code, 0, "`backup` stored every component:\n{run}");
    let report = run.json();
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["run"].as_str().is_some_and(|run| !run.is_empty()), "a run id: {report}");
    let components = report["components"].as_array().expect("components");
    let names: BTreeSet<&str> = components.iter().filter_map(|component| component["component"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(COMPONENTS), "the local environment's components: {report}");
    let mut stored = BTreeMap::new();
    for component in components {
        let name = component["component"].as_str().unwrap();
        assert_eq!(component["ok"], true, "{component}");
        assert!(component["error"].is_null(), "{component}");
        assert!(component["added_bytes"].is_u64() && component["total_bytes"].is_u64(), "sizes: {component}");
        assert!(component["total_bytes"].as_u64() > Some(0), "{component}");
        let figures = &component["figures"];
        let figure = |name: &str| figures[name].as_u64().unwrap_or_else(|| panic!("figure `{name}`: {component}"));
        match name {
            "postgres" => {
                assert_eq!(figure("rows.executions"), workload.executions(), "{component}");
                assert_eq!(figure("rows.execution_results"), workload.images(), "{component}");
                assert!(figure("rows.users") >= 1, "{component}");
            }
            "uploads" => {
                assert!(figure("files") >= workload.images(), "every result image is a file: {component}");
                assert!(figure("bytes") > 0, "{component}");
            }
            "redis" => {
                assert!(figure("redis.keys") > 0, "{component}");
                let waiting: u64 = ["queue.waiting", "queue.prioritized", "queue.delayed"]
                    .iter()
                    .filter_map(|name| figures[*name].as_u64())
                    .sum();
                assert_eq!(waiting, workload.waiting(), "the jobs waiting at backup time: {component}");
            }
            other => panic!("an unexpected component `{other}`"),
        }
        let snapshot = component["snapshot"].as_str().unwrap_or_else(|| panic!("a snapshot id: {component}"));
        stored.insert(name.to_owned(), (snapshot.to_owned(), figures.clone()));
    }
    stored
}

/// `restore --drill --json` exited 0, every component and every figure matching what was stored.
pub(super) fn assert_drill_passed(run: &Run, stored: &BTreeMap<String, (String, Value)>) {
    assert_eq!(run.code, 0, "the drill of a good snapshot passes:\n{run}");
    let report = run.json();
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["estimated_restore_seconds"].is_number(), "how long a real restore would take: {report}");
    let components = report["components"].as_array().expect("components");
    let names: BTreeSet<&str> = components.iter().filter_map(|component| component["component"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(COMPONENTS), "{report}");
    for component in components {
        assert_eq!(component["ok"], true, "{component}");
        let name = component["component"].as_str().unwrap();
        let figures = component["figures"].as_array().unwrap_or_else(|| panic!("figures: {component}"));
        let recorded = stored[name].1.as_object().expect("figures");
        assert_eq!(figures.len(), recorded.len(), "every recorded figure is checked: {component}");
        for figure in figures {
            assert_eq!(figure["ok"], true, "{figure}");
            assert_eq!(figure["recorded"], figure["restored"], "{figure}");
            let figure_name = figure["name"].as_str().expect("a name");
            assert_eq!(Some(&figure["recorded"]), recorded.get(figure_name), "{figure} against {recorded:?}");
        }
    }
}

/// Runs `backup --json` while polling every process's command line for the env file's values;
/// the run and how many times each command (`comm`) was seen.
///
/// A whole value of the env file may be in no process's argv, the test's own helpers aside (the
/// fake Gemini server gets its key on its command line). The password of `DATABASE_URL` is
/// the bootstrap's shared role's (other tests and benchmarks may have it in their argv), so its
/// `:password@` is looked for in masstockctl's descendants and in any process that names this
/// project's database.
pub(super) fn backup_watching_processes(project: &Project, witness: &Witness) -> (Run, BTreeMap<String, u32>) {
    let values = env_values(project);
    let passwords = url_passwords(&values);
    let config = project.sandbox.path("deploy.toml");
    let mut child = Command::new(&project.ctl)
        .arg("--config")
        .arg(&config)
        .args(["--env", "e2e", "--no-progress", "--json", "backup"])
        .current_dir(workspace_root())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run masstockctl backup");
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let mut seen = BTreeMap::new();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for masstockctl") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "`backup` still runs after 10 minutes");
        let processes = processes();
        let parents: BTreeMap<u32, u32> = processes.iter().map(|process| (process.pid, process.parent)).collect();
        for process in &processes {
            let of_backup = descends_from(process.pid, child.id(), &parents);
            // The test's own helpers (the fake Gemini has its key in its argv) are not the backup's.
            if !of_backup && descends_from(process.pid, std::process::id(), &parents) {
                continue;
            }
            for (name, value) in &values {
                assert!(
                    !process.argv.contains(value.as_str()),
                    "the value of `{name}` is in the argv of `{}`",
                    process.command
                );
            }
            if of_backup || process.argv.contains(&project.name) {
                for (name, value) in &passwords {
                    assert!(!process.argv.contains(value.as_str()), "{name} is in the argv of `{}`", process.command);
                }
            }
            if ["restic", "pg_dump", "masstockctl"].contains(&process.command.as_str()) {
                *seen.entry(process.command.clone()).or_insert(0) += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    };
    witness.keep(&run);
    (run, seen)
}

/// A process as `/proc` shows it: its `comm`, its command line (arguments joined by spaces).
struct Process {
    pid: u32,
    parent: u32,
    command: String,
    argv: String,
}

/// Whether `pid` is `ancestor` or one of its descendants.
fn descends_from(mut pid: u32, ancestor: u32, parents: &BTreeMap<u32, u32>) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        match parents.get(&pid) {
            Some(&parent) if parent != 0 => pid = parent,
            _ => return false,
        }
    }
    false
}

/// Every process now running.
fn processes() -> Vec<Process> {
    let Ok(entries) = fs_err::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            // A process may end between the listing and the reading.
            let argv = fs_err::read(entry.path().join("cmdline")).ok()?;
            let command = fs_err::read_to_string(entry.path().join("comm")).ok()?;
            let stat = fs_err::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`: the comm may hold spaces and parentheses.
            let parent = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            let argv: Vec<u8> = argv.into_iter().map(|byte| if byte == 0 { b' ' } else { byte }).collect();
            Some(Process {
                pid,
                parent,
                command: command.trim().to_owned(),
                argv: String::from_utf8_lossy(&argv).into_owned(),
            })
        })
        .collect()
}
