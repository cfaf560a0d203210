//! A browser's CORS exchange with the API, through the edge ([`exchange`]: the preflight and
//! the real request), and its judgement against deploy.toml's `[cors]` ([`judge`]).
//! `masstockctl cors test` and `doctor` both use them.
//!
//! One of the reference's troubleshooting scenarios as a command that names the cause. It sends the
//! browser's two requests to the site with `cors = true` through `health::edge_client` (the same
//! client `health`'s site checks use) and `judge`s the answers against `[cors]`: a pure function
//! from the two answers to the verdict and its reasons, unit-tested piece by piece. The preflight
//! is nginx's (the template answers it at the edge), the real request is the API's, so a reason
//! says which of the two to redeploy. It reads one variable of the API container, `CORS_ORIGIN`
//! (`cors_origin_in`), and never prints the others, which hold secrets; a container that is absent
//! or an engine that is unreachable is a note on stderr, not a failure, since the requests already
//! say whether CORS works. `doctor` sends the same exchange (`exchange`) and applies the same
//! `judge` and `origins_differ`.
//!
//! Tests (`tests/it/diagnose.rs`): a real nginx rendered from deploy.toml runs in front of a
//! stand-in API that answers as the API's CORS layer does, and deploy.toml is then changed to
//! another origin without rendering again (the wrong-origin fault).

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::Docker;
use serde::Serialize;

use crate::config::{Cors, Site, Stack};
use crate::docker;
use crate::health;

/// How long each of the two requests may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The headers the preflight announces, as the app's `fetch` with a bearer token and JSON does.
const REQUESTED_HEADERS: [&str; 2] = ["content-type", "authorization"];

/// One answer: its status, and its `Access-Control-*` and `Vary` headers (names in lowercase,
/// repeated headers joined with `, `).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Answer {
    pub status: Option<u16>,
    pub headers: BTreeMap<String, String>,
    /// Why no answer came.
    #[serde(skip)]
    pub error: Option<String>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The whole exchange and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub origin: String,
    pub url: String,
    pub preflight: Answer,
    pub request: Answer,
    pub container_cors_origin: Option<String>,
    pub ok: bool,
    pub verdict: String,
    pub reasons: Vec<String>,
}

/// The enabled site whose `cors = true`: the API's.
#[must_use]
pub fn api_site(stack: &Stack) -> Option<&Site> {
    stack.sites().find(|(_, site)| site.cors).map(|(_, site)| site)
}

/// A browser's two requests from `origin` to `url` through `client`: the preflight, then the
/// real `GET`.
pub async fn exchange(client: &reqwest::Client, url: &str, origin: &str) -> (Answer, Answer) {
    let preflight = send(
        client
            .request(reqwest::Method::OPTIONS, url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", REQUESTED_HEADERS.join(",")),
    )
    .await;
    let request = send(client.get(url).header("Origin", origin)).await;
    (preflight, request)
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    match request.send().await {
        Ok(response) => {
            let mut headers: BTreeMap<String, String> = BTreeMap::new();
            for (name, value) in response.headers() {
                let name = name.as_str();
                if name.starts_with("access-control-") || name == "vary" {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    headers
                        .entry(name.to_owned())
                        .and_modify(|joined| {
                            joined.push_str(", ");
                            joined.push_str(&value);
                        })
                        .or_insert(value);
                }
            }
            Answer { status: Some(response.status().as_u16()), headers, error: None }
        }
        Err(error) => Answer { status: None, headers: BTreeMap::new(), error: Some(health::reqwest_reason(&error)) },
    }
}

/// Why a container's `CORS_ORIGIN` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CorsOriginError {
    #[error("no container `{0}`: its `CORS_ORIGIN` is not compared")]
    NoContainer(String),
    /// The engine refused the inspection: its own message.
    #[error("cannot inspect `{container}`: {message}")]
    Inspect { container: String, message: String },
}

