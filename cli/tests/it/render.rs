//! `masstockctl render`: the files, their digests, determinism, and no secret in them.

use crate::support::Sandbox;

#[test]
fn render_json_lists_files_with_their_digests() {
    let sandbox = Sandbox::shipped();
    let run = sandbox.run(&["--json", "render", "--out", "out"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    insta::assert_snapshot!(run.stdout);
    let site = fs_err::read_to_string(sandbox.path("out/nginx/masstock.conf")).unwrap();
    let compose = fs_err::read_to_string(sandbox.path("out/docker-compose.yml")).unwrap();
    insta::assert_snapshot!("production_nginx_site", site);
    insta::assert_snapshot!("production_compose", compose);
}

#[test]
fn same_input_same_bytes() {
    let sandbox = Sandbox::new();
    let first = sandbox.run(&["--env", "local", "render", "--out", "a"]);
    let second = sandbox.run(&["--env", "local", "render", "--out", "b"]);
    assert_eq!(first.status, 0, "{}", first.transcript());
    for file in ["nginx/masstock.conf", "docker-compose.yml"] {
        let a = fs_err::read(sandbox.path(&format!("a/{file}"))).unwrap();
        let b = fs_err::read(sandbox.path(&format!("b/{file}"))).unwrap();
        assert_eq!(a, b, "{file} differs between two renders");
    }
    let digests = |run: &crate::support::Run| {
        run.stdout.lines().map(|line| line.split_whitespace().next().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(digests(&first), digests(&second));
}

#[test]
fn no_secret_value_reaches_a_rendered_file() {
    let sandbox = Sandbox::new();
    let generated = sandbox.run(&["--env", "local", "--json", "secrets", "generate", "--show"]);
    assert_eq!(generated.status, 0, "{}", generated.transcript());
    let document: serde_json::Value = serde_json::from_str(&generated.stdout).unwrap();
    let values: Vec<String> = document["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|secret| secret["value"].as_str().unwrap().to_owned())
        .filter(|value| !value.is_empty())
        .collect();
    assert_eq!(values.len(), 4, "JWT_SECRET, REDIS_PASSWORD, ENCRYPTION_KEY, RESTIC_PASSWORD");
    let run = sandbox.run(&["--env", "local", "render", "--out", "out"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    for file in ["out/nginx/masstock.conf", "out/docker-compose.yml"] {
        let text = fs_err::read_to_string(sandbox.path(file)).unwrap();
        for value in &values {
            assert!(!text.contains(value.as_str()), "{file} holds a secret value");
        }
        assert!(!run.stdout.contains(value_prefix(&values[0])) && !run.stderr.contains(value_prefix(&values[0])));
    }
    let compose = fs_err::read_to_string(sandbox.path("out/docker-compose.yml")).unwrap();
    assert!(
        compose.contains("\"REDIS_URL_FILE\": \"/run/secrets/REDIS_URL\"") && !compose.contains("${"),
        "secrets are files deploy writes, with nothing for compose to interpolate: {compose}"
    );
}

fn value_prefix(value: &str) -> &str {
    &value[..16]
}

#[test]
fn an_invalid_config_renders_nothing() {
    let sandbox = Sandbox::edited("http_port = 80\n", "http_port = -1\n");
    let run = sandbox.run(&["render", "--out", "out"]);
    assert_eq!(run.status, 2, "{}", run.transcript());
    assert!(!sandbox.path("out").exists());
}
