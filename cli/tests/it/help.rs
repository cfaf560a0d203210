//! `--help` of every command and subcommand, as operators read it, and clap's own consistency
//! checks of the command tree.
//!
//! The commands are found by walking `Cli::command()`, so a new command gets its snapshot (and a
//! failing test until it is reviewed) without anyone adding it here.

use clap::CommandFactory as _;
use masstockctl::commands::Cli;

use crate::support::Sandbox;

/// The argument lists that reach every visible command: `[]`, `["config"]`, `["config", "check"]`…
fn command_paths(command: &clap::Command, path: &[String], paths: &mut Vec<Vec<String>>) {
    paths.push(path.to_vec());
    for subcommand in command.get_subcommands().filter(|subcommand| !subcommand.is_hide_set()) {
        let mut child = path.to_vec();
        child.push(subcommand.get_name().to_owned());
        command_paths(subcommand, &child, paths);
    }
}

#[test]
fn help_texts() {
    let mut paths = Vec::new();
    command_paths(&Cli::command(), &[], &mut paths);
    assert!(paths.len() > 20, "the walk found only {paths:?}");
    let sandbox = Sandbox::new();
    for path in paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let run = sandbox.run(&args);
        assert_eq!(run.status, 0, "{}", run.transcript());
        insta::assert_snapshot!(args.join("_").replace("--", ""), run.stdout);
    }
}

/// clap's checks: no two arguments with one name or short flag, defaults among possible values…
#[test]
fn the_command_tree_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn bad_usage_exits_2() {
    let run = Sandbox::new().run(&["render"]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("--out <DIR>"), "{}", run.stderr);
    assert_eq!(Sandbox::new().run(&["no-such-command"]).status, 2);
}

/// `--version` names the git revision the binary was built from.
#[test]
fn version_names_the_revision() {
    let run = Sandbox::new().run(&["--version"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .ok()
        .filter(|revision| !revision.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    assert_eq!(run.stdout, format!("masstockctl {} ({revision})\n", env!("CARGO_PKG_VERSION")));
}

/// `MASSTOCK_CONFIG` and `MASSTOCK_ENV` stand in for `--config` and `--env`; the flags win.
#[test]
fn environment_variables_stand_in_for_config_and_env() {
    let sandbox = Sandbox::new();
    let from_variable =
        sandbox.run_with_env(&["config", "check"], &[("NO_COLOR", "1"), ("MASSTOCK_CONFIG", "elsewhere.toml")]);
    assert_eq!(from_variable.status, 2, "{}", from_variable.transcript());
    assert!(from_variable.stderr.contains("elsewhere.toml"), "{}", from_variable.transcript());

    let flag_wins = sandbox.run_with_env(
        &["config", "check", "--config", "deploy.toml"],
        &[("NO_COLOR", "1"), ("MASSTOCK_CONFIG", "elsewhere.toml")],
    );
    assert_eq!(flag_wins.status, sandbox.run(&["config", "check"]).status, "{}", flag_wins.transcript());

    let environment =
        sandbox.run_with_env(&["config", "check"], &[("NO_COLOR", "1"), ("MASSTOCK_ENV", "no-such-environment")]);
    assert_eq!(environment.status, 2, "{}", environment.transcript());
    assert!(environment.stderr.contains("no-such-environment"), "{}", environment.transcript());
}
