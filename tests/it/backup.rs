//! Issue 17 on one deployed stack: backups on restic proven by restoring them. Each part in its own
//! file below `backup/`, in an order where nothing destructive comes before a part that needs the
//! data intact:
//!
//! 1. `workload`: executions that produce result images, then jobs left waiting in Redis (the
//!    worker stopped through the engine);
//! 2. `stored`: `backup` to a local repository (no secret in any process's argv while it runs),
//!    `backup ls`, `backup check`, `restore` without `--yes` (a plan, nothing changed), a drill
//!    that passes and leaves nothing behind, an unknown snapshot id;
//! 3. `remote`: the same on an `sftp:` repository on the bootstrap's sshd, then a snapshot whose
//!    figure was changed in the repository (the drill names it) and packs corrupted (check and
//!    drill fail, the drill still cleans up);
//! 4. `disaster`: the stack destroyed (volumes and database), deployed again, restored: every
//!    execution and image back through the API, the waiting jobs processed; then a restore
//!    interrupted by SIGINT (a safety snapshot remains, the services run again);
//! 5. `faults::full_disk`: a repository on a full tmpfs.
//!
//! Every masstockctl run's output is kept ([`Witness`]) and checked at the end for the env file's
//! values. The faults that need no stack (wrong password, unreachable repository, unknown
//! component) are a test of their own.
//!
//! One stack for all of it keeps the suite's time down; `stack.rs` holds what deploying it takes.

mod disaster;
mod faults;
mod remote;
mod stored;
mod workload;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use masstock_tests::require_tool;
use serde_json::Value;

use crate::stack::{LocalStack, Project, Run};

/// Where `script/bootstrap` keeps the tests' sshd: its client key and `known_hosts`.
const SSHD_STATE: &str = "/var/lib/masstock-test/sshd";
/// The port the bootstrap's sshd listens on (127.0.0.1 only).
const SSHD_PORT: u16 = 2222;

#[test]
fn backups_restore_the_deployed_stack() {
    let (mut stack, run, _) = LocalStack::deploy();
    assert_eq!(run.code, 0, "the first deploy failed:\n{run}");
    stack.project.wait_healthy(Duration::from_secs(120));
    let witness = Witness::default();
    let password = format!("e2e-restic-{}", uuid::Uuid::new_v4().simple());
    stack.project.sandbox.set_secrets(&[("RESTIC_PASSWORD", &password)]);
    let local = stack.project.sandbox.path("restic");
    stack.project.keep_layer(&backup_layer(&local.display().to_string(), &stack.project));

    let workload = workload::run(&stack, &witness);
    stored::local(&stack, &witness, &workload);
    remote::sftp(&mut stack, &witness);
    disaster::destroy_and_restore(&stack, &witness, &workload);
    disaster::interrupted(&stack, &witness);
    faults::full_disk(&mut stack, &witness);

    witness.assert_no_secret(&secret_values(&stack.project));
}

#[test]
fn backup_faults_need_no_stack() {
    faults::without_stack();
}

/// `[backup]` on `repository`, the password from the env file, units written into the sandbox.
fn backup_layer(repository: &str, project: &Project) -> String {
    let systemd = project.sandbox.path("systemd");
    format!(
        r#"
        [backup]
        repository = "{repository}"
        password = "${{RESTIC_PASSWORD}}"
        systemd_dir = "{}"
        "#,
        systemd.display()
    )
}

/// restic's `sftp.command` for the bootstrap's sshd on `port`: its client key, its `known_hosts`
/// (the host key is checked), never a prompt.
fn sftp_command(port: u16) -> String {
    format!(
        "ssh -i {SSHD_STATE}/client_ed25519 -p {port} -o UserKnownHostsFile={SSHD_STATE}/known_hosts \
         -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 root@127.0.0.1 -s sftp"
    )
}

/// `[backup]` on an `sftp:` repository at `path` through the bootstrap's sshd on `port`.
fn sftp_layer(path: &Path, port: u16) -> String {
    format!(
        r#"
        [backup]
        repository = "sftp:root@127.0.0.1:{}"
        options = {{ "sftp.command" = "{}" }}
        "#,
        path.display(),
        sftp_command(port)
    )
}

/// Every masstockctl run's words, kept to be searched for secrets at the end.
#[derive(Default)]
struct Witness {
    said: RefCell<Vec<String>>,
}

impl Witness {
    fn ctl(&self, project: &Project, args: &[&str]) -> Run {
        let run = project.ctl(args);
        self.keep(&run);
        run
    }

    /// Runs masstockctl and fails the test, with what it said, unless it exits 0.
    fn ctl_ok(&self, project: &Project, args: &[&str]) -> Run {
        let run = self.ctl(project, args);
        assert_eq!(run.code, 0, "`masstockctl {}` failed:\n{run}", args.join(" "));
        run
    }

    fn keep(&self, run: &Run) {
        self.said.borrow_mut().push(run.to_string());
    }

