//! An `sftp:` repository on this machine's own sshd (the bootstrap's, on 127.0.0.1:2222, its host
//! key checked through `UserKnownHostsFile`): `backup` and a drill pass there too. Then the
//! repository is tampered with, as an attacker or a failing disk would: a snapshot's recorded
//! figure changed with `restic tag` makes the drill fail and name the figure; packs corrupted
//! under `data/` make `backup check` and the drill fail clearly. Every drill, failed or not,
//! leaves nothing behind. deploy.toml goes back to the local repository afterwards.

use super::stored::assert_drill_passed;
use super::{assert_no_drill_leftovers, sftp_command, sftp_layer, snapshots, Restic, Witness, SSHD_PORT};
use crate::stack::LocalStack;

pub(super) fn sftp(stack: &mut LocalStack, witness: &Witness) {
    let path = stack.project.sandbox.path("sftp-restic");
    stack.project.configure(&[&sftp_layer(&path, SSHD_PORT)]);
    let project = &stack.project;

    // A new repository after the stack's first backup: created only when asked (`--init`), since
    // a missing one is otherwise an unmounted disk or a lost backend.
    let missing = witness.ctl(project, &["--json", "backup"]);
    assert_eq!(
        missing.code, 1,
        "a backup to a repository that is not there fails:
{missing}"
    );
    assert!(
        missing.stdout.contains("--init"),
        "the error says how to create it:
{missing}"
    );
    let run = witness.ctl(project, &["--json", "backup", "--init"]);
    // The figures were checked against the workload on the local repository; here, that they match
    // the drill's.
    let stored = assert_stored_figures(&run);
    let drilled = witness.ctl(project, &["--json", "restore", "--drill"]);
    assert_drill_passed(&drilled, &stored);
    assert_no_drill_leftovers(project, "a drill from the sftp: repository");

    // A recorded figure changed in the repository: the drill says which, recorded against restored.
    let restic = Restic::new(
        project,
        &format!("sftp:root@127.0.0.1:{}", path.display()),
        &[("sftp.command", &sftp_command(SSHD_PORT))],
    );
    let redis = snapshots(witness, project)
        .into_iter()
        .find(|snapshot| snapshot["component"] == "redis" && snapshot["kind"] == "backup")
        .expect("a redis snapshot");
    let snapshot = redis["id"].as_str().expect("an id").to_owned();
    let tag = restic
        .tags(&snapshot)
        .into_iter()
        .find(|tag| tag.starts_with("figure:redis.keys="))
        .unwrap_or_else(|| panic!("the snapshot records `redis.keys`: {redis}"));
    let keys: u64 = tag["figure:redis.keys=".len()..].parse().expect("a count");
    restic.run(&["tag", "--remove", &tag, "--add", &format!("figure:redis.keys={}", keys + 1), &snapshot]);
    let tampered = witness.ctl(project, &["--json", "restore", "--drill"]);
    assert_eq!(tampered.code, 1, "a drill of a tampered snapshot fails:\n{tampered}");
    let expected = format!("figure `redis.keys`: recorded {}, restored {keys}", keys + 1);
    assert!(tampered.stderr.contains(&expected), "the drill names the figure (`{expected}`):\n{tampered}");
    assert_eq!(tampered.json()["ok"], false, "{tampered}");
    assert_no_drill_leftovers(project, "a drill that found a tampered figure");

    // Packs corrupted on the repository's disk (the first bytes of each: blobs no longer decrypt).
    let mut corrupted = 0;
    for pack in walk(&path.join("data")) {
        let mut bytes = fs_err::read(&pack).expect("read a pack");
        let end = bytes.len().min(64);
        bytes[..end].fill(0);
        fs_err::set_permissions(&pack, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod a pack");
        fs_err::write(&pack, bytes).expect("corrupt a pack");
        corrupted += 1;
    }
    assert!(corrupted > 0, "the repository has packs under data/");
    let checked = witness.ctl(project, &["--json", "backup", "check"]);
    assert_eq!(checked.code, 1, "`backup check` finds the damage:\n{checked}");
    assert!(!checked.stderr.trim().is_empty() && !checked.stderr.contains("panicked"), "{checked}");
    let drilled = witness.ctl(project, &["--json", "restore", "--drill"]);
    assert_eq!(drilled.code, 1, "a drill of a damaged repository fails:\n{drilled}");
    assert!(!drilled.stderr.trim().is_empty() && !drilled.stderr.contains("panicked"), "{drilled}");
    assert_no_drill_leftovers(project, "a drill of a damaged repository");

    stack.project.configure(&[]);
}

/// `backup --json` stored every component; their snapshots and figures (not compared with the
/// workload: the local part did).
fn assert_stored_figures(run: &crate::stack::Run) -> std::collections::BTreeMap<String, (String, serde_json::Value)> {
    assert_eq!(run.code, 0, "`backup` to the sftp: repository:\n{run}");
    let report = run.json();
    let components = report["components"].as_array().expect("components");
    components
        .iter()
        .map(|component| {
            assert_eq!(component["ok"], true, "{component}");
            (
                component["component"].as_str().expect("a name").to_owned(),
                (component["snapshot"].as_str().expect("an id").to_owned(), component["figures"].clone()),
            )
        })
        .collect()
}

/// Every file below `folder`.
fn walk(folder: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in fs_err::read_dir(folder).expect("list a folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
