//! The app end to end in a real browser: headless Chromium through the host nginx with TLS, the
//! app and the API on different origins (cookies, CORS preflight) as in production, the worker
//! and the fake Gemini behind them.
//!
//! The API, the worker, the app server and the fake Gemini run inside the test, behind the host
//! nginx rendered from the production environment with test certificates, on free ports; Chromium
//! maps the production names to 127.0.0.1 (`--host-resolver-rules`), so cookies, CORS and the CSP
//! work as in production. It logs in, runs three prompts, waits for the images, reloads, logs out,
//! then checks a 375 px phone (no sideways scroll, labelled fields, keyboard login, live region).
//! Screenshots go to `target/e2e-artifacts/`; a wait that times out prints the browser's console.

use std::path::PathBuf;
use std::time::Duration;

use masstock_kit::{AppEnv, Secret};
use masstock_tests::webdriver::Browser;
use masstock_tests::workspace_root;
use serde_json::json;

use crate::sandbox::RenderedSandbox;

const EMAIL: &str = "ana@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// A database of the test's own, dropped at the end.
pub struct Database {
    pub name: String,
    pub url: String,
    admin: String,
}

impl Database {
    fn create(runtime: &tokio::runtime::Runtime) -> Self {
        Self::create_named(runtime, &format!("masstock_browser_{}", uuid::Uuid::new_v4().simple()))
    }

    /// Creates database `name` on the server `DATABASE_URL` names.
    pub fn create_named(runtime: &tokio::runtime::Runtime, name: &str) -> Self {
        let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by .cargo/config.toml");
        let (server, _) = base.rsplit_once('/').expect("a database in DATABASE_URL");
        let name = name.to_owned();
        let admin = format!("{server}/postgres");
        runtime.block_on(async {
            let pool = sqlx::PgPool::connect(&admin)
                .await
                .unwrap_or_else(|error| panic!("no PostgreSQL at {admin} ({error}): run `script/bootstrap`"));
            sqlx::query(&format!("create database {name}")).execute(&pool).await.unwrap();
        });
        Self { url: format!("{server}/{name}"), name, admin }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                    let _ = sqlx::query(&format!("drop database if exists {name} with (force)")).execute(&pool).await;
                }
            });
        })
        .join();
    }
}

/// Deletes the test's Redis keys when dropped.
struct RedisKeys(String);

impl Drop for RedisKeys {
    fn drop(&mut self) {
        if let Ok(mut connection) =
            redis::Client::open("redis://127.0.0.1:6379").and_then(|client| client.get_connection())
        {
            for pattern in [format!("{}*", self.0), format!("masstock:gemini-requests:{}*", self.0)] {
                let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut connection).unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut connection);
                }
            }
        }
    }
}

fn artifacts() -> PathBuf {
    workspace_root().join("target/e2e-artifacts")
}

