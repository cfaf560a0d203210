//! `masstockctl completions`.

use crate::support::Sandbox;

#[test]
fn completion_scripts_name_the_commands() {
    let sandbox = Sandbox::new();
    for (shell, marker) in
        [("bash", "complete -F"), ("zsh", "#compdef masstockctl"), ("fish", "complete -c masstockctl")]
    {
        let run = sandbox.run(&["completions", shell]);
        assert_eq!(run.status, 0, "{}", run.transcript());
        assert!(run.stdout.contains(marker), "{shell}: no `{marker}`");
        assert!(run.stdout.contains("render"), "{shell}: no `render`");
    }
    assert_eq!(sandbox.run(&["completions", "tcsh"]).status, 2);
}
