//! A deploy.toml environment whose paths and ports all point into a temporary folder, rendered.

use std::path::{Path, PathBuf};

use masstock_tests::{config_with_environment, free_port, require_tool, wait_for_port, ChildGuard, TestCertificates};
use masstockctl::config::Stack;
use masstockctl::render::render_stack;

/// The `http`-level TLS settings of the sandbox's main nginx.conf: Debian's `ssl_protocols` line
/// with only its weakest protocols, and more a host could have set (the client's cipher order). Each one would show if the
/// site let it through: a TLS 1.0 handshake, a CBC or RSA-key-exchange suite, a ticket, a stapling
/// warning from `nginx -t`, early data.
pub const HOST_TLS_SETTINGS: &str = "    ssl_protocols TLSv1 TLSv1.1;\n    ssl_ciphers DEFAULT:@SECLEVEL=0;\n\
    \x20   ssl_prefer_server_ciphers off;\n    ssl_session_tickets on;\n    ssl_stapling on;\n    ssl_early_data on;\n";

pub struct RenderedSandbox {
    pub dir: tempfile::TempDir,
    pub stack: Stack,
    pub http_port: u16,
    pub https_port: u16,
    pub api_port: u16,
    pub certificates: TestCertificates,
    /// The environment the sandbox's `e2e` derives from, and the sandbox's own overrides of it.
    base: String,
    overrides: String,
}

impl RenderedSandbox {
    /// Renders environment `base` with sandboxed paths, free ports for the edge and the API,
    /// an env file holding every referenced secret, and test certificates where nginx wants them.
    pub fn new(base: &str) -> Self {
        Self::with_overrides(base, "")
    }

    /// Like [`RenderedSandbox::new`], with more TOML merged into the environment.
    pub fn with_overrides(base: &str, extra: &str) -> Self {
        Self::with_overrides_for_edge(base, |_| extra.to_owned())
    }

    /// Like [`RenderedSandbox::with_overrides`], with TOML that depends on the edge's HTTPS port
    /// (origins, content security policies).
    pub fn with_overrides_for_edge(base: &str, extra: impl FnOnce(u16) -> String) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let root = dir.path().display().to_string();
        let (http_port, https_port, api_port) = (free_port(), free_port(), free_port());
        let extra = extra(https_port);
        let extra = extra.as_str();
        let overrides = format!(
            r#"
            [project]
            env_file = "{root}/secrets.env"
            [edge]
            site_file = "{root}/out/nginx/masstock.conf"
            log_dir = "{root}/logs"
            http_port = {http_port}
            https_port = {https_port}
            [acme]
            cert_dir = "{root}/letsencrypt"
            webroot = "{root}/webroot"
            [services.api]
            ports = [{{ host = {api_port}, container = 3000 }}]
            "#
        );
        let config_path = dir.path().join("deploy.toml");
        fs_err::write(&config_path, config_with_environment(base, &[&overrides, extra])).expect("write deploy.toml");
        let (base, overrides) = (base.to_owned(), overrides.clone());

        // Every secret the stack refers to, with a recognisable value.
        let probe =
            Stack::from_source_without_env_file(&masstockctl::config::read_source(&config_path).unwrap(), "e2e")
                .unwrap_or_else(|error| panic!("the e2e environment is valid: {error:?}"));
        let secrets: Vec<String> =
            probe.secrets.names().iter().map(|name| format!("{name}=e2e-secret-{name}\n")).collect();
        let secrets = secrets.concat();
        fs_err::write(dir.path().join("secrets.env"), secrets).expect("write the env file");

        let stack =
            Stack::load(&config_path, "e2e").unwrap_or_else(|error| panic!("load the e2e environment: {error:?}"));
        for file in render_stack(&stack).expect("render") {
            let path = dir.path().join("out").join(&file.path);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(&path, &file.contents).unwrap();
        }
        let domains: Vec<String> = stack.sites().map(|(_, site)| site.domain.clone()).collect();
        let certificates = TestCertificates::for_domains(&domains);
        for domain in &domains {
            let (fullchain, key) = stack.certificate_paths(domain);
            certificates.install(&fullchain, &key);
        }
        for folder in ["logs", "webroot/.well-known/acme-challenge", "temp"] {
            fs_err::create_dir_all(dir.path().join(folder)).unwrap();
        }
        Self { dir, stack, http_port, https_port, api_port, certificates, base, overrides }
    }

    /// Writes deploy.toml again with `extras` merged, in turn, over the sandbox's overrides (the
    /// extras given at creation are not kept), and reloads the stack.
    pub fn reconfigure(&mut self, extras: &[&str]) {
        let mut documents = vec![self.overrides.as_str()];
        documents.extend_from_slice(extras);
        let config_path = self.path("deploy.toml");
        fs_err::write(&config_path, config_with_environment(&self.base, &documents)).expect("write deploy.toml");
        self.stack =
            Stack::load(&config_path, "e2e").unwrap_or_else(|error| panic!("load the e2e environment: {error:?}"));
    }

    /// Gives secrets of the env file real values (the sandbox fills them with placeholders).
    pub fn set_secrets(&self, secrets: &[(&str, &str)]) {
        let path = self.path("secrets.env");
        let text = fs_err::read_to_string(&path).expect("read the env file");
        let mut lines: Vec<String> = text
            .lines()
            .filter(|line| !secrets.iter().any(|(name, _)| line.starts_with(&format!("{name}="))))
            .map(str::to_owned)
            .collect();
        lines.extend(secrets.iter().map(|(name, value)| format!("{name}={value}")));
        fs_err::write(&path, lines.join("\n") + "\n").expect("write the env file");
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// A minimal main nginx.conf that includes the rendered site, as Debian's does, with TLS
    /// settings at the `http` level worse than Debian's (which enables TLS 1.0 and 1.1 there):
    /// only TLS 1.0 and 1.1, every cipher down to security level 0, the client's cipher order, session
    /// tickets, OCSP stapling and 0-RTT. Whatever the site leaves unset in a server, the rejecting
    /// default server included, comes from here and shows in every test that talks TLS to it.
    pub fn write_nginx_main_config(&self) -> PathBuf {
        let root = self.dir.path().display();
        let site = self.stack.config.edge.site_file.display();
        let text = format!(
            "user root;\nworker_processes 1;\npid {root}/nginx.pid;\nerror_log {root}/logs/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {root}/temp/body;\n    proxy_temp_path {root}/temp/proxy;\n\
             \x20   fastcgi_temp_path {root}/temp/fastcgi;\n    uwsgi_temp_path {root}/temp/uwsgi;\n    scgi_temp_path {root}/temp/scgi;\n\
             {HOST_TLS_SETTINGS}\
             \x20   include {site};\n}}\n"
        );
        let path = self.dir.path().join("nginx.conf");
        fs_err::write(&path, text).unwrap();
        path
    }

    /// nginx serving the rendered site in the foreground, stopped when the guard is dropped;
    /// returns once it listens on both edge ports.
    pub fn start_nginx(&self) -> ChildGuard {
        let config = self.write_nginx_main_config();
        let nginx = ChildGuard(
            std::process::Command::new(require_tool("nginx"))
                .arg("-p")
                .arg(self.root())
                .arg("-c")
                .arg(&config)
                .args(["-g", "daemon off;"])
                .spawn()
                .expect("start nginx"),
        );
        for port in [self.https_port, self.http_port] {
            wait_for_port(([127, 0, 0, 1], port).into(), std::time::Duration::from_secs(10));
        }
        nginx
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}