/// The container's `CORS_ORIGIN` (`Ok(None)` when it has none), or why it could not be read.
pub async fn container_cors_origin(docker: &Docker, container: &str) -> Result<Option<String>, CorsOriginError> {
    let inspected = docker.inspect_container(container, None).await.map_err(|error| {
        if docker::is_not_found(&error) {
            CorsOriginError::NoContainer(container.to_owned())
        } else {
            CorsOriginError::Inspect { container: container.to_owned(), message: docker::engine_message(&error) }
        }
    })?;
    let environment = inspected.config.and_then(|config| config.env).unwrap_or_default();
    Ok(cors_origin_in(&environment))
}

/// `CORS_ORIGIN` from a container's `NAME=value` list; every other variable is left unread.
#[must_use]
pub fn cors_origin_in(environment: &[String]) -> Option<String> {
    environment.iter().find_map(|variable| variable.strip_prefix("CORS_ORIGIN=")).map(str::to_owned)
}

/// Why a container's `CORS_ORIGIN` and `[cors] origins` disagree, if they do (order and spaces
/// aside, as the API reads it).
#[must_use]
pub fn origins_differ(container: &str, container_value: Option<&str>, declared: &[String]) -> Option<String> {
    let Some(value) = container_value else {
        return Some(format!(
            "`{container}` has no `CORS_ORIGIN`, while `[cors] origins` is `{}`: `masstockctl deploy` sets it",
            declared.join(",")
        ));
    };
    let mut running: Vec<&str> = value.split(',').map(str::trim).filter(|origin| !origin.is_empty()).collect();
    let mut wanted: Vec<&str> = declared.iter().map(String::as_str).collect();
    running.sort_unstable();
    running.dedup();
    wanted.sort_unstable();
    wanted.dedup();
    (running != wanted).then(|| {
        format!(
            "`{container}` runs with `CORS_ORIGIN={value}`, but `[cors] origins` is `{}`: `masstockctl deploy` \
             recreates it with deploy.toml's",
            declared.join(",")
        )
    })
}

/// The verdict on the exchange.
#[must_use]
pub fn judge(
    cors: &Cors,
    origin: &str,
    url: &str,
    preflight: Answer,
    request: Answer,
    container_cors_origin: Option<String>,
    container: &str,
) -> Report {
    let allowed = cors.origins.iter().any(|listed| listed == origin);
    let mut reasons = Vec::new();
    let redeploy = "the edge does not follow deploy.toml's `[cors]` (`masstockctl deploy` renders nginx's site again)";
    for (what, answer) in [("the preflight", &preflight), ("the request", &request)] {
        if let Some(error) = &answer.error {
            reasons.push(format!("{what} got no answer: {error}"));
        }
    }
    if allowed {
        if let Some(status) = preflight.status.filter(|status| *status != 204) {
            reasons.push(format!("the preflight answered {status}, not 204"));
        }
        if preflight.status.is_some() {
            check_allow_origin("the preflight", &preflight, origin, cors.credentials, redeploy, &mut reasons);
            if preflight.header("access-control-allow-origin") == Some(origin) {
                check_preflight_grants(cors, &preflight, redeploy, &mut reasons);
            }
        }
        if request.status.is_some() {
            check_allow_origin("the request's answer", &request, origin, cors.credentials, "", &mut reasons);
        }
    } else {
        for (what, answer) in [("the preflight", &preflight), ("the request's answer", &request)] {
            if let Some(granted) = answer.header("access-control-allow-origin") {
                reasons.push(format!(
                    "{what} allows `{origin}` (`Access-Control-Allow-Origin: {granted}`), which `[cors] origins` \
                     does not list: {}",
                    if what == "the preflight" { redeploy } else { "the API runs with another `CORS_ORIGIN`" }
                ));
            }
        }
    }
    // A container we could not read (or that does not exist) is noted by the caller, not judged.
    if let Some(reason) =
        container_cors_origin.as_deref().and_then(|value| origins_differ(container, Some(value), &cors.origins))
    {
        reasons.push(reason);
    }
    let ok = reasons.is_empty();
    let verdict = match (ok, allowed) {
        (true, true) => format!("ok: `{origin}` is allowed, as deploy.toml wants"),
        (true, false) => format!("ok: `{origin}` is refused, as deploy.toml wants"),
        (false, true) => {
            format!("broken: `{origin}` is listed in `[cors] origins`, but a browser would not get through")
        }
        (false, false) => format!("broken: `{origin}` is not listed in `[cors] origins`, but is not refused cleanly"),
    };
    Report {
        origin: origin.to_owned(),
        url: url.to_owned(),
        preflight,
        request,
        container_cors_origin,
        ok,
        verdict,
        reasons,
    }
}