#[test]
fn a_user_logs_in_runs_three_prompts_and_sees_three_images() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // The services' constructors (lazy pools) expect to be inside the runtime.
    let _inside = runtime.enter();
    let app_port = masstock_tests::free_port();
    // The app's origin includes the edge's port, which the sandbox chooses: CORS and the app's
    // content security policy are written for it.
    let sandbox = RenderedSandbox::with_overrides_for_edge("production", |https| {
        let api_origin = format!("https://api.masstock.fr:{https}");
        format!(
            "[services.app]\nports = [{{ host = {app_port}, container = 80 }}]\n\
             [cors]\norigins = [\"https://app.masstock.fr:{https}\"]\n\
             [sites.app]\ncontent_security_policy = \"default-src 'self'; connect-src 'self' {api_origin}; \
             img-src 'self' data: blob: {api_origin}; style-src 'self'; script-src 'self'; font-src 'self'; \
             object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'\"\n"
        )
    });
    let https = sandbox.https_port;
    let app_origin = format!("https://app.masstock.fr:{https}");
    let api_origin = format!("https://api.masstock.fr:{https}");

    let database = Database::create(&runtime);
    let prefix = format!("browser-{}", uuid::Uuid::new_v4().simple());
    let _keys = RedisKeys(prefix.clone());
    let uploads = tempfile::tempdir().unwrap();
    let gemini = masstock_fake_gemini::FakeGemini::start(
        masstock_fake_gemini::Settings::default().with_api_key("browser-key").with_latency(Duration::from_millis(700)),
    )
    .unwrap();

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
        masstock_schema::migrate(&pool).await.unwrap();
        masstock_api::users::add_user(&pool, EMAIL, PASSWORD, false).await.unwrap();
    });

    // The API, as the edge proxies to it.
    let api_args = masstock_api::config::ServeArgs {
        database: masstock_api::config::DatabaseArgs { database_url: Secret::from(database.url.as_str()) },
        redis_url: Secret::from("redis://127.0.0.1:6379"),
        jwt_secret: Secret::from("browser-test-secret-browser-test-secret"),
        cors_origin: app_origin.clone(),
        port: sandbox.api_port,
        app_env: AppEnv::Production,
        trusted_proxies: "127.0.0.0/8".into(),
        uploads_dir: uploads.path().to_path_buf(),
        queue_prefix: prefix.clone(),
        rate_limit_general: "1000/60s".into(),
        rate_limit_auth: "20/60s".into(),
        rate_limit_prefix: format!("{prefix}:ratelimit"),
        shutdown_grace_seconds: 1,
        session_absolute_lifetime: "30d".into(),
    };
    let settings = api_args.settings().expect("valid API settings");
    let api_listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", sandbox.api_port))).unwrap();
    let state = masstock_api::app::AppState::new(settings).unwrap();
    runtime.spawn(masstock_kit::server::run(
        api_listener,
        masstock_api::app::router(state),
        until_stopped(),
        Duration::from_secs(1),
    ));

    // The app.
    let site = masstock_web::site::SiteSettings {
        root: workspace_root().join("services/web/app"),
        environment: AppEnv::Production,
        api_base_url: Some(api_origin.clone()),
        app_url: Some(app_origin.clone()),
    };
    let app_listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", app_port))).unwrap();
    runtime.spawn(masstock_kit::server::run(
        app_listener,
        masstock_web::site::router(&site),
        until_stopped(),
        Duration::from_secs(1),
    ));

    // The worker.
    let worker_args = masstock_worker::config::RunArgs {
        queue: masstock_worker::config::QueueArgs {
            redis_url: Secret::from("redis://127.0.0.1:6379"),
            queue_prefix: prefix.clone(),
            worker_id: Some("browser".into()),
        },
        database_url: Secret::from(database.url.as_str()),
        gemini_api_key: Secret::from("browser-key"),
        gemini_base_url: gemini.url(),
        gemini_model: "gemini-2.5-flash-image".into(),
        gemini_rpm: 100,
        gemini_connect_timeout_seconds: 5,
        gemini_request_timeout_seconds: 20,
        gemini_max_attempts: 3,
        gemini_backoff_ms: 100,
        concurrency: 3,
        uploads_dir: uploads.path().to_path_buf(),
        app_env: AppEnv::Test,
        shutdown_grace_seconds: 2,
        lock_seconds: 30,
        stalled_interval_seconds: 30,
        reconcile_interval_seconds: 60,
    };
    let worker_settings = worker_args.settings().expect("valid worker settings");
    let worker = runtime.spawn(masstock_worker::run::serve(worker_settings, until_stopped()));

    let _nginx = sandbox.start_nginx();

    let browser = Browser::start("MAP *.masstock.fr 127.0.0.1, MAP masstock.fr 127.0.0.1", 1280, 900);
    let shots = artifacts();
    let app = |path: &str| format!("{app_origin}{path}");

    // Not logged in: the app sends us to its login page.
    browser.goto(&app("/"));
    browser.wait_for("form#login-form", Duration::from_secs(20));
    browser.screenshot(&shots.join("1-login.png"));
    // A wrong password is said in words, where the form is.
    browser.fill("#email", EMAIL);
    browser.fill("#password", "not the password");
    browser.click("#login-submit");
    let refused = browser.wait_until(
        "the login is refused in words",
        Duration::from_secs(20),
        "return document.querySelector('#login-error').textContent.trim();",
    );
    assert!(refused.as_str().is_some_and(|text| text.len() > 10), "{refused}");
    browser.fill("#password", PASSWORD);
    browser.click("#login-submit");

    // Three prompts, then the execution's page.
    browser.wait_for("form#execution-form", Duration::from_secs(20));
    // The button is enabled once the workflows are loaded.
    browser.wait_until(
        "the workflows load",
        Duration::from_secs(20),
        "const b = document.querySelector('#execution-submit'); return b && !b.disabled;",
    );
    // No prompt: the error is next to the field, and the field says it is invalid.
    browser.fill("#prompts", "   ");
    browser.click("#execution-submit");
    browser.wait_until(
        "the missing prompts are pointed out at the field",
        Duration::from_secs(10),
        "const e = document.querySelector('#prompts-error'); \
         return !e.hidden && e.textContent.trim() !== '' && document.querySelector('#prompts').getAttribute('aria-invalid') === 'true';",
    );
    browser.fill("#prompts", "a red fox\na blue whale\na green owl");
    browser.click("#execution-submit");
    browser.wait_until(
        "the execution's page opens",
        Duration::from_secs(20),
        "return /\\/executions\\/[0-9a-f-]{36}$/.test(location.pathname);",
    );
    browser.wait_for("progress#execution-progress", Duration::from_secs(10));
    browser.screenshot(&shots.join("2-progress.png"));
    browser.wait_until(
        "the execution completes",
        Duration::from_secs(60),
        "const s = document.querySelector('#execution-status'); return s && s.dataset.status === 'completed';",
    );
    let images = browser.wait_until(
        "three images are shown",
        Duration::from_secs(20),
        "const images = [...document.querySelectorAll('#gallery img')]; \
         return images.length === 3 && images.every(image => image.complete && image.naturalWidth > 0) && images.length;",
    );
    assert_eq!(images, json!(3));
    let progress =
        browser.script("const p = document.querySelector('#execution-progress'); return [p.value, p.max];", &[]);
    assert_eq!(progress, json!([3, 3]));
    let downloads = browser.script("return document.querySelectorAll('#gallery a[download]').length;", &[]);
    assert_eq!(downloads, json!(3));
    browser.screenshot(&shots.join("3-gallery.png"));
    let execution_url = browser.url();

    // A reload keeps the session (the cookies) and the page.
    browser.refresh();
    browser.wait_until(
        "the execution's page survives a reload",
        Duration::from_secs(20),
        "const s = document.querySelector('#execution-status'); return s && s.dataset.status === 'completed';",
    );
    assert_eq!(browser.url(), execution_url);

    // Logging out leads back to the login page, and the app's pages then want a login again.
    browser.click("#logout");
    browser.wait_for("form#login-form", Duration::from_secs(20));
    browser.goto(&execution_url);
    browser.wait_for("form#login-form", Duration::from_secs(20));

    assert_console_clean(&browser.console());
    assert_eq!(gemini.request_count(), 3);

    drop(browser);

    // On a 375 px wide phone: nothing scrolls sideways, every field has a label, the keyboard
    // alone logs in, and progress is announced to screen readers.
    let phone = Browser::start_phone("MAP *.masstock.fr 127.0.0.1, MAP masstock.fr 127.0.0.1", 375, 812);
    phone.goto(&app("/login"));
    phone.wait_for("form#login-form", Duration::from_secs(20));
    assert_fits_and_labels(&phone, "the login page");
    phone.fill("#email", EMAIL);
    // Enter in the password field submits the form, as a keyboard user would.
    phone.fill("#password", &format!("{PASSWORD}\u{E007}"));
    phone.wait_for("form#execution-form", Duration::from_secs(20));
    assert_fits_and_labels(&phone, "the new execution page");
    phone.goto(&execution_url);
    phone.wait_for("#gallery img", Duration::from_secs(20));
    assert_fits_and_labels(&phone, "the execution page");
    let live = phone.script("return document.querySelectorAll('[aria-live]').length > 0;", &[]);
    assert_eq!(live, json!(true), "progress is announced in a live region");
    phone.screenshot(&shots.join("4-phone-gallery.png"));
    assert_console_clean(&phone.console());
    drop(phone);

    let _ = stop.send(true);
    let _ = runtime.block_on(worker);
}

