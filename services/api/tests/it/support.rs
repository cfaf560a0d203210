//! An API served in-process on a free port, stopped when dropped.

use std::time::Duration;

use masstock_api::config::{AppEnv, DatabaseArgs, Secret, ServeArgs};

/// The bootstrap's PostgreSQL (see `.cargo/config.toml`).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL is set by .cargo/config.toml")
}

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Settings as the environment would give them, pointing at the bootstrap's services.
pub fn serve_args() -> ServeArgs {
    let prefix = format!("bull-test-{}", uuid::Uuid::new_v4().simple());
    ServeArgs {
        database: DatabaseArgs { database_url: Secret::from(database_url().as_str()) },
        redis_url: Secret::from(REDIS_URL),
        jwt_secret: Secret::from("test-secret-test-secret-test-secret!"),
        cors_origin: "https://app.masstock.localhost:8443".into(),
        port: 0,
        app_env: AppEnv::Test,
        trusted_proxies: "127.0.0.0/8".into(),
        uploads_dir: std::env::temp_dir(),
        // Each API gets its own prefixes on the shared Redis, removed when it is dropped.
        queue_prefix: prefix.clone(),
        rate_limit_general: "100/60s".into(),
        rate_limit_auth: "5/60s".into(),
        rate_limit_prefix: format!("{prefix}:ratelimit"),
        shutdown_grace_seconds: 5,
        session_absolute_lifetime: "30d".into(),
    }
}

pub struct TestApi {
    pub url: String,
    pub queue_prefix: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApi {
    pub async fn start(args: ServeArgs) -> Self {
        let queue_prefix = args.queue_prefix.clone();
        let settings = args.settings().expect("valid test settings");
        let grace = settings.shutdown_grace;
        let state = masstock_api::app::AppState::new(settings).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let server =
            tokio::spawn(masstock_kit::server::run(listener, masstock_api::app::router(state), shutdown, grace));
        Self { url, queue_prefix, stop: Some(stop), server: Some(server) }
    }

    /// Asks the server to stop, as SIGTERM would.
    pub fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.shut_down();
        if let Some(server) = self.server.take() {
            server.abort();
        }
        // Remove this test's queue keys, even when the test failed.
        delete_keys(&self.queue_prefix);
    }
}

/// Deletes every Redis key under `prefix:` (a test's queue and rate-limit namespaces).
pub fn delete_keys(prefix: &str) {
    if let Ok(mut connection) = redis::Client::open(REDIS_URL).and_then(|client| client.get_connection()) {
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{prefix}:*")).query(&mut connection).unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut connection);
        }
    }
}

pub use masstock_tests::python;

/// A TCP listener that accepts and never answers: a dependency that hangs.
pub async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (address.to_string(), task)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

pub use masstock_tests::database_url_of as url_of;

/// Settings for an API on the test database behind `pool`.
pub fn serve_args_on(pool: &sqlx::PgPool) -> ServeArgs {
    let mut args = serve_args();
    args.database.database_url = Secret::from(url_of(pool).as_str());
    args
}

/// An API on the test database behind `pool`.
pub async fn api_on(pool: &sqlx::PgPool, app_env: AppEnv) -> TestApi {
    let mut args = serve_args_on(pool);
    args.app_env = app_env;
    TestApi::start(args).await
}

pub const PASSWORD: &str = "correct horse battery staple";

/// A user with [`PASSWORD`].
pub async fn user(pool: &sqlx::PgPool, email: &str, premium: bool) -> uuid::Uuid {
    masstock_api::users::add_user(pool, email, PASSWORD, premium).await.expect("create a test user")
}

/// The value of cookie `name` set by `response`, and its whole `Set-Cookie` line.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response.headers().get_all("set-cookie").iter().filter_map(|value| value.to_str().ok()).find_map(|line| {
        let value = line.strip_prefix(&format!("{name}="))?.split(';').next()?.to_owned();
        Some((value, line.to_owned()))
    })
}

/// A Redis of the test's own on a free port, with AOF, that can be stopped, started and
/// restarted: Redis going away and coming back under a running API.
pub struct PrivateRedis {
    pub port: u16,
    folder: tempfile::TempDir,
    process: Option<masstock_tests::ChildGuard>,
}

impl PrivateRedis {
    /// Not started yet: nothing listens on its port.
    pub fn stopped() -> Self {
        Self { port: masstock_tests::free_port(), folder: tempfile::tempdir().unwrap(), process: None }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        let child = std::process::Command::new(masstock_tests::require_tool("redis-server"))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .arg("--dir")
            .arg(self.folder.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.process = Some(masstock_tests::ChildGuard(child));
        masstock_tests::wait_for_port(([127, 0, 0, 1], self.port).into(), Duration::from_secs(10));
    }

    /// Stops Redis as `docker restart` does (SIGTERM: it flushes its AOF) and starts it again on
    /// the same data.
    pub fn restart(&mut self) {
        drop(self.process.take());
        self.start();
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url()).and_then(|client| client.get_connection()).expect("connect to the test's redis")
    }
}