/// `Access-Control-Allow-Origin` is the origin itself (never `*` with credentials), with
/// `-Allow-Credentials: true` when credentials are on.
fn check_allow_origin(
    what: &str,
    answer: &Answer,
    origin: &str,
    credentials: bool,
    fix: &str,
    reasons: &mut Vec<String>,
) {
    let fix = if fix.is_empty() {
        "the API's `CORS_ORIGIN` does not list it (`masstockctl deploy` sets it from `[cors] origins`)".to_owned()
    } else {
        fix.to_owned()
    };
    match answer.header("access-control-allow-origin") {
        None => reasons.push(format!("{what} carries no `Access-Control-Allow-Origin` for `{origin}`: {fix}")),
        Some("*") if credentials => reasons.push(format!(
            "{what} answers `Access-Control-Allow-Origin: *`, which browsers refuse with credentials: it must echo \
             `{origin}`"
        )),
        Some("*") => {}
        Some(granted) if granted != origin => {
            reasons.push(format!("{what} answers `Access-Control-Allow-Origin: {granted}`, not `{origin}`: {fix}"));
        }
        Some(_) => {}
    }
    if credentials && answer.header("access-control-allow-credentials") != Some("true") {
        reasons.push(format!(
            "{what} lacks `Access-Control-Allow-Credentials: true`, which `[cors] credentials = true` needs for \
             cookies"
        ));
    }
}