/// The page is no wider than the screen, and every visible form field has a label.
fn assert_fits_and_labels(browser: &Browser, page: &str) {
    let overflow = browser.script("return document.documentElement.scrollWidth - window.innerWidth;", &[]);
    assert!(overflow.as_i64().is_some_and(|overflow| overflow <= 0), "{page} scrolls sideways by {overflow} px");
    let unlabelled = browser.script(
        "return [...document.querySelectorAll('input, select, textarea')] \
           .filter(field => field.type !== 'hidden' && field.labels.length === 0 && !field.getAttribute('aria-label')) \
           .map(field => field.id || field.name);",
        &[],
    );
    assert_eq!(unlabelled, json!([]), "fields without a label on {page}");
}

/// No error in the browser's console but the refusals the test provokes on purpose: asking who is
/// logged in or refreshing the session while logged out, and the wrong password.
fn assert_console_clean(console: &[String]) {
    let expected = |line: &str| {
        (line.contains("/api/v1/auth/me ")
            || line.contains("/api/v1/auth/refresh ")
            || line.contains("/api/v1/auth/login "))
            && line.ends_with("Failed to load resource: the server responded with a status of 401 ()")
    };
    let errors: Vec<&String> = console.iter().filter(|line| line.starts_with("SEVERE") && !expected(line)).collect();
    assert!(errors.is_empty(), "the browser's console has errors:\n{}", console.join("\n"));
}
