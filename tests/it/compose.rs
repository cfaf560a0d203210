//! The rendered compose file is valid for docker-compose and says what deploy will create.

use std::process::Command;

use masstock_tests::require_tool;

use crate::sandbox::RenderedSandbox;

#[test]
fn rendered_compose_file_passes_docker_compose_config() {
    for base in ["production", "local"] {
        let sandbox = RenderedSandbox::new(base);
        let compose_file = sandbox.path("out/docker-compose.yml");
        let env_file = sandbox.path("secrets.env");
        let project = format!("masstock-e2e-{}", std::process::id());
        let run = |extra: &[&str]| {
            Command::new(require_tool("docker-compose"))
                .arg("-p")
                .arg(&project)
                .arg("-f")
                .arg(&compose_file)
                .arg("--env-file")
                .arg(&env_file)
                .arg("config")
                .args(extra)
                .output()
                .expect("run docker-compose")
        };
        let quiet = run(&["-q"]);
        let stderr = String::from_utf8_lossy(&quiet.stderr);
        assert!(quiet.status.success(), "docker-compose config -q failed for `{base}`:\n{stderr}");
        assert!(!stderr.contains("WARNING"), "docker-compose warns for `{base}`:\n{stderr}");

        let resolved = run(&[]);
        let text = String::from_utf8_lossy(&resolved.stdout);
        assert!(text.contains("container_name: masstock_api"), "{text}");
        assert!(text.contains("condition: service_healthy"), "{text}");
        assert!(text.contains("restart: unless-stopped"), "{text}");
        let published = format!("- 127.0.0.1:{}:3000/tcp", sandbox.api_port);
        assert!(text.contains(&published), "ports stay on loopback: {text}");
        assert!(text.contains("name: masstock_network"), "{text}");
        // Secrets reach the containers as files deploy writes, never through compose: neither the
        // rendered file nor what compose makes of it (the env file given or not) holds a value.
        assert!(text.contains("REDIS_URL_FILE: /run/secrets/REDIS_URL"), "{text}");
        assert!(!text.contains("REDIS_URL: "), "{text}");
        let secrets_mount = "/secrets/masstock/api/current:/run/secrets:ro";
        assert!(text.contains(secrets_mount), "the api mounts its secret files read-only: {text}");
        assert!(!text.contains("e2e-secret-"), "no secret value in `docker-compose config`: {text}");
        let without_env_file = Command::new(require_tool("docker-compose"))
            .arg("-p")
            .arg(&project)
            .arg("-f")
            .arg(&compose_file)
            .arg("config")
            .output()
            .expect("run docker-compose");
        let stderr = String::from_utf8_lossy(&without_env_file.stderr);
        assert!(without_env_file.status.success(), "compose needs no env file for `{base}`:\n{stderr}");
        assert_eq!(String::from_utf8_lossy(&without_env_file.stdout), text, "nothing is interpolated");
        // Each service mounts its own secrets and no other's.
        let api = text.split("\n  app:").next().unwrap_or_default();
        assert!(!api.contains("GEMINI_API_KEY"), "the API gets no Gemini key: {api}");
        let rendered = fs_err::read_to_string(&compose_file).unwrap();
        assert!(!rendered.contains("e2e-secret-"), "no secret value in the rendered file");
        assert_eq!(text.contains("masstock_n8n"), base == "production", "n8n runs in production only");
    }
}

/// Names YAML would read as booleans or null stay strings: a service `on`, a variable `NO`.
#[test]
fn yaml_keywords_as_names_stay_names() {
    let sandbox = RenderedSandbox::with_overrides(
        "local",
        r#"
        [services.on]
        image = "busybox:1.36"
        command = ["sleep", "infinity"]
        [services.api.env]
        NO = "1"
        "#,
    );
    let output = Command::new(require_tool("docker-compose"))
        .arg("-f")
        .arg(sandbox.path("out/docker-compose.yml"))
        .arg("--env-file")
        .arg(sandbox.path("secrets.env"))
        .arg("config")
        .output()
        .expect("run docker-compose");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // docker-compose 1.29 quotes what would otherwise read as a boolean.
    assert!(text.contains("\n  \"on\":\n"), "service `on` kept: {text}");
    assert!(text.contains("\"NO\": '1'"), "variable `NO` kept: {text}");
    assert!(!text.contains("false:") && !text.contains("True:"), "{text}");
}
