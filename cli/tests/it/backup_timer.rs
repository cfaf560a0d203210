//! `backup install-timer`: the units it prints, writes to `[backup] systemd_dir` and enables, and
//! what it says when systemctl cannot enable them.

use std::os::unix::fs::PermissionsExt as _;

use crate::support::{shipped_config, Sandbox};

/// The shipped deploy.toml with production's backup units in the sandbox.
fn sandbox() -> Sandbox {
    Sandbox::edited(
        "drill_schedule = \"Sun *-*-* 04:30:00\"\n",
        "drill_schedule = \"Sun *-*-* 04:30:00\"\nsystemd_dir = \"units\"\n",
    )
}

const UNITS: [&str; 4] =
    ["masstock-backup.service", "masstock-backup.timer", "masstock-drill.service", "masstock-drill.timer"];

#[test]
fn install_timer_prints_its_units() {
    let sandbox = sandbox();
    let run = sandbox.run(&["backup", "install-timer", "--print"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    assert!(!sandbox.path("units").exists(), "`--print` writes nothing");
    let transcript = run.transcript().replace(env!("CARGO_BIN_EXE_masstockctl"), "[MASSTOCKCTL]");
    insta::assert_snapshot!(transcript);

    let json = sandbox.run(&["--json", "backup", "install-timer", "--print"]);
    let document: serde_json::Value = serde_json::from_str(&json.stdout).expect("one JSON document");
    let names: Vec<&str> =
        document["units"].as_array().unwrap().iter().map(|unit| unit["name"].as_str().unwrap()).collect();
    assert_eq!(names, UNITS);
}

/// `--no-enable` writes the four units to the local environment's `backup.systemd_dir` and never
/// asks systemctl: it succeeds where there is none.
#[test]
fn install_timer_no_enable_writes_the_units_only() {
    let sandbox = sandbox();
    let empty_path = sandbox.path("no-tools");
    fs_err::create_dir(&empty_path).unwrap();
    let run = sandbox.run_with_env(
        &["--env", "local", "backup", "install-timer", "--no-enable"],
        &[("NO_COLOR", "1"), ("PATH", empty_path.to_str().unwrap())],
    );
    assert_eq!(run.status, 0, "{}", run.transcript());
    insta::assert_snapshot!(run.transcript().replace(&sandbox.path("").display().to_string(), "[SANDBOX]/"));
    let folder = sandbox.path(".masstock/local/systemd");
    for unit in UNITS {
        let path = folder.join(unit);
        assert_eq!(fs_err::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644, "{unit}");
    }
    let invocation =
        format!("{} --config {} --env local", env!("CARGO_BIN_EXE_masstockctl"), sandbox.path("deploy.toml").display());
    let backup = fs_err::read_to_string(folder.join("masstock-backup.service")).unwrap();
    assert!(backup.contains(&format!("ExecStart={invocation} backup\n")), "{backup}");
    for line in ["Type=oneshot", "Nice=10", "IOSchedulingClass=idle", "PrivateTmp=yes", "NoNewPrivileges=yes"] {
        assert!(backup.contains(&format!("\n{line}\n")), "{line}: {backup}");
    }
    let drill = fs_err::read_to_string(folder.join("masstock-drill.service")).unwrap();
    assert!(drill.contains(&format!("ExecStart={invocation} restore --drill\n")), "{drill}");
    let timer = fs_err::read_to_string(folder.join("masstock-backup.timer")).unwrap();
    assert!(timer.contains("OnCalendar=*-*-* 03:00:00\nRandomizedDelaySec=15min\nPersistent=true\n"), "{timer}");
    let timer = fs_err::read_to_string(folder.join("masstock-drill.timer")).unwrap();
    assert!(timer.contains("OnCalendar=Sun *-*-* 04:30:00\n"), "{timer}");
}

#[test]
fn install_timer_without_systemctl_names_both_timers_and_cron() {
    let sandbox = sandbox();
    let empty_path = sandbox.path("no-tools");
    fs_err::create_dir(&empty_path).unwrap();
    let run = sandbox
        .run_with_env(&["backup", "install-timer"], &[("NO_COLOR", "1"), ("PATH", empty_path.to_str().unwrap())]);
    assert_eq!(run.status, 1, "{}", run.transcript());
    assert!(
        run.stderr
            .contains("`systemctl` was not found: this host does not run systemd, so the timers cannot be enabled"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("run `masstockctl backup` daily and `masstockctl restore --drill` weekly from cron"),
        "{}",
        run.stderr
    );
    for unit in UNITS {
        assert!(sandbox.path(&format!("units/{unit}")).is_file(), "the units are written first: {unit}");
    }
}

/// A systemctl that cannot work (systemd is not PID 1): its words, and `--no-enable` as the way.
#[test]
fn install_timer_says_what_to_do_when_systemctl_fails() {
    let sandbox = sandbox();
    let tools = sandbox.path("tools");
    fs_err::create_dir(&tools).unwrap();
    let systemctl = tools.join("systemctl");
    fs_err::write(
        &systemctl,
        "#!/bin/sh\necho \"System has not been booted with systemd as init system (PID 1). Can't operate.\" >&2\nexit 1\n",
    )
    .unwrap();
    fs_err::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = sandbox.run_with_env(
        &["backup", "install-timer"],
        &[("NO_COLOR", "1"), ("PATH", &format!("{}:/usr/bin:/bin", tools.display()))],
    );
    assert_eq!(run.status, 1, "{}", run.transcript());
    assert!(run.stderr.contains("`systemctl daemon-reload` failed"), "{}", run.stderr);
    assert!(run.stderr.contains("has not been booted with systemd"), "systemctl's own words: {}", run.stderr);
    assert!(
        run.stderr.contains("`systemctl enable --now masstock-backup.timer masstock-drill.timer` starts the timers"),
        "{}",
        run.stderr
    );
}

/// A systemctl that works: daemon-reload, then both timers enabled and started in one call.
#[test]
fn install_timer_enables_both_timers() {
    let sandbox = sandbox();
    let tools = sandbox.path("tools");
    fs_err::create_dir(&tools).unwrap();
    let calls = sandbox.path("calls");
    fs_err::write(tools.join("systemctl"), format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display())).unwrap();
    fs_err::set_permissions(tools.join("systemctl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = sandbox.run_with_env(
        &["backup", "install-timer"],
        &[("NO_COLOR", "1"), ("PATH", &format!("{}:/usr/bin:/bin", tools.display()))],
    );
    assert_eq!(run.status, 0, "{}", run.transcript());
    assert_eq!(
        fs_err::read_to_string(&calls).unwrap(),
        "daemon-reload\nenable --now masstock-backup.timer masstock-drill.timer\n"
    );
    assert!(run.stdout.contains("are enabled: `backup` runs on `*-*-* 03:00:00`"), "{}", run.transcript());
}

#[test]
fn install_timer_without_a_backup_section_is_a_usage_error() {
    let mut document: toml::Table = toml::from_str(&shipped_config()).unwrap();
    document.remove("backup");
    let local = document["environments"]["local"].as_table().unwrap().clone();
    let mut local = local;
    local.remove("backup");
    document["environments"].as_table_mut().unwrap().insert("local".into(), toml::Value::Table(local));
    let sandbox = Sandbox::with_config(&toml::to_string(&document).unwrap());
    let run = sandbox.run(&["--env", "local", "backup", "install-timer", "--print"]);
    assert_eq!(run.status, 2, "{}", run.transcript());
    assert!(run.stderr.contains("deploy.toml declares no `[backup]` for environment `local`"), "{}", run.stderr);
}