    /// Fails, naming the secret (never its value), when any run's output holds one of `secrets`.
    fn assert_no_secret(&self, secrets: &BTreeMap<String, String>) {
        let said = self.said.borrow();
        assert!(!said.is_empty(), "no masstockctl output was kept");
        for (index, text) in said.iter().enumerate() {
            for (name, value) in secrets {
                let run = text.lines().next().unwrap_or_default();
                assert!(
                    !text.contains(value.as_str()),
                    "the value of `{name}` is in the output of run {index} ({run})"
                );
            }
        }
    }
}

/// Every value the env file sets, and for a URL with a password (`DATABASE_URL`) its
/// `:password@` too, which a client given the URL in another form would show.
fn secret_values(project: &Project) -> BTreeMap<String, String> {
    let mut values = env_values(project);
    values.extend(url_passwords(&values));
    values
}

/// Every value the env file sets.
fn env_values(project: &Project) -> BTreeMap<String, String> {
    fs_err::read_to_string(project.sandbox.path("secrets.env"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// `:password@` of each value that is a URL with a password, named after its variable.
fn url_passwords(values: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    values
        .iter()
        .filter_map(|(name, value)| {
            let (_, rest) = value.split_once("://")?;
            let (userinfo, _) = rest.split_once('@')?;
            let (_, password) = userinfo.split_once(':')?;
            (!password.is_empty()).then(|| (format!("{name} (its password)"), format!(":{password}@")))
        })
        .collect()
}

/// The restic CLI on a repository of the test, with the password from the env file through
/// `RESTIC_PASSWORD_FILE` (a 0600 file in the sandbox), as an operator would tamper with it.
struct Restic {
    repository: String,
    options: Vec<String>,
    password_file: PathBuf,
}

impl Restic {
    fn new(project: &Project, repository: &str, options: &[(&str, &str)]) -> Self {
        let password = secret_values(project).remove("RESTIC_PASSWORD").expect("RESTIC_PASSWORD in the env file");
        Self::with_password(project, repository, options, &password)
    }

    fn with_password(project: &Project, repository: &str, options: &[(&str, &str)], password: &str) -> Self {
        let password_file = project.sandbox.path(&format!("restic-password-{}", uuid::Uuid::new_v4().simple()));
        fs_err::write(&password_file, password).expect("write the password file");
        fs_err::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
        let options = options.iter().map(|(name, value)| format!("{name}={value}")).collect();
        Self { repository: repository.to_owned(), options, password_file }
    }

    /// Runs `restic <args>`; its stdout, or the test fails with what restic said.
    fn run(&self, args: &[&str]) -> String {
        let mut command = Command::new(require_tool("restic"));
        command.arg("--repo").arg(&self.repository).arg("--no-cache");
        for option in &self.options {
            command.args(["--option", option]);
        }
        let output = command
            .args(args)
            .env("RESTIC_PASSWORD_FILE", &self.password_file)
            .env_remove("RESTIC_PASSWORD")
            .stdin(Stdio::null())
            .output()
            .expect("run restic");
        assert!(
            output.status.success(),
            "`restic {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The tags of one snapshot.
    fn tags(&self, snapshot: &str) -> Vec<String> {
        let listed: Value = serde_json::from_str(&self.run(&["snapshots", "--json", snapshot])).expect("JSON");
        let tags = listed[0]["tags"].as_array().unwrap_or_else(|| panic!("snapshot `{snapshot}` has tags: {listed}"));
        tags.iter().filter_map(Value::as_str).map(str::to_owned).collect()
    }
}

/// The Docker objects and databases of this project's drills still there: a drill must leave none.
fn drill_leftovers(project: &Project) -> Vec<String> {
    let prefix = format!("{}-drill-", project.name);
    let mut left = Vec::new();
    for (kind, list, name) in [
        ("container", &["ps", "-a"][..], "{{.Names}}"),
        ("volume", &["volume", "ls"], "{{.Name}}"),
        ("network", &["network", "ls"], "{{.Name}}"),
    ] {
        let format = format!("{name}\t{{{{.Label \"io.masstock.drill\"}}}}");
        let output = Command::new(require_tool("docker"))
            .args(list)
            .args(["--filter", "label=io.masstock.drill", "--format", &format])
            .output()
            .expect("run docker");
        assert!(output.status.success(), "docker {kind} ls: {}", String::from_utf8_lossy(&output.stderr));
        let listed = String::from_utf8_lossy(&output.stdout).into_owned();
        left.extend(
            listed
                .lines()
                .filter(|line| line.split('\t').nth(1).is_some_and(|label| label.starts_with(&prefix)))
                .map(|line| format!("{kind} {line}")),
        );
    }
    let databases = disaster::databases_named_like(&format!("{}%drill%", project.name));
    left.extend(databases.into_iter().map(|database| format!("database {database}")));
    left
}

/// Fails with what remains when a drill left an object behind.
fn assert_no_drill_leftovers(project: &Project, after: &str) {
    let left = drill_leftovers(project);
    assert!(left.is_empty(), "after {after}, the drill left: {left:#?}");
}

/// The snapshots `backup ls --json` lists, newest first.
fn snapshots(witness: &Witness, project: &Project) -> Vec<Value> {
    let listed = witness.ctl_ok(project, &["--json", "backup", "ls"]).json();
    listed["snapshots"].as_array().unwrap_or_else(|| panic!("`backup ls --json` has snapshots: {listed}")).clone()
}
