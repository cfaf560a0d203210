//! `masstockctl doctor` proves its diagnoses on one deployed local stack: each fault of the
//! troubleshooting guide is caused for real (a stopped worker with a job waiting, jobs failed on a
//! refused Gemini key, a CORS origin nginx was not rendered with, a held port, a changed Redis
//! password, Redis stopped under a crash-looping worker, an empty secret, a missing third-party
//! image, a full log disk, nginx serving a stale certificate, a certificate from a CA nobody
//! trusts, no renewal timer, an expired certificate, backups that stopped succeeding), doctor must name it with its id, evidence
//! and fix, and where the fix is a command, running it as written must clear the finding.
//!
//! Each step undoes its fault whether its assertions held or not, so one wrong diagnosis does not
//! hide the others: the test fails at the end, naming every step that did not hold.

use std::fmt;
use std::io::Write as _;
use std::net::TcpListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use masstock_tests::{free_port, require_tool, Pebble, TestCertificates};
use serde_json::{json, Value};

use crate::stack::{add_user, inspect, log_in, start_execution, wait_execution, LocalStack, Project, Run};

/// One `doctor --json` run: what it printed, and its findings.
struct Diagnosis {
    run: Run,
    findings: Vec<Value>,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "doctor found {:?}\n{}", self.ids(), self.run)
    }
}

impl Diagnosis {
    fn ids(&self) -> Vec<&str> {
        self.findings.iter().map(|finding| finding["id"].as_str().unwrap_or_default()).collect()
    }

    /// The finding with id `id`; fails with the whole run when there is none.
    fn finding(&self, id: &str) -> &Value {
        self.findings
            .iter()
            .find(|finding| finding["id"] == id)
            .unwrap_or_else(|| panic!("doctor does not name `{id}`:\n{self}"))
    }

    /// Fails with the whole run unless doctor names each of `ids`.
    fn names(&self, ids: &[&str]) {
        let missing: Vec<&&str> = ids.iter().filter(|id| !self.ids().contains(id)).collect();
        assert!(missing.is_empty(), "doctor does not name {missing:?}:\n{self}");
    }

    /// Fails with the whole run when an id starts with `prefix`.
    fn lacks(&self, prefix: &str) {
        let found: Vec<&str> = self.ids().into_iter().filter(|id| id.starts_with(prefix)).collect();
        assert!(found.is_empty(), "doctor still names {found:?}:\n{self}");
    }

    /// The ids not in `baseline` (what a healthy stack gave).
    fn new_since(&self, baseline: &[String]) -> Vec<&str> {
        self.ids().into_iter().filter(|id| !baseline.iter().any(|known| known == id)).collect()
    }

    /// Everything doctor printed, on stdout and stderr.
    fn said(&self) -> String {
        format!("{}\n{}", self.run.stdout, self.run.stderr)
    }
}