/// The preflight grants GET, the requested headers, and says `Vary: Origin`.
fn check_preflight_grants(cors: &Cors, preflight: &Answer, fix: &str, reasons: &mut Vec<String>) {
    let listed = |name: &str| -> Vec<String> {
        preflight
            .header(name)
            .unwrap_or("")
            .split(',')
            .map(|item| item.trim().to_ascii_lowercase())
            .filter(|item| !item.is_empty())
            .collect()
    };
    let wildcard_allowed = !cors.credentials;
    let methods = listed("access-control-allow-methods");
    if !(methods.iter().any(|method| method == "get") || wildcard_allowed && methods.iter().any(|m| m == "*")) {
        reasons.push(format!(
            "the preflight's `Access-Control-Allow-Methods` (`{}`) does not cover GET: {fix}",
            preflight.header("access-control-allow-methods").unwrap_or("")
        ));
    }
    let headers = listed("access-control-allow-headers");
    let missing: Vec<&str> = REQUESTED_HEADERS
        .into_iter()
        .filter(|wanted| {
            !(headers.iter().any(|header| header == wanted) || wildcard_allowed && headers.iter().any(|h| h == "*"))
        })
        .collect();
    if !missing.is_empty() {
        reasons.push(format!(
            "the preflight's `Access-Control-Allow-Headers` (`{}`) does not cover `{}`: {fix}",
            preflight.header("access-control-allow-headers").unwrap_or(""),
            missing.join("`, `")
        ));
    }
    if !listed("vary").iter().any(|item| item == "origin") {
        reasons.push(format!(
            "the preflight lacks `Vary: Origin`: a cache could serve one origin's answer to another ({fix})"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors {
            origins: vec!["https://app.example".to_owned(), "https://admin.example".to_owned()],
            methods: vec!["GET".to_owned(), "POST".to_owned()],
            headers: vec!["Content-Type".to_owned(), "Authorization".to_owned()],
            max_age: crate::config::units::Duration(Duration::from_secs(60)),
            credentials: true,
        }
    }

    fn answer(status: u16, headers: &[(&str, &str)]) -> Answer {
        Answer {
            status: Some(status),
            headers: headers.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect(),
            error: None,
        }
    }

    const ORIGIN: &str = "https://app.example";

    fn good_preflight() -> Answer {
        answer(
            204,
            &[
                ("access-control-allow-origin", ORIGIN),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "GET, POST"),
                ("access-control-allow-headers", "Content-Type, Authorization"),
                ("vary", "Origin"),
            ],
        )
    }

    fn good_request() -> Answer {
        answer(
            401,
            &[
                ("access-control-allow-origin", ORIGIN),
                ("access-control-allow-credentials", "true"),
                ("vary", "Origin"),
            ],
        )
    }

    #[test]
    fn only_cors_origin_is_read_from_the_container_environment() {
        let environment = vec![
            "JWT_SECRET=do-not-show".to_owned(),
            "CORS_ORIGIN=https://app.example,https://admin.example".to_owned(),
        ];
        assert_eq!(cors_origin_in(&environment).as_deref(), Some("https://app.example,https://admin.example"));
        assert_eq!(cors_origin_in(&["PORT=3000".to_owned()]), None);
        let declared = cors().origins;
        assert_eq!(origins_differ("c", Some("https://admin.example, https://app.example"), &declared), None);
        let reason = origins_differ("masstock_api", Some("https://old.example"), &declared).unwrap();
        assert!(
            reason.contains("CORS_ORIGIN=https://old.example") && reason.contains("masstockctl deploy"),
            "{reason}"
        );
        assert!(origins_differ("masstock_api", None, &declared).is_some());
    }

    #[test]
    fn an_allowed_origin_passes_with_every_header() {
        let report = judge(&cors(), ORIGIN, "u", good_preflight(), good_request(), None, "c");
        assert!(report.ok, "{:?}", report.reasons);
        assert!(report.verdict.contains("allowed, as deploy.toml wants"));
    }

    #[test]
    fn each_missing_piece_is_a_reason() {
        let mut preflight = good_preflight();
        preflight.headers.insert("access-control-allow-origin".to_owned(), "*".to_owned());
        let report = judge(&cors(), ORIGIN, "u", preflight, good_request(), None, "c");
        assert!(!report.ok);
        assert!(report.reasons[0].contains("`Access-Control-Allow-Origin: *`"), "{:?}", report.reasons);

        let mut preflight = good_preflight();
        preflight.status = Some(200);
        preflight.headers.remove("vary");
        preflight.headers.insert("access-control-allow-headers".to_owned(), "Content-Type".to_owned());
        let report = judge(&cors(), ORIGIN, "u", preflight, answer(401, &[]), None, "c");
        let reasons = report.reasons.join("\n");
        assert!(reasons.contains("answered 200, not 204"), "{reasons}");
        assert!(reasons.contains("does not cover `authorization`"), "{reasons}");
        assert!(reasons.contains("lacks `Vary: Origin`"), "{reasons}");
        assert!(reasons.contains("the request's answer carries no `Access-Control-Allow-Origin`"), "{reasons}");

        let report = judge(&cors(), ORIGIN, "u", good_preflight(), good_request(), Some("https://x".to_owned()), "c");
        assert!(!report.ok);
        assert!(report.reasons[0].contains("`c` runs with `CORS_ORIGIN=https://x`"), "{:?}", report.reasons);
    }

    #[test]
    fn a_foreign_origin_is_ok_only_when_refused() {
        let foreign = "https://evil.example";
        let refused = judge(&cors(), foreign, "u", answer(204, &[]), answer(401, &[("vary", "Origin")]), None, "c");
        assert!(refused.ok, "{:?}", refused.reasons);
        assert!(refused.verdict.contains("refused, as deploy.toml wants"));
        let leaked = judge(
            &cors(),
            foreign,
            "u",
            answer(204, &[("access-control-allow-origin", foreign)]),
            answer(401, &[]),
            None,
            "c",
        );
        assert!(!leaked.ok);
        assert!(leaked.reasons[0].contains("which `[cors] origins` does not list"), "{:?}", leaked.reasons);
    }

    #[test]
    fn no_answer_is_a_failure() {
        let lost = Answer { error: Some("connection refused".to_owned()), ..Answer::default() };
        let report = judge(&cors(), "https://evil.example", "u", lost.clone(), lost, None, "c");
        assert!(!report.ok);
        assert!(report.reasons[0].contains("got no answer: connection refused"));
    }
}
