//! Bad input and faults get a clear error, exit 1 (2 for a usage error), and lose nothing; no
//! secret in what masstockctl says.
//!
//! Without a stack (only deploy.toml, the env file and restic): a repository made with another
//! password, an `sftp:` repository whose sshd does not answer (a port nobody listens on), a
//! component that does not exist. With the stack ([`full_disk`]): a repository on a tmpfs the test
//! mounts and fills to the last byte; `backup` fails saying so, and once there is room again the
//! repository checks clean.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use masstock_tests::{free_port, require_tool};

use super::{backup_layer, secret_values, sftp_layer, Restic, Witness};
use crate::stack::{LocalStack, Project};

pub(super) fn without_stack() {
    let mut project = Project::new(free_port());
    let password = format!("e2e-restic-{}", uuid::Uuid::new_v4().simple());
    project.sandbox.set_secrets(&[("RESTIC_PASSWORD", &password)]);
    let repository = project.sandbox.path("restic").display().to_string();
    project.keep_layer(&backup_layer(&repository, &project));
    let witness = Witness::default();

    // A repository that another password opens.
    let other_password = format!("another-{}", uuid::Uuid::new_v4().simple());
    Restic::with_password(&project, &repository, &[], &other_password).run(&["init"]);
    for args in [&["backup", "ls"][..], &["backup", "check"], &["restore", "--drill"]] {
        let run = witness.ctl(&project, args);
        assert_eq!(run.code, 1, "a wrong password is an error:\n{run}");
        assert!(run.stderr.to_lowercase().contains("password"), "the error says the password is wrong:\n{run}");
        assert!(!run.stderr.contains("panicked"), "{run}");
    }

    // An sftp: repository nobody answers for.
    let closed = free_port();
    project.configure(&[&sftp_layer(&project.sandbox.path("nowhere"), closed)]);
    for args in [&["backup", "ls"][..], &["backup", "check"]] {
        let started = Instant::now();
        let run = witness.ctl(&project, args);
        assert_eq!(run.code, 1, "an unreachable repository is an error:\n{run}");
        assert!(!run.stderr.trim().is_empty() && !run.stderr.contains("panicked"), "{run}");
        assert!(started.elapsed() < Duration::from_secs(90), "it gives up in time: {:?}\n{run}", started.elapsed());
    }
    project.configure(&[]);

    // A component that does not exist: a usage error, before anything is touched.
    for args in [
        &["backup", "nosuch"][..],
        &["restore", "nosuch"],
        &["restore", "--yes", "nosuch"],
        &["restore", "--drill", "nosuch"],
    ] {
        let run = witness.ctl(&project, args);
        assert_eq!(run.code, 2, "an unknown component is a usage error:\n{run}");
        assert!(run.stderr.contains("nosuch"), "the error names it:\n{run}");
    }

    let mut secrets = secret_values(&project);
    secrets.insert("the other repository's password".to_owned(), other_password);
    witness.assert_no_secret(&secrets);
}

/// A repository on a full disk: `backup` fails and says so; with room again, nothing is damaged.
pub(super) fn full_disk(stack: &mut LocalStack, witness: &Witness) {
    let mount = stack.project.sandbox.path("full");
    let tmpfs = Tmpfs::mount(&mount, "8m");
    let repository = tmpfs.path.join("restic").display().to_string();
    Restic::new(&stack.project, &repository, &[]).run(&["init"]);
    let filler = tmpfs.path.join("filler");
    fill(&filler);
    stack.project.configure(&[&format!("[backup]\nrepository = \"{repository}\"\n")]);
    let project = &stack.project;

    let run = witness.ctl(project, &["--json", "backup"]);
    assert_eq!(run.code, 1, "a backup to a full disk fails:\n{run}");
    assert!(run.stderr.contains("out of space"), "the error says the disk is full:\n{run}");
    // restic 0.14 follows some errors with Go's stack trace: not words for an operator.
    assert!(
        !run.stderr.contains("goexit") && !run.stderr.contains(".go:"),
        "a clear message, no Go stack trace:\n{run}"
    );
    assert!(!run.stderr.contains("panicked"), "{run}");

    fs_err::remove_file(&filler).expect("remove the filler");
    witness.ctl_ok(project, &["--json", "backup", "check"]);
    stack.project.configure(&[]);
    drop(tmpfs);
}

/// Writes zeros to `path` until the file system refuses more.
fn fill(path: &Path) {
    let mut file = fs_err::File::create(path).expect("create the filler");
    let chunk = vec![0_u8; 64 * 1024];
    loop {
        match file.write_all(&chunk).and_then(|()| file.sync_data()) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::StorageFull => break,
            Err(error) => panic!("filling the tmpfs failed otherwise: {error}"),
        }
    }
    // What a smaller write still fits.
    let mut small = vec![0_u8; 4096];
    while !small.is_empty() {
        if file.write_all(&small).is_err() {
            small.truncate(small.len() / 2);
        }
    }
}

/// A tmpfs of the test's, unmounted (lazily, should something still hold it) when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        fs_err::create_dir_all(path).expect("create the mount point");
        let mounted = Command::new(require_tool("mount"))
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            mounted.status.success(),
            "mount a tmpfs (the test runs as root): {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        Self { path: path.to_path_buf() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}
