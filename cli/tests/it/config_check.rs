//! `masstockctl config check`: the summary of a valid file, and located errors for invalid ones.

use crate::support::{shipped_config, Sandbox};

#[test]
fn the_shipped_file_checks_clean_with_a_warning_for_the_missing_env_file() {
    for environment in ["production", "local"] {
        let run = Sandbox::new().run(&["--env", environment, "config", "check"]);
        assert_eq!(run.status, 0, "{}", run.transcript());
        insta::assert_snapshot!(format!("check_{environment}"), run.transcript());
    }
}

#[test]
fn json_summary_is_one_document() {
    let run = Sandbox::new().run(&["--json", "config", "check"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    let document: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    assert_eq!(document["valid"], true);
    assert_eq!(document["environment"], "production");
    assert_eq!(document["start_order"][0], "n8n");
    assert_eq!(document["config"]["services"]["redis"]["healthcheck"]["interval"], "10s");
    assert_eq!(document["secrets"]["env_file_exists"], false);
    assert!(run.stderr.contains("warning: env file"), "the warning goes to stderr: {}", run.stderr);
}

#[test]
fn a_local_backup_repository_is_made_absolute_and_a_backend_is_kept() {
    let run = Sandbox::new().run(&["--json", "--env", "local", "config", "check"]);
    assert_eq!(run.status, 0, "{}", run.transcript());
    let document: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    let backup = &document["config"]["backup"];
    // The sandbox's folder (deploy.toml's) is shown as `[SANDBOX]`.
    assert_eq!(backup["repository"], "[SANDBOX]/.masstock/local/backups/restic");
    assert_eq!(backup["systemd_dir"], "[SANDBOX]/.masstock/local/systemd");
    assert_eq!(backup["password"], "${RESTIC_PASSWORD}");
    assert_eq!(backup["keep_daily"], 7);
    assert!(document["secrets"]["referenced"].to_string().contains("RESTIC_PASSWORD"), "{}", document["secrets"]);

    let sandbox = Sandbox::edited(
        "repository = \".masstock/local/backups/restic\"",
        "repository = \"sftp:backup@localhost:relative/restic\"",
    );
    let run = sandbox.run(&["--json", "--env", "local", "config", "check"]);
    let document: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(document["config"]["backup"]["repository"], "sftp:backup@localhost:relative/restic");
}

/// Each invalid input exits 2 and points at the offending line.
#[test]
fn invalid_files_point_at_line_and_column() {
    let cases: &[(&str, &str, &str)] = &[
        ("unknown_key", "ports = [{ host = 3000, container = 3000 }]", "prots = [{ host = 3000, container = 3000 }]"),
        ("unknown_top_level_table", "\n[rate_limits]\n", "\n[rate_limit]\n"),
        ("wrong_type", "http_port = 80\n", "http_port = \"eighty\"\n"),
        ("bad_duration", "interval = \"10s\"", "interval = \"10 seconds\""),
        ("bad_rate", "general = \"100/60s\"", "general = \"100/minute\""),
        ("invalid_domain", "domain = \"app.masstock.fr\"", "domain = \"app..masstock.fr\""),
        ("unknown_dependency", "depends_on = { redis = \"healthy\" }", "depends_on = { rediss = \"healthy\" }"),
        (
            "dependency_cycle",
            "depends_on = { redis = \"healthy\" }",
            "depends_on = { redis = \"healthy\", worker = \"started\" }",
        ),
        ("shared_host_port", "ports = [{ host = 8080, container = 80 }]", "ports = [{ host = 8081, container = 80 }]"),
        ("bad_restart_policy", "restart = \"unless-stopped\"", "restart = \"unless-stoped\""),
        ("toml_syntax", "[project]", "[project"),
        (
            "derived_variable_declared",
            "APP_ENV = \"production\"\nPORT",
            "CORS_ORIGIN = \"https://x.fr\"\nAPP_ENV = \"production\"\nPORT",
        ),
        ("bad_secret_reference", "\"${JWT_SECRET}\"", "\"${JWT SECRET}\""),
        ("session_lifetime_out_of_range", "absolute_lifetime = \"30d\"", "absolute_lifetime = \"10m\""),
        ("bad_origin", "origins = [\"https://app.masstock.fr\"]", "origins = [\"https://app.masstock.fr/\"]"),
        ("wildcard_origin", "origins = [\"https://app.masstock.fr\"]", "origins = [\"*\"]"),
        ("ipv6_upstream", "upstream_host = \"127.0.0.1\"", "upstream_host = \"::1\""),
        ("path_with_space", "log_dir = \"/var/log/nginx\"", "log_dir = \"/var/log/my nginx\""),
        ("environment_name_with_newline", "[environments.production]", "[environments.\"x\\ninclude /etc/shadow; #\"]"),
        ("project_name_starting_with_a_digit", "name = \"masstock\"", "name = \"1stock\""),
        (
            "duplicate_origin",
            "origins = [\"https://app.masstock.fr\"]",
            "origins = [\"https://app.masstock.fr\", \"https://app.masstock.fr\"]",
        ),
        (
            "origin_with_default_port",
            "origins = [\"https://app.masstock.fr\"]",
            "origins = [\"https://app.masstock.fr:443\"]",
        ),
        ("cert_name_with_space", "certificates = \"san\"", "certificates = \"san\"\ncert_name = \"masstock fr\""),
        ("empty_webroot", "webroot = \"/var/www/certbot\"", "webroot = \"\""),
        ("edge_port_zero", "https_port = 443", "https_port = 0"),
        ("zone_too_small", "zone_size = \"10m\"", "zone_size = \"1k\""),
        ("stop_before_the_grace_is_over", "stop_grace_period = \"30s\"", "stop_grace_period = \"20s\""),
        ("size_with_gigabytes", "client_max_body_size = \"10m\"", "client_max_body_size = \"1g\""),
        (
            "mount_with_colon",
            "{ source = \"redis_data\", target = \"/data\" }",
            "{ source = \"redis_data\", target = \"/data:ro:z\" }",
        ),
        ("image_with_interpolation", "image = \"n8nio/n8n:1.70.3\"", "image = \"n8nio/n8n:${tag\""),
        ("control_character_in_env", "GEMINI_MODEL = \"gemini-2.5-flash-image\"", "GEMINI_MODEL = \"gemini\\u007f\""),
        (
            "header_twice_in_another_case",
            "X-Frame-Options = \"SAMEORIGIN\"",
            "X-Frame-Options = \"SAMEORIGIN\"\nx-frame-options = \"DENY\"",
        ),
        ("local_override_error", "enabled_link = \"\"", "enabled_lnk = \"\""),
        ("unknown_capability", "cap_add = []", "cap_add = [\"NET_BIND_SERVCE\"]"),
        ("memory_without_unit_below_the_minimum", "memory = \"512m\"", "memory = \"512\""),
        ("bad_memory_unit", "memory = \"512m\"", "memory = \"512 MB\""),
        ("unknown_hardening_key", "pids_limit = 64\n\n[services.app", "pid_limit = 64\n\n[services.app"),
        ("backup_inline_password", "password = \"${RESTIC_PASSWORD}\"", "password = \"correct-horse-battery\""),
        (
            "backup_inline_credential",
            "keep_daily = 7\n",
            "keep_daily = 7\nenv = { AWS_ACCESS_KEY_ID = \"AKIA-visible\", AWS_SECRET_ACCESS_KEY = \"s3cr3t-value\" }\n",
        ),
        ("backup_unknown_key", "keep_weekly = 4", "keep_weakly = 4"),
        ("backup_unknown_component", "# include = [\"redis\"", "include = [\"redis\", \"upload\"]\n# include = [\"redis\""),
        ("backup_empty_include", "# include = [\"redis\"", "include = []\n# include = [\"redis\""),
        ("backup_component_twice", "# include = [\"redis\"", "include = [\"redis\", \"redis\"]\n# include = [\"redis\""),
        (
            "local_backup_n8n_disabled",
            "[environments.local.backup]\n",
            "[environments.local.backup]\ninclude = [\"redis\", \"n8n\"]\n",
        ),
        (
            "backup_all_zero_retention",
            "keep_daily = 7\nkeep_weekly = 4\nkeep_monthly = 6",
            "keep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0",
        ),
        ("backup_empty_schedule", "schedule = \"*-*-* 03:00:00\"", "schedule = \"\""),
    ];
    for (name, from, to) in cases {
        let sandbox = Sandbox::edited(from, to);
        let environment = if name.starts_with("local") { "local" } else { "production" };
        let run = sandbox.run(&["--env", environment, "config", "check"]);
        assert_eq!(run.status, 2, "{name}: {}", run.transcript());
        assert!(run.stderr.contains("--> deploy.toml:"), "{name}: no location: {}", run.stderr);
        for secret in ["correct-horse-battery", "s3cr3t-value"] {
            assert!(!run.stderr.contains(secret), "{name}: a secret written inline is repeated: {}", run.stderr);
        }
        insta::assert_snapshot!(format!("invalid_{name}"), run.transcript());
    }
}

#[test]
fn an_error_in_another_environment_is_reported_too() {
    let sandbox = Sandbox::edited(
        "[environments.local.sites.api]\ndomain = \"api.masstock.localhost\"",
        "[environments.local.sites.api]\ndomain = \"api.masstock.localhost\"\nservice = \"nope\"",
    );
    let run = sandbox.run(&["config", "check"]);
    assert_eq!(run.status, 2, "{}", run.transcript());
    assert!(run.stderr.contains("environment `local`: site `api` routes to unknown service `nope`"), "{}", run.stderr);
}

#[test]
fn unknown_environment_lists_the_declared_ones() {
    let run = Sandbox::new().run(&["--env", "lokal", "config", "check"]);
    assert_eq!(run.status, 2);
    insta::assert_snapshot!(run.transcript());
}

#[test]
fn a_secret_missing_from_an_existing_env_file_is_an_error() {
    let sandbox = Sandbox::new();
    fs_err::write(sandbox.path(".env.local"), "JWT_SECRET=x\nREDIS_PASSWORD=y\nDATABASE_URL=\n").unwrap();
    let run = sandbox.run(&["--env", "local", "config", "check"]);
    assert_eq!(run.status, 2, "{}", run.transcript());
    insta::assert_snapshot!(run.transcript());
}

#[test]
fn a_missing_config_file_says_where_it_looked() {
    let sandbox = Sandbox::with_config("");
    let run = sandbox.run(&["--config", "nowhere.toml", "config", "check"]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("failed to read `nowhere.toml`"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: pass `--config FILE`"), "{}", run.stderr);
}

#[test]
fn errors_are_one_json_document_with_json() {
    let sandbox = Sandbox::edited("http_port = 80\n", "http_port = \"eighty\"\n");
    let run = sandbox.run(&["--json", "config", "check"]);
    assert_eq!(run.status, 2);
    let document: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    let diagnostic = &document["error"]["diagnostics"][0];
    assert_eq!(
        diagnostic["location"]["line"],
        shipped_config().lines().position(|line| line == "http_port = 80").unwrap() + 1
    );
    assert_eq!(diagnostic["location"]["column"], 13);
}

#[test]
fn quiet_silences_warnings_and_colour_follows_no_color() {
    let quiet = Sandbox::new().run(&["-q", "config", "check"]);
    assert_eq!(quiet.status, 0);
    assert_eq!(quiet.stderr, "", "-q leaves only errors");

    let sandbox = Sandbox::edited("http_port = 80\n", "http_port = \"eighty\"\n");
    let forced = sandbox.run_with_env(&["config", "check"], &[("CLICOLOR_FORCE", "1")]);
    assert!(forced.stderr.contains("\u{1b}["), "CLICOLOR_FORCE colours errors: {}", forced.stderr);
    let plain = sandbox.run_with_env(&["config", "check"], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!plain.stderr.contains('\u{1b}'), "NO_COLOR wins: {}", plain.stderr);
}

#[test]
fn a_secret_that_breaks_its_url_is_an_error() {
    let sandbox = Sandbox::new();
    // What the reference's `randomBytes(32).toString('base64')` gives half the time.
    fs_err::write(
        sandbox.path(".env.local"),
        "JWT_SECRET=x\nREDIS_PASSWORD=ab/cd+ef==\nDATABASE_URL=postgres://u:p@h/db\nGEMINI_API_KEY=k\nRESTIC_PASSWORD=r\n",
    )
    .unwrap();
    let run = sandbox.run(&["--env", "local", "config", "check"]);
    assert_eq!(run.status, 2, "{}", run.transcript());
    assert!(run.stderr.contains("secret `REDIS_PASSWORD` holds characters that break the URL"), "{}", run.stderr);
    assert!(!run.stderr.contains("ab/cd+ef=="), "the value itself is never printed: {}", run.stderr);
    insta::assert_snapshot!(run.transcript());
}

#[test]
fn bytes_that_are_not_utf8_are_located() {
    let mut bytes = shipped_config().into_bytes();
    let position = bytes.iter().position(|byte| *byte == b'\n').unwrap() + 1;
    bytes.insert(position + 2, 0xff);
    let sandbox = Sandbox::new();
    fs_err::write(sandbox.path("deploy.toml"), bytes).unwrap();
    let run = sandbox.run(&["config", "check"]);
    assert_eq!(run.status, 2, "{}", run.transcript());
    assert!(run.stderr.contains("the file is not valid UTF-8"), "{}", run.stderr);
    assert!(run.stderr.contains("--> deploy.toml:2:3"), "{}", run.stderr);
}