/// A finding's summary and evidence as one text.
fn described(finding: &Value) -> String {
    let evidence: Vec<&str> = finding["evidence"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    format!("{}\n{}", finding["summary"].as_str().unwrap_or_default(), evidence.join("\n"))
}

fn fix_of(finding: &Value) -> &str {
    finding["fix"].as_str().unwrap_or_default()
}

/// Runs `doctor --json` and checks the document's shape: exit 0 exactly when there is no finding,
/// each finding with a string id, summary and fix, a known severity and evidence as strings.
fn doctor(project: &Project) -> Diagnosis {
    let run = project.ctl(&["--json", "doctor"]);
    assert!(matches!(run.code, 0 | 1), "doctor exits 0 or 1:\n{run}");
    let document = run.json();
    let findings = document["findings"].as_array().unwrap_or_else(|| panic!("no `findings` array:\n{run}")).clone();
    for finding in &findings {
        let strings =
            ["id", "summary", "fix"].iter().all(|key| finding[key].as_str().is_some_and(|text| !text.is_empty()));
        let severity = finding["severity"] == "error" || finding["severity"] == "warning";
        let evidence = finding["evidence"].as_array().is_some_and(|lines| lines.iter().all(Value::is_string));
        assert!(strings && severity && evidence, "a malformed finding {finding:#}:\n{run}");
    }
    assert_eq!(run.code == 0, findings.is_empty(), "doctor exits 1 exactly when it has a finding:\n{run}");
    let diagnosis = Diagnosis { run, findings };
    let found: Vec<String> = diagnosis
        .findings
        .iter()
        .map(|finding| format!("\n  {} ({}): {}", finding["id"], finding["severity"], finding["summary"]))
        .collect();
    eprintln!("doctor e2e: doctor found {} finding(s){}", found.len(), found.concat());
    diagnosis
}

/// Runs doctor until `settled` holds; fails with its last run after `within`.
fn doctor_until(project: &Project, within: Duration, what: &str, settled: impl Fn(&Diagnosis) -> bool) -> Diagnosis {
    let started = Instant::now();
    loop {
        let diagnosis = doctor(project);
        if settled(&diagnosis) {
            return diagnosis;
        }
        assert!(started.elapsed() < within, "doctor does not {what} after {within:?}:\n{diagnosis}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Runs the masstockctl command quoted in `fix` that contains `needle` exactly as it is written
/// there (`masstockctl --config <file> --env e2e …`), as an operator pasting it would.
fn run_fix(project: &Project, fix: &str, needle: &str) -> Run {
    let command = fix
        .split('`')
        .skip(1)
        .step_by(2)
        .find(|command| command.contains(needle))
        .unwrap_or_else(|| panic!("no command with `{needle}` in backticks in the fix: {fix}"));
    let prefix = format!("masstockctl --config {} --env e2e ", project.sandbox.path("deploy.toml").display());
    assert!(command.starts_with(&prefix), "the fix's command is not `{prefix}…`: {command}");
    let mut words: Vec<&str> = command.split_whitespace().skip(1).collect();
    words.push("--no-progress");
    project.run_masstockctl(&words)
}

/// The steps whose assertions did not hold, with the first line of what they said.
#[derive(Default)]
struct Verdicts {
    failed: Vec<(String, String)>,
}

impl Verdicts {
    /// Runs one step's assertions; a failure is recorded (its whole message is printed now) and
    /// the test goes on, so that the step's fault is still undone and the next steps still run.
    fn check(&mut self, step: &str, assertions: impl FnOnce()) {
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(assertions)) {
            Ok(()) => eprintln!("doctor e2e: {step}: ok ({:.1?})", started.elapsed()),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                    .unwrap_or_default();
                eprintln!("doctor e2e: {step}: FAILED\n{message}\n");
                self.failed.push((step.to_owned(), message.lines().next().unwrap_or_default().to_owned()));
            }
        }
    }
}

/// `docker` with `args`; fails with what it said unless it succeeds.
/// Writes the backup status file `backup` and the drill keep: a backup and a drill that succeeded
/// `hours_ago`, and a later failed backup when `failed` says why; answers what it wrote.
fn backup_status_with(path: &Path, hours_ago: i64, failed: Option<&str>) -> String {
    use masstockctl::backup::status::{Run, Status};
    let now = chrono::Utc::now();
    let succeeded = Some(Run { at: now - chrono::Duration::hours(hours_ago), ok: true, summary: "stored".into() });
    let last_backup = match failed {
        Some(reason) => Some(Run { at: now - chrono::Duration::hours(1), ok: false, summary: reason.into() }),
        None => succeeded.clone(),
    };
    let drilled = Some(Run { at: now - chrono::Duration::hours(1), ok: true, summary: "every figure matches".into() });
    let status = Status {
        last_backup,
        last_successful_backup: succeeded,
        last_drill: drilled.clone(),
        last_successful_drill: drilled,
    };
    let text = serde_json::to_string_pretty(&status).unwrap();
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, &text).unwrap();
    text
}

fn docker(args: &[&str]) -> String {
    let output = Command::new(require_tool("docker")).args(args).output().expect("run docker");
    assert!(output.status.success(), "docker {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `redis-cli` inside the project's Redis, authenticated with `password`; its answer.
fn redis_cli(project: &Project, password: &str, args: &[&str]) -> String {
    let container = project.container("redis");
    let cli = ["exec", container.as_str(), "redis-cli", "--no-auth-warning", "-a", password];
    docker(&[cli.as_slice(), args].concat()).trim().to_owned()
}

/// The env file's `NAME=value` lines.
fn env_file(project: &Project) -> Vec<(String, String)> {
    fs_err::read_to_string(project.sandbox.path("secrets.env"))
        .expect("read the env file")
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

fn running(project: &Project, service: &str) -> bool {
    inspect("container", &project.container(service)).is_some_and(|container| container["State"]["Running"] == true)
}

/// A 4 MiB tmpfs mounted on a folder, unmounted when dropped (lazily if something holds it).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(folder: &Path) -> Self {
        fs_err::create_dir_all(folder).unwrap();
        let mounted = Command::new(require_tool("mount"))
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(folder)
            .output()
            .expect("run mount");
        assert!(
            mounted.status.success(),
            "mount a tmpfs on {} (the test runs as root): {}",
            folder.display(),
            String::from_utf8_lossy(&mounted.stderr)
        );
        Self(folder.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.0).status();
        if !unmounted.is_ok_and(|status| status.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one stack, deployed once, every fault in turn
fn doctor_names_each_fault_and_its_fix() {
    let (mut stack, run, _) = LocalStack::deploy();
    assert_eq!(run.code, 0, "the first deploy failed:\n{run}");
    let (gemini_port, gemini_key) = (stack.gemini_port, stack.gemini_key.clone());
    let project = &mut stack.project;
    let mut verdicts = Verdicts::default();

    // The renewal units go into the sandbox, written but not enabled: this host runs no systemd
    // (as `script/local-up` does for the local environment).
    let systemd_dir = project.sandbox.path("systemd");
    project.keep_layer(&format!("[acme]\nsystemd_dir = \"{}\"", systemd_dir.display()));
    let installed = project.ctl_ok(&["certs", "install-timer", "--no-enable"]);
    let timer = systemd_dir.join("masstock-certs.timer");
    assert!(timer.is_file(), "install-timer wrote no {}:\n{installed}", timer.display());

    // The shipped deploy.toml declares `[backup]`: a backup and a drill that succeeded an hour
    // ago, so the healthy stack has no `backup-stale`/`drill-stale` (step j' ages them).
    let backup_status = masstockctl::backup::status::path(&project.sandbox.stack);
    let fresh = backup_status_with(&backup_status, 1, None);

    // a. A healthy stack: no finding, in JSON and in text.
    let started = Instant::now();
    let healthy = doctor(project);
    eprintln!("doctor on the healthy stack took {:.1?}", started.elapsed());
    let baseline: Vec<String> = healthy.ids().into_iter().map(str::to_owned).collect();
    verdicts.check("a. healthy", || {
        assert!(healthy.findings.is_empty(), "a healthy stack has no finding:\n{healthy}");
        let text = project.ctl(&["doctor"]);
        assert_eq!(text.code, 0, "text mode:\n{text}");
        assert!(text.stderr.contains("no problem found"), "text mode says so:\n{text}");
    });
    // After a fix, "clean" means nothing beyond what the healthy stack already had (nothing,
    // when step a holds), so a wrong finding there is reported once, by step a.
    let clean_again = |project: &Project, what: &str| {
        doctor_until(project, Duration::from_secs(60), what, |diagnosis| diagnosis.new_since(&baseline).is_empty())
    };

    // b. The worker stopped while a job waits.
    docker(&["stop", &project.container("worker")]);
    add_user(project);
    let client = project.client(true);
    let token = log_in(&client, project);
    let waiting = start_execution(&client, project, &token, &["a fox drawn once the worker is back".to_owned()]);
    verdicts.check("b. worker stopped with a job waiting", || {
        let diagnosis = doctor(project);
        diagnosis.names(&["container-down:worker", "queue-no-worker"]);
        let down = diagnosis.finding("container-down:worker");
        let evidence = described(down).to_lowercase();
        assert!(evidence.contains("exit") && evidence.contains("restart"), "exit code and restart count: {down:#}");
        let no_worker = diagnosis.finding("queue-no-worker");
        let counts: Vec<u64> = described(no_worker)
            .lines()
            .filter(|line| line.contains("wait"))
            .flat_map(|line| {
                line.split(|character: char| !character.is_ascii_digit())
                    .filter_map(|number| number.parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(counts.iter().any(|count| *count >= 1), "the number of waiting jobs (at least 1): {no_worker:#}");
        assert!(described(no_worker).contains("oldest"), "the oldest job's age: {no_worker:#}");
        for finding in [down, no_worker] {
            assert!(fix_of(finding).contains("restart worker"), "the fix restarts the worker: {finding:#}");
        }
        let fixed = run_fix(project, fix_of(down), "restart worker");
        assert_eq!(fixed.code, 0, "the fix doctor names:\n{fixed}");
    });
    if !running(project, "worker") {
        project.ctl_ok(&["restart", "worker"]);
    }
    let done = wait_execution(&client, project, &token, &waiting, Duration::from_secs(120), "finished", |state| {
        state["status"] == "completed" || state["status"] == "failed"
    });
    assert_eq!(done["status"], "completed", "the waiting execution completes once the worker is back: {done}");
    verdicts.check("b. clean after `restart worker`", || {
        clean_again(project, "come back clean after the worker's restart");
    });

    // c. Jobs failed because Gemini refuses the key.
    let gemini = reqwest::blocking::Client::new();
    let settings = format!("http://127.0.0.1:{gemini_port}/_fake/settings");
    let set_key = |key: &str| {
        let answer = gemini.post(&settings).json(&json!({ "api_key": key })).send().expect("the fake's settings");
        assert!(answer.status().is_success(), "change the fake Gemini's key: {answer:?}");
    };
    set_key("something-else");
    let refused = start_execution(&client, project, &token, &["a key Gemini refuses".to_owned()]);
    let failed = wait_execution(&client, project, &token, &refused, Duration::from_secs(120), "finished", |state| {
        state["status"] == "completed" || state["status"] == "failed"
    });
    assert_eq!(failed["status"], "failed", "an execution with a refused key fails: {failed}");
    verdicts.check("c. jobs failed on the Gemini key", || {
        // The execution's verdict is written just before its job is moved to `failed`.
        let diagnosis = doctor_until(project, Duration::from_secs(15), "name `jobs-failed:gemini-key`", |diagnosis| {
            diagnosis.ids().contains(&"jobs-failed:gemini-key")
        });
        let finding = diagnosis.finding("jobs-failed:gemini-key");
        assert_eq!(finding["severity"], "warning", "{finding:#}");
        assert!(fix_of(finding).contains("queue retry --failed"), "{finding:#}");
    });
    set_key(&gemini_key);
    project.ctl_ok(&["queue", "clean", "--state", "failed", "--older-than", "0s"]);
    verdicts.check("c. clean after `queue clean`", || doctor(project).lacks("jobs-failed:"));

    // c'. A queue left paused (`queue pause` during maintenance): nothing waits yet, so a warning,
    // and its fix resumes it.
    project.ctl_ok(&["queue", "pause"]);
    verdicts.check("c'. paused queue", || {
        let diagnosis = doctor(project);
        let paused = diagnosis.finding("queue-paused");
        assert_eq!(paused["severity"], "warning", "nothing waits: {paused:#}");
        let resumed = run_fix(project, fix_of(paused), "queue resume");
        assert_eq!(resumed.code, 0, "the fix as written:\n{resumed}");
    });
    project.ctl_ok(&["queue", "resume"]);
    verdicts.check("c'. clean after `queue resume`", || doctor(project).lacks("queue-"));

    // d. deploy.toml allows an origin the edge and the api were not deployed with.
    project.configure(&["[cors]\norigins = [\"https://wrong.example\"]"]);
    verdicts.check("d. wrong CORS origin", || {
        let diagnosis = doctor(project);
        diagnosis.names(&["cors-preflight", "cors-origin-mismatch"]);
        let preflight = diagnosis.finding("cors-preflight");
        assert!(fix_of(preflight).contains("deploy"), "{preflight:#}");
        let mismatch = diagnosis.finding("cors-origin-mismatch");
        assert!(fix_of(mismatch).contains("deploy api"), "{mismatch:#}");
    });
    project.configure(&[]);
    verdicts.check("d. clean after restoring `[cors]`", || doctor(project).lacks("cors-"));

    // e. The app is down and another process holds its port.
    let app_port = project.sandbox.stack.config.services["app"].ports[0].host;
    docker(&["stop", &project.container("app")]);
    let squatter = TcpListener::bind(("127.0.0.1", app_port)).expect("hold the app's port");
    let pid = std::process::id().to_string();
    let mut app_fix = None;
    verdicts.check("e. port taken", || {
        let port_taken = format!("port-taken:{app_port}");
        let diagnosis = doctor(project);
        diagnosis.names(&["container-down:app", &port_taken]);
        let taken = diagnosis.finding(&port_taken);
        assert!(described(taken).contains(&pid), "the holder's PID {pid}: {taken:#}");
        let fix = fix_of(taken);
        assert!(fix.contains(&format!("kill {pid}")) || fix.contains("ports"), "kill it or move the port: {taken:#}");
        app_fix = Some(fix_of(diagnosis.finding("container-down:app")).to_owned());
    });
    drop(squatter);
    verdicts.check("e. `restart app` as the fix writes it", || {
        let fix = app_fix.expect("step e named the app's fix");
        let fixed = run_fix(project, &fix, "restart app");
        assert_eq!(fixed.code, 0, "the fix doctor names:\n{fixed}");
    });
    if !running(project, "app") {
        project.ctl_ok(&["restart", "app"]);
    }
    verdicts.check("e. clean after `restart app`", || {
        clean_again(project, "come back clean after the app's restart");
    });

    // f. Redis now wants another password than the env file's.
    let password = env_file(project).into_iter().find(|(name, _)| name == "REDIS_PASSWORD").expect("REDIS_PASSWORD").1;
    let other = format!("e2e-other-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(redis_cli(project, &password, &["CONFIG", "SET", "requirepass", &other]), "OK");
    verdicts.check("f. Redis refuses the password", || {
        let diagnosis = doctor(project);
        let auth = diagnosis.finding("redis-auth");
        assert!(fix_of(auth).contains("REDIS_PASSWORD"), "{auth:#}");
        let said = diagnosis.said();
        assert!(!said.contains(&password), "doctor printed the env file's Redis password:\n{diagnosis}");
        assert!(!said.contains(&other), "doctor printed the password Redis now wants:\n{diagnosis}");
    });
    assert_eq!(redis_cli(project, &other, &["CONFIG", "SET", "requirepass", &password]), "OK");
    verdicts.check("f. clean after restoring the password", || doctor(project).lacks("redis-"));

    // f'. The env file's password changed, nothing deployed: redis and its clients still agree, so
    // this is a warning about the next partial deploy, and the queue is still read.
    project.sandbox.set_secrets(&[("REDIS_PASSWORD", &other)]);
    verdicts.check("f'. the env file moved on from redis's password", || {
        let diagnosis = doctor(project);
        let changed = diagnosis.finding("redis-password-changed");
        assert_eq!(changed["severity"], "warning", "{changed:#}");
        assert!(fix_of(changed).contains("deploy redis api worker"), "{changed:#}");
        diagnosis.lacks("redis-auth");
        let said = diagnosis.said();
        assert!(!said.contains(&password) && !said.contains(&other), "a Redis password was printed:\n{diagnosis}");
    });
    project.sandbox.set_secrets(&[("REDIS_PASSWORD", &password)]);
    verdicts.check("f'. clean after restoring the env file", || doctor(project).lacks("redis-"));

    // f''. Redis is stopped, and the worker, killed, crash-loops: at start-up it cannot reach Redis.
    // Doctor names the crash loop with its restarts and last log lines, the dependency that
    // explains it and the Redis it cannot reach; the two restarts it names bring all back.
    docker(&["stop", &project.container("redis")]);
    let mut crash_fixes = None;
    verdicts.check("f''. worker crash-looping on a stopped Redis", || {
        // Killed from the host, not through the engine, so that the restart policy applies.
        let pid = docker(&["inspect", "--format", "{{.State.Pid}}", &project.container("worker")]);
        let pid: u32 = pid.trim().parse().unwrap_or_else(|_| panic!("the worker's PID: {pid}"));
        assert!(pid > 0, "the worker is not running");
        let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).output().expect("run kill");
        assert!(killed.status.success(), "kill the worker: {}", String::from_utf8_lossy(&killed.stderr));
        // The kill was one crash; a loop is the worker failing to start, again and again.
        let restarts = || {
            docker(&["inspect", "--format", "{{.RestartCount}}", &project.container("worker")]).trim().parse::<u32>()
        };
        let started = Instant::now();
        while restarts().unwrap_or(0) < 3 {
            assert!(started.elapsed() < Duration::from_secs(120), "the worker was not restarted 3 times in 120 s");
            std::thread::sleep(Duration::from_millis(500));
        }
        let diagnosis = doctor_until(project, Duration::from_secs(30), "name the worker's crash loop", |diagnosis| {
            diagnosis.ids().contains(&"container-restarting:worker")
        });
        diagnosis.names(&["container-down:redis", "dependency-down:worker:redis", "redis-unreachable"]);
        let looping = diagnosis.finding("container-restarting:worker");
        assert_eq!(looping["severity"], "error", "it is still looping: {looping:#}");
        let looping = described(looping);
        assert!(!looping.contains(" 0 restart(s)") && !looping.contains(" 1 restart(s)"), "the restarts: {looping}");
        assert!(looping.contains("the worker cannot run"), "the worker's last log lines, with its error: {looping}");
        let dependency = diagnosis.finding("dependency-down:worker:redis");
        assert!(fix_of(dependency).contains("restart worker"), "{dependency:#}");
        crash_fixes =
            Some((fix_of(diagnosis.finding("container-down:redis")).to_owned(), fix_of(dependency).to_owned()));
    });
    verdicts.check("f''. `restart redis`, then `restart worker`, as the fixes write them", || {
        let (redis_fix, worker_fix) = crash_fixes.expect("step f'' named the fixes");
        let fixed = run_fix(project, &redis_fix, "restart redis");
        assert_eq!(fixed.code, 0, "the fix doctor names for redis:\n{fixed}");
        let fixed = run_fix(project, &worker_fix, "restart worker");
        assert_eq!(fixed.code, 0, "the fix doctor names for the worker:\n{fixed}");
    });
    // A crash-looping worker is `running` between its crashes: when the fixes did not hold, both
    // are restarted, in order, whatever they look like.
    if verdicts.failed.iter().any(|(step, _)| step.starts_with("f''")) {
        project.ctl_ok(&["restart", "redis"]);
        project.ctl_ok(&["restart", "worker"]);
    }
    verdicts.check("f''. clean after the restarts", || {
        clean_again(project, "come back clean after restarting redis and the worker");
    });

    // g. A secret the worker needs is empty in the env file.
    let secrets = env_file(project);
    project.sandbox.set_secrets(&[("GEMINI_API_KEY", "")]);
    verdicts.check("g. empty GEMINI_API_KEY", || {
        let diagnosis = doctor(project);
        let missing = diagnosis.finding("env-missing:worker");
        assert!(described(missing).contains("GEMINI_API_KEY"), "the variable is named: {missing:#}");
        assert!(fix_of(missing).contains("deploy worker"), "{missing:#}");
        let said = diagnosis.said();
        for (name, value) in secrets.iter().filter(|(_, value)| !value.is_empty()) {
            // The worker's container still holds the old key: it must not leak either.
            assert!(!said.contains(value.as_str()), "doctor printed the value of `{name}`:\n{diagnosis}");
        }
    });
    project.sandbox.set_secrets(&[("GEMINI_API_KEY", &gemini_key)]);
    verdicts.check("g. clean after restoring the secret", || doctor(project).lacks("env-missing:"));

    // g'. A third-party service enabled with an image this engine does not have, as on a host
    // that reaches no registry: doctor names the image and how to bring it without one.
    let absent = format!("{}-absent/n8n:1.70.3", project.name);
    project.configure(&[&format!(
        "[services.n8n]\nenabled = true\nimage = \"{absent}\"\nports = [{{ host = {}, container = 5678 }}]\n\
         [services.n8n.env]\nN8N_ENCRYPTION_KEY = \"e2e, not a secret\"",
        free_port()
    )]);
    verdicts.check("g'. third-party image missing", || {
        let diagnosis = doctor(project);
        diagnosis.names(&["container-missing:n8n"]);
        let missing = diagnosis.finding("image-missing:n8n");
        assert!(described(missing).contains(&absent), "the image is named: {missing:#}");
        let fix = fix_of(missing);
        assert!(fix.contains("docker load") && fix.contains("deploy n8n"), "load it, then deploy: {missing:#}");
    });
    project.configure(&[]);
    verdicts.check("g'. clean once n8n is disabled again", || doctor(project).lacks("image-missing:"));

    // h. The edge's log folder is on a full disk.
    let small = project.sandbox.path("small-disk");
    let small_disk = SmallDisk::mount(&small);
    project.configure(&[&format!("[edge]\nlog_dir = \"{}\"", small.display())]);
    let big = small.join("big.log");
    let mut file = fs_err::File::create(&big).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let full = loop {
        if let Err(error) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
            break error;
        }
    };
    assert_eq!(full.kind(), std::io::ErrorKind::StorageFull, "writing stops on a full disk: {full}");
    drop(file);
    verdicts.check("h. full log disk", || {
        let diagnosis = doctor(project);
        let low = diagnosis.finding(&format!("disk-low:{}", small.display()));
        assert_eq!(low["severity"], "error", "{low:#}");
        assert!(described(low).contains("big.log"), "the largest log is listed: {low:#}");
        assert!(fix_of(low).contains("truncate -s 0") && fix_of(low).contains("big.log"), "{low:#}");
    });
    drop(small_disk);
    project.configure(&[]);
    verdicts.check("h. clean after freeing the disk", || doctor(project).lacks("disk-low:"));

    // i. The certificate on disk is not the one nginx serves (replaced without a reload).
    let domains: Vec<String> = project.sandbox.stack.sites().map(|(_, site)| site.domain.clone()).collect();
    let (fullchain, key) = project.sandbox.stack.certificate_paths(&domains[0]);
    let lineage = fullchain.parent().and_then(Path::file_name).unwrap().to_string_lossy().into_owned();
    let replacement = TestCertificates::for_domains(&domains);
    replacement.install(&fullchain, &key);
    // The edge's CA bundle trusts both, so the edge stays verifiable once nginx serves the new one.
    let bundle = format!("{}{}", project.sandbox.certificates.ca_pem, replacement.ca_pem);
    fs_err::write(project.sandbox.path("ca.pem"), &bundle).unwrap();
    let reload = project.sandbox.stack.config.edge.reload_command.clone();
    verdicts.check("i. certificate not served", || {
        let diagnosis = doctor(project);
        for domain in &domains {
            let stale = diagnosis.finding(&format!("cert-not-served:{domain}"));
            assert!(fix_of(stale).contains(&reload.join(" ")), "the edge's reload command: {stale:#}");
        }
    });
    let reloaded = Command::new(&reload[0]).args(&reload[1..]).output().expect("reload nginx");
    assert!(reloaded.status.success(), "reload nginx: {}", String::from_utf8_lossy(&reloaded.stderr));
    verdicts.check("i. clean after the reload", || {
        doctor_until(project, Duration::from_secs(20), "stop naming `cert-not-served`", |diagnosis| {
            !diagnosis.ids().iter().any(|id| id.starts_with("cert-not-served:"))
        });
    });

    // i'. The edge's trust no longer vouches for the served certificate's CA (as after issuing
    // from a staging CA, or from a test CA since started again with a new root).
    fs_err::write(project.sandbox.path("ca.pem"), &project.sandbox.certificates.ca_pem).unwrap();
    verdicts.check("i'. certificate from an untrusted CA", || {
        let diagnosis = doctor(project);
        let untrusted = diagnosis.finding(&format!("cert-untrusted:{lineage}"));
        // Both test CAs have the same name: the verifier finds one, with another key.
        let reason = described(untrusted);
        assert!(reason.contains("(UnknownIssuer)") || reason.contains("(BadSignature)"), "the reason: {untrusted:#}");
        assert!(domains.iter().all(|domain| described(untrusted).contains(domain.as_str())), "{untrusted:#}");
        assert!(fix_of(untrusted).contains(&format!("certs renew --force {lineage}")), "{untrusted:#}");
    });
    fs_err::write(project.sandbox.path("ca.pem"), &bundle).unwrap();
    verdicts.check("i'. clean once the CA is trusted again", || doctor(project).lacks("cert-untrusted:"));

    // j. No renewal timer.
    let units = fs_err::read(&timer).unwrap();
    fs_err::remove_file(&timer).unwrap();
    verdicts.check("j. renewal timer missing", || {
        doctor(project).finding("renewal-timer-missing");
    });
    fs_err::write(&timer, units).unwrap();
    verdicts.check("j. clean after restoring the timer", || doctor(project).lacks("renewal-timer-missing"));

    // j'. The last successful backup is 30 hours old and the last run failed; the drill is fine.
    backup_status_with(&backup_status, 30, Some("restic: wrong password or no key found"));
    verdicts.check("j'. stale backups", || {
        let diagnosis = doctor(project);
        let stale = diagnosis.finding("backup-stale");
        assert_eq!(stale["severity"], "warning", "{stale:#}");
        let evidence = described(stale);
        assert!(evidence.contains("failed: restic: wrong password or no key found"), "the failed run: {stale:#}");
        assert!(evidence.contains("(1d06h ago), succeeded"), "the last success, aged: {stale:#}");
        assert!(
            fix_of(stale).contains("--env e2e backup`") && fix_of(stale).contains("backup install-timer"),
            "{stale:#}"
        );
        diagnosis.lacks("drill-stale");
    });
    fs_err::write(&backup_status, &fresh).unwrap();
    verdicts.check("j'. clean after a backup", || doctor(project).lacks("backup-stale"));

    // k. An expired certificate: Pebble issues one that lasts 8 seconds.
    let pebble = Pebble::start(project.sandbox.http_port, 8, 0);
    // The edge trusts this Pebble: what is wrong is the date alone.
    fs_err::write(project.sandbox.path("ca.pem"), format!("{bundle}{}", pebble.root_pem())).unwrap();
    project.configure(&[&format!(
        "[acme]\ndirectory = \"{directory}\"\nstaging_directory = \"{directory}\"\nca_bundle = \"{}\"",
        pebble.ca_bundle.display(),
        directory = pebble.directory,
    )]);
    let issued = project.ctl(&["certs", "issue"]);
    assert_eq!(issued.code, 0, "`certs issue` from Pebble failed:\n{issued}\n--- Pebble's log\n{}", pebble.log());
    // `certs status` exits 1 for a certificate this close to its end; its document is what counts.
    let status = project.ctl(&["--json", "certs", "status"]);
    assert!(matches!(status.code, 0 | 1), "`certs status`:\n{status}");
    let status = status.json();
    let not_after = status["certificates"]
        .as_array()
        .and_then(|certificates| certificates.iter().find(|certificate| certificate["name"] == lineage.as_str()))
        .and_then(|certificate| certificate["not_after"].as_str())
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .unwrap_or_else(|| panic!("no `not_after` for `{lineage}` in `certs status`: {status:#}"));
    // Waiting for a point in time: nothing to poll.
    let left = (not_after.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or_default();
    std::thread::sleep(left + Duration::from_secs(1));
    verdicts.check("k. expired certificate", || {
        let diagnosis = doctor(project);
        let expired = diagnosis.finding(&format!("cert-expired:{lineage}"));
        assert!(fix_of(expired).contains("certs renew"), "{expired:#}");
        diagnosis.lacks("cert-untrusted:");
        // Browsers now fail on the certificate, not on CORS: the CORS finding says which.
        let preflight = diagnosis.finding("cors-preflight");
        assert!(preflight["summary"].as_str().is_some_and(|summary| summary.contains("certificate")), "{preflight:#}");
    });

    let failed: Vec<String> =
        verdicts.failed.iter().map(|(step, first_line)| format!("{step}: {first_line}")).collect();
    assert!(failed.is_empty(), "{} step(s) failed (details above):\n{}", failed.len(), failed.join("\n"));
}
