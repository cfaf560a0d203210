//! `--help` of every command, as operators read it.

use crate::support::Sandbox;

#[test]
fn help_texts() {
    let sandbox = Sandbox::new();
    for args in [
        &["--help"][..],
        &["config", "check", "--help"],
        &["render", "--help"],
        &["secrets", "generate", "--help"],
        &["completions", "--help"],
    ] {
        let run = sandbox.run(args);
        assert_eq!(run.status, 0, "{}", run.transcript());
        insta::assert_snapshot!(args.join("_").replace("--", ""), run.stdout);
    }
}

#[test]
fn bad_usage_exits_2() {
    let run = Sandbox::new().run(&["render"]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("--out <DIR>"), "{}", run.stderr);
    assert_eq!(Sandbox::new().run(&["no-such-command"]).status, 2);
}
