//! `logs` of several services against real containers (`containers::Project`): each line behind
//! its service's name, on the stream it was written to, each service's lines in their order.

use crate::containers::Project;

/// The lines of `text` that `prefix` starts, without it.
fn lines_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter_map(|line| line.strip_prefix(prefix)).collect()
}

#[test]
fn several_services_interleave_behind_their_names() {
    let project = Project::new().with_api_and_crashing_worker();
    project.wait_for_the_api_lines();

    // Named: api and worker. The names are padded to the longest, `worker`.
    let run = project.run(&["logs", "api", "worker", "--tail", "all"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    assert_eq!(lines_of(&run.stdout, "api    | "), ["one", "three"], "{}", run.transcript());
    assert_eq!(lines_of(&run.stdout, "worker | "), ["bye", "bye", "bye"], "{}", run.transcript());
    assert_eq!(run.stdout.lines().count(), 5, "{}", run.transcript());
    assert_eq!(run.stderr, "api    | two\n", "{}", run.transcript());

    // None named: every deployed service (redis, app and vitrine have no container here).
    let all = project.run(&["logs", "--tail", "all"]);
    assert_eq!(all.status, 0, "{}", all.transcript());
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&all.stdout), sorted(&run.stdout), "{}", all.transcript());
    assert_eq!(all.stderr, run.stderr, "{}", all.transcript());

    // A named service without a container is still an error, as with one service.
    let run = project.run(&["logs", "api", "redis"]);
    assert_eq!(run.status, 1, "{}", run.transcript());
    assert!(run.stderr.contains("service `redis` is not deployed"), "{}", run.transcript());
}
