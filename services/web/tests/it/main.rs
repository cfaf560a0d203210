//! masstock-web's rules with real HTTP requests: SPA routing, 404s for assets, cache headers,
//! conditional requests, ranges, compression, MIME types, path traversal, and the binary itself.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use masstock_kit::AppEnv;
use masstock_web::site::{router, SiteSettings};
use reqwest::header;

const INDEX: &str = "<!doctype html><title>MasStock</title><div id=app></div>";

/// A site folder with what an app build produces.
fn site() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let write = |path: &str, bytes: &[u8]| {
        let path = root.path().join(path);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, bytes).unwrap();
    };
    write("index.html", INDEX.as_bytes());
    write("app.3f9a1c2b.js", "export const answer = 42;\n".repeat(200).as_bytes());
    write("style.css", b"body { color: black }\n");
    write("style.css.br", b"pretend-brotli");
    write("style.css.gz", b"pretend-gzip");
    write("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>");
    write("pixel.png", b"\x89PNG\r\n\x1a\n0123456789");
    write("docs/index.html", b"<!doctype html><title>docs</title>");
    root
}

struct Server {
    url: String,
    address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(root: &Path) -> Server {
    let settings = SiteSettings {
        root: root.to_path_buf(),
        environment: AppEnv::Test,
        api_base_url: Some("https://api.masstock.localhost:8443".into()),
        app_url: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(masstock_kit::server::run(
        listener,
        router(&settings),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    Server { url: format!("http://{address}"), address, stop: Some(stop) }
}

fn client() -> reqwest::Client {
    // No automatic decompression: the tests look at what the server sends.
    reqwest::Client::builder().no_gzip().no_brotli().timeout(Duration::from_secs(10)).build().unwrap()
}

#[tokio::test]
async fn paths_without_a_file_serve_the_app_and_missing_assets_are_404() {
    let root = site();
    let server = serve(root.path()).await;
    for path in ["/", "/executions/42", "/login"] {
        let response = client().get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html", "{path}");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache", "{path}");
        assert_eq!(response.text().await.unwrap(), INDEX, "{path}");
    }
    let docs = client().get(format!("{}/docs/", server.url)).send().await.unwrap();
    assert_eq!(docs.text().await.unwrap(), "<!doctype html><title>docs</title>");
    for path in ["/app.00000000.js", "/missing.css", "/executions/42/image.png"] {
        let response = client().get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn health_and_config_come_from_the_server() {
    let root = site();
    let server = serve(root.path()).await;
    let health = client().get(format!("{}/health", server.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "healthy\n");
    let config = client().get(format!("{}/config.json", server.url)).send().await.unwrap();
    assert_eq!(config.headers()[header::CACHE_CONTROL], "no-cache");
    assert_eq!(
        config.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({ "environment": "test", "api_base_url": "https://api.masstock.localhost:8443", "app_url": null })
    );
}

#[tokio::test]
async fn fingerprinted_assets_are_immutable_and_types_are_right() {
    let root = site();
    let server = serve(root.path()).await;
    let expected = [
        ("/app.3f9a1c2b.js", "text/javascript", "public, max-age=31536000, immutable"),
        ("/style.css", "text/css", "no-cache"),
        ("/logo.svg", "image/svg+xml", "no-cache"),
        ("/pixel.png", "image/png", "no-cache"),
    ];
    for (path, content_type, cache_control) in expected {
        let response = client().get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], content_type, "{path}");
        assert_eq!(response.headers()[header::CACHE_CONTROL], cache_control, "{path}");
    }
}

#[tokio::test]
async fn conditional_requests_answer_304() {
    let root = site();
    let server = serve(root.path()).await;
    let url = format!("{}/style.css", server.url);
    let first = client().get(&url).send().await.unwrap();
    let etag = first.headers()[header::ETAG].clone();
    let modified = first.headers()[header::LAST_MODIFIED].clone();
    assert!(etag.to_str().unwrap().starts_with("W/\""), "{etag:?}");

    let by_tag = client().get(&url).header(header::IF_NONE_MATCH, &etag).send().await.unwrap();
    assert_eq!(by_tag.status(), 304);
    assert_eq!(by_tag.headers()[header::ETAG], etag);
    assert_eq!(by_tag.headers()[header::CACHE_CONTROL], "no-cache");
    assert!(by_tag.bytes().await.unwrap().is_empty());

    let by_date = client().get(&url).header(header::IF_MODIFIED_SINCE, &modified).send().await.unwrap();
    assert_eq!(by_date.status(), 304);

    // A tag that does not match wins over a date that would.
    let stale = client()
        .get(&url)
        .header(header::IF_NONE_MATCH, "W/\"something-else\"")
        .header(header::IF_MODIFIED_SINCE, &modified)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);

    // The SPA's index, served for a route, revalidates too.
    let route = client().get(format!("{}/executions/7", server.url)).send().await.unwrap();
    let route_tag = route.headers()[header::ETAG].clone();
    let again = client()
        .get(format!("{}/executions/7", server.url))
        .header(header::IF_NONE_MATCH, route_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
}

#[tokio::test]
async fn ranges_and_head_are_answered() {
    let root = site();
    let server = serve(root.path()).await;
    let url = format!("{}/pixel.png", server.url);
    let whole = client().get(&url).send().await.unwrap();
    let etag = whole.headers()[header::ETAG].clone();
    let part = client().get(&url).header(header::RANGE, "bytes=8-11").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()[header::CONTENT_RANGE], "bytes 8-11/18");
    assert_eq!(part.headers()[header::ETAG], etag, "a range carries the whole file's tag");
    assert_eq!(part.bytes().await.unwrap().as_ref(), b"0123");

    let big = format!("{}/app.3f9a1c2b.js", server.url);
    let range = client()
        .get(&big)
        .header(header::RANGE, "bytes=0-5")
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert!(range.headers().get(header::CONTENT_ENCODING).is_none(), "a range is never compressed");
    assert_eq!(range.bytes().await.unwrap().as_ref(), b"export");

    let head = client().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()[header::CONTENT_LENGTH], "18");
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn precompressed_files_are_preferred_and_the_rest_is_compressed_on_the_fly() {
    let root = site();
    let server = serve(root.path()).await;
    let css = format!("{}/style.css", server.url);
    let brotli = client().get(&css).header(header::ACCEPT_ENCODING, "br, gzip").send().await.unwrap();
    assert_eq!(brotli.headers()[header::CONTENT_ENCODING], "br");
    assert_eq!(brotli.headers()[header::CONTENT_TYPE], "text/css");
    assert_eq!(brotli.bytes().await.unwrap().as_ref(), b"pretend-brotli");
    let gzip = client().get(&css).header(header::ACCEPT_ENCODING, "gzip").send().await.unwrap();
    assert_eq!(gzip.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(gzip.bytes().await.unwrap().as_ref(), b"pretend-gzip");
    let plain = client().get(&css).send().await.unwrap();
    assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());

    let js = format!("{}/app.3f9a1c2b.js", server.url);
    let original = fs_err::read(root.path().join("app.3f9a1c2b.js")).unwrap();
    let compressed = client().get(&js).header(header::ACCEPT_ENCODING, "gzip").send().await.unwrap();
    assert_eq!(compressed.headers()[header::CONTENT_ENCODING], "gzip");
    assert!(compressed.headers()[header::VARY].to_str().unwrap().contains("accept-encoding"));
    let body = compressed.bytes().await.unwrap();
    assert!(body.starts_with(&[0x1f, 0x8b]) && body.len() < original.len() / 10, "{} bytes", body.len());
}

/// Sends `path` as written, byte for byte (clients normalise `..` away); the answer's status and
/// body.
fn raw_get(address: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    (status, answer)
}

#[tokio::test]
async fn nothing_outside_the_root_is_ever_served() {
    let root = site();
    // A secret next to the root, where `..` would lead.
    fs_err::write(root.path().parent().unwrap().join("masstock-web-secret.txt"), "outside-the-root").ok();
    let server = serve(root.path()).await;
    let attempts = [
        "/../masstock-web-secret.txt",
        "/%2e%2e/masstock-web-secret.txt",
        "/%2E%2E%2Fmasstock-web-secret.txt",
        "/..%2fmasstock-web-secret.txt",
        "/..%5cmasstock-web-secret.txt",
        "/docs/../../masstock-web-secret.txt",
        "/%252e%252e/masstock-web-secret.txt",
        "/../../../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "//etc/passwd",
        "/etc/passwd%00.png",
    ];
    let address = server.address;
    for attempt in attempts {
        let (status, answer) = tokio::task::spawn_blocking(move || raw_get(address, attempt)).await.unwrap();
        assert!(
            !answer.contains("outside-the-root") && !answer.contains("root:x:0:0"),
            "{attempt}: {status}\n{answer}"
        );
        assert!(status.starts_with("HTTP/1.1 "), "{attempt}: {status}");
    }
    let _ = fs_err::remove_file(root.path().parent().unwrap().join("masstock-web-secret.txt"));
}

/// The binary, as a container runs it.
#[test]
fn the_binary_serves_checks_its_health_logs_and_stops_cleanly() {
    let root = site();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_masstock-web"))
        .args(["--root", root.path().to_str().unwrap(), "--port", &port.to_string()])
        .env_clear()
        .env("APP_ENV", "local")
        .env("NO_COLOR", "1")
        .stderr(log.reopen().unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let health_url = format!("http://127.0.0.1:{port}/health");
    let healthcheck = || {
        Command::new(env!("CARGO_BIN_EXE_masstock-web")).args(["healthcheck", "--url", &health_url]).status().unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !healthcheck().success() {
        assert!(std::time::Instant::now() < deadline, "not healthy: {}", fs_err::read_to_string(log.path()).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = raw_get(([127, 0, 0, 1], port).into(), "/executions/1");
    assert_eq!(status, "HTTP/1.1 200 OK");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    assert!(!healthcheck().success(), "a stopped server is not healthy");
    let logs = fs_err::read_to_string(log.path()).unwrap();
    assert!(logs.contains("path=/executions/1") && logs.contains("status=200"), "{logs}");
}

#[test]
fn a_root_without_index_html_is_refused() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_masstock-web"))
        .args(["--root", empty.path().to_str().unwrap(), "--port", "0"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a folder with an index.html (--root or WEB_ROOT)"), "{stderr}");
}

/// The shipped pages parse without a single error under html5lib's strict HTML5 parser (from the
/// bootstrap's venv): what a browser would silently repair is a defect here.
#[test]
fn the_shipped_pages_are_well_formed_html5() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(python.exists(), "no Python venv at {}: run `script/bootstrap`", python.display());
    let pages = ["app/index.html", "vitrine/index.html"].map(|page| Path::new(env!("CARGO_MANIFEST_DIR")).join(page));
    let script = "import sys, html5lib\n\
                  for page in sys.argv[1:]:\n\
                  \x20   parser = html5lib.HTMLParser(strict=True)\n\
                  \x20   parser.parse(open(page, 'rb'))\n\
                  \x20   print(page, 'ok')";
    let output = Command::new(python).arg("-c").arg(script).args(&pages).output().unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What caches need to keep variants apart: `Vary` everywhere, a tag per encoding actually sent.
#[tokio::test]
async fn each_encoding_has_its_own_tag_and_every_file_answer_varies_on_it() {
    let root = site();
    let server = serve(root.path()).await;
    let css = format!("{}/style.css", server.url);
    let brotli = client().get(&css).header(header::ACCEPT_ENCODING, "br").send().await.unwrap();
    assert_eq!(brotli.headers()[header::VARY], "accept-encoding", "a precompressed answer");
    let brotli_tag = brotli.headers()[header::ETAG].clone();
    let revalidated = client()
        .get(&css)
        .header(header::ACCEPT_ENCODING, "br")
        .header(header::IF_NONE_MATCH, &brotli_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert_eq!(revalidated.headers()[header::VARY], "accept-encoding", "a 304");

    let js = format!("{}/app.3f9a1c2b.js", server.url);
    let plain = client().get(&js).send().await.unwrap();
    let gzip = client().get(&js).header(header::ACCEPT_ENCODING, "gzip").send().await.unwrap();
    assert_eq!(gzip.headers()[header::CONTENT_ENCODING], "gzip");
    let (plain_tag, gzip_tag) = (plain.headers()[header::ETAG].clone(), gzip.headers()[header::ETAG].clone());
    assert_ne!(plain_tag, gzip_tag, "a body compressed on the fly is another representation");
    let wrong_variant = client().get(&js).header(header::IF_NONE_MATCH, &gzip_tag).send().await.unwrap();
    assert_eq!(wrong_variant.status(), 200, "the gzip tag does not validate the plain body");
    let modified = plain.headers()[header::LAST_MODIFIED].clone();
    let by_date = client().get(&js).header(header::IF_MODIFIED_SINCE, modified).send().await.unwrap();
    assert_eq!(by_date.status(), 304);
    assert_eq!(
        by_date.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable",
        "a 304 keeps it immutable"
    );

    // If-None-Match is evaluated before Range.
    let png = format!("{}/pixel.png", server.url);
    let tag = client().get(&png).send().await.unwrap().headers()[header::ETAG].clone();
    let ranged =
        client().get(&png).header(header::RANGE, "bytes=0-3").header(header::IF_NONE_MATCH, tag).send().await.unwrap();
    assert_eq!(ranged.status(), 304);
}
