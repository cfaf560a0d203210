//! `masstockctl secrets generate`: mode 0600, no overwrite without `--force`, values kept.

use std::os::unix::fs::PermissionsExt as _;

use crate::support::Sandbox;

fn env_value(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| line.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

#[test]
fn generates_strong_values_and_placeholders_with_mode_0600() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&["--env", "local", "secrets", "generate"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    let path = sandbox.path(".env.local");
    assert_eq!(fs_err::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let text = fs_err::read_to_string(&path).unwrap();
    let jwt = env_value(&text, "JWT_SECRET").unwrap();
    assert_eq!(jwt.len(), 128, "64 bytes, hex");
    assert!(jwt.bytes().all(|byte| byte.is_ascii_hexdigit()));
    assert_eq!(env_value(&text, "ENCRYPTION_KEY").unwrap().len(), 64, "32 bytes, hex");
    assert_eq!(env_value(&text, "REDIS_PASSWORD").unwrap().len(), 44, "32 bytes, base64");
    assert_eq!(env_value(&text, "GEMINI_API_KEY").as_deref(), Some(""));
    assert_eq!(env_value(&text, "DATABASE_URL").as_deref(), Some(""));
    // The backup repository's password: strong, URL-safe, and said to be kept elsewhere.
    let restic = env_value(&text, "RESTIC_PASSWORD").unwrap();
    assert_eq!(restic.len(), 44, "32 bytes, base64");
    assert!(restic.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_=".contains(&byte)), "{restic}");
    assert!(
        text.contains("# the restic repository's password") && text.contains("keep a copy off this host"),
        "the env file says what it is: {text}"
    );
    assert!(run.stderr.contains("keep a copy of the new RESTIC_PASSWORD"), "{}", run.transcript());
    assert!(!run.stdout.contains(&restic) && !run.stderr.contains(&restic), "{}", run.transcript());
    // Values are only printed when asked for.
    assert!(!run.stdout.contains(&jwt) && !run.stderr.contains(&jwt), "{}", run.transcript());
    insta::assert_snapshot!(run.transcript());
    // The stack now checks against the file (placeholders are warnings).
    let check = sandbox.run(&["--env", "local", "config", "check"]);
    assert_eq!(check.status, 0, "{}", check.transcript());
    assert!(check.stderr.contains("secret `GEMINI_API_KEY` is empty"), "{}", check.stderr);
}

#[test]
fn refuses_to_overwrite_and_keeps_values_with_force() {
    let sandbox = Sandbox::new();
    let path = sandbox.path(".env.local");
    fs_err::write(&path, "# mine\nJWT_SECRET=keep-me\nGEMINI_API_KEY=AIza-test\n").unwrap();
    let refused = sandbox.run(&["--env", "local", "secrets", "generate"]);
    assert_eq!(refused.status, 1, "{}", refused.transcript());
    assert!(refused.stderr.contains("already exists") && refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(fs_err::read_to_string(&path).unwrap(), "# mine\nJWT_SECRET=keep-me\nGEMINI_API_KEY=AIza-test\n");

    let forced = sandbox.run(&["--env", "local", "secrets", "generate", "--force"]);
    assert_eq!(forced.status, 0, "{}", forced.transcript());
    let text = fs_err::read_to_string(&path).unwrap();
    assert!(text.starts_with("# mine\nJWT_SECRET=keep-me\nGEMINI_API_KEY=AIza-test\n"), "{text}");
    assert_eq!(env_value(&text, "REDIS_PASSWORD").unwrap().len(), 44);
    assert_eq!(fs_err::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn force_with_names_rotates_those_generated_secrets_only() {
    let sandbox = Sandbox::new();
    let path = sandbox.path(".env.local");
    fs_err::write(&path, "JWT_SECRET=keep-me\nREDIS_PASSWORD=old-password\nDATABASE_URL=postgres://db\n").unwrap();
    let rotated = sandbox.run(&["--env", "local", "secrets", "generate", "--force", "REDIS_PASSWORD"]);
    assert_eq!(rotated.status, 0, "{}", rotated.transcript());
    let text = fs_err::read_to_string(&path).unwrap();
    assert!(text.starts_with("JWT_SECRET=keep-me\nREDIS_PASSWORD="), "{text}");
    let password = env_value(&text, "REDIS_PASSWORD").unwrap();
    assert!(password != "old-password" && password.len() == 44, "{text}");
    assert_eq!(env_value(&text, "DATABASE_URL").as_deref(), Some("postgres://db"));
    assert!(rotated.stderr.contains("REDIS_PASSWORD   generated anew"), "{}", rotated.stderr);
    assert!(!rotated.stderr.contains(&password) && !rotated.stdout.contains(&password));

    let refused = sandbox.run(&["--env", "local", "secrets", "generate", "--force", "DATABASE_URL"]);
    assert_eq!(refused.status, 2, "{}", refused.transcript());
    assert!(refused.stderr.contains("`DATABASE_URL` is not a secret masstockctl generates"), "{}", refused.stderr);
    assert!(refused.stderr.contains("regenerates JWT_SECRET, REDIS_PASSWORD, ENCRYPTION_KEY"), "{}", refused.stderr);
    assert_eq!(env_value(&fs_err::read_to_string(&path).unwrap(), "REDIS_PASSWORD").unwrap(), password);
    // A new RESTIC_PASSWORD would not open the repository: rotation goes through restic.
    let restic = sandbox.run(&["--env", "local", "secrets", "generate", "--force", "RESTIC_PASSWORD"]);
    assert_eq!(restic.status, 2, "{}", restic.transcript());
    assert!(restic.stderr.contains("`RESTIC_PASSWORD` cannot be generated anew"), "{}", restic.stderr);
    assert!(restic.stderr.contains("restic key passwd"), "{}", restic.stderr);
    let without_force = sandbox.run(&["--env", "local", "secrets", "generate", "JWT_SECRET"]);
    assert_eq!(without_force.status, 2, "{}", without_force.transcript());
}

#[test]
fn show_prints_values_on_stdout() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&["--env", "local", "secrets", "generate", "--out", "custom.env", "--show"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    let text = fs_err::read_to_string(sandbox.path("custom.env")).unwrap();
    let jwt = env_value(&text, "JWT_SECRET").unwrap();
    assert!(run.stdout.contains(&format!("JWT_SECRET={jwt}")));
}

#[test]
fn a_symlinked_env_file_is_written_through_to_its_target() {
    let sandbox = Sandbox::new();
    fs_err::create_dir(sandbox.path("secure")).unwrap();
    fs_err::write(sandbox.path("secure/real.env"), "JWT_SECRET=keep-me\n").unwrap();
    fs_err::os::unix::fs::symlink("secure/real.env", sandbox.path("link.env")).unwrap();
    let run = sandbox.run(&["--env", "local", "secrets", "generate", "--out", "link.env", "--force"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    assert!(
        fs_err::symlink_metadata(sandbox.path("link.env")).unwrap().file_type().is_symlink(),
        "the link stays a link"
    );
    let text = fs_err::read_to_string(sandbox.path("secure/real.env")).unwrap();
    assert!(text.starts_with("JWT_SECRET=keep-me\n") && env_value(&text, "REDIS_PASSWORD").is_some(), "{text}");
    assert_eq!(fs_err::metadata(sandbox.path("secure/real.env")).unwrap().permissions().mode() & 0o777, 0o600);
    let leftovers: Vec<_> = fs_err::read_dir(sandbox.path("secure"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file is left behind");
}

#[test]
fn new_folders_for_the_env_file_are_private() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&["--env", "local", "secrets", "generate", "--out", "new/folder/x.env"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    assert_eq!(fs_err::metadata(sandbox.path("new/folder")).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(fs_err::metadata(sandbox.path("new/folder/x.env")).unwrap().permissions().mode() & 0o777, 0o600);
}
