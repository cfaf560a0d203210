//! CORS for allowed and other origins, and rate limits held across two API processes.

use masstock_api::config::{AppEnv, Secret};
use masstock_schema::MIGRATOR;
use serde_json::{json, Value};

use crate::support::{api_on, client, serve_args, serve_args_on, url_of, user, TestApi, PASSWORD};

const APP: &str = "https://app.masstock.localhost:8443";

#[sqlx::test(migrator = "MIGRATOR")]
async fn allowed_origins_get_cors_headers_and_others_get_none(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, format!("{}/api/v1/auth/login", api.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight(APP).await.unwrap();
    assert_eq!(allowed.status(), 204);
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], APP);
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-allow-methods"], "GET, POST, PUT, DELETE, PATCH, OPTIONS");
    assert_eq!(headers["access-control-allow-headers"], "Content-Type, Authorization, X-Requested-With");
    assert_eq!(headers["access-control-max-age"], "86400");

    let other = preflight("https://evil.example").await.unwrap();
    assert_eq!(other.status(), 204);
    let leaked: Vec<_> = other.headers().keys().filter(|name| name.as_str().starts_with("access-control-")).collect();
    assert!(leaked.is_empty(), "{leaked:?}");

    // The real request: the allowed origin is echoed with credentials; another is not.
    let login = |origin: &'static str| {
        client()
            .post(format!("{}/api/v1/auth/login", api.url))
            .header("origin", origin)
            .json(&json!({ "email": "ana@example.com", "password": PASSWORD }))
            .send()
    };
    let response = login(APP).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], APP);
    assert_eq!(response.headers()["access-control-allow-credentials"], "true");
    assert!(response.headers().get_all("vary").iter().any(|value| value == "Origin"));
    let foreign = login("https://evil.example").await.unwrap();
    assert!(!foreign.headers().contains_key("access-control-allow-origin"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_sixth_login_in_a_minute_is_refused_across_two_processes(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    // Two API processes sharing one Redis namespace, as two replicas would.
    let first_args = serve_args();
    let namespace = first_args.rate_limit_prefix.clone();
    let mut second_args = serve_args();
    second_args.rate_limit_prefix = namespace;
    let mut apis = Vec::new();
    for mut args in [first_args, second_args] {
        args.database.database_url = Secret::from(url_of(&pool).as_str());
        apis.push(TestApi::start(args).await);
    }
    // The test client is a trusted proxy (127.0.0.0/8), so X-Real-IP names the client.
    let client_address = "203.0.113.77";
    let mut statuses = Vec::new();
    let mut last = None;
    for attempt in 0..6 {
        let api = &apis[attempt % 2];
        let response = client()
            .post(format!("{}/api/v1/auth/login", api.url))
            .header("x-real-ip", client_address)
            .json(&json!({ "email": "ana@example.com", "password": "wrong password" }))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        last = Some(response);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    let refused = last.unwrap();
    let headers = refused.headers().clone();
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(headers["ratelimit-limit"], "5");
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert_eq!(headers["ratelimit-policy"], "5;w=60");
    assert_eq!(refused.json::<Value>().await.unwrap()["error"], "rate_limited");

    // Another client address is not affected; the same one is, whatever it does.
    let other = client()
        .post(format!("{}/api/v1/auth/login", apis[0].url))
        .header("x-real-ip", "203.0.113.78")
        .json(&json!({ "email": "ana@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(other.headers()["ratelimit-remaining"], "4");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_general_limit_covers_every_route_but_the_probes(pool: sqlx::PgPool) {
    let mut args = serve_args_on(&pool);
    args.rate_limit_general = "3/60s".into();
    // Not a trusted proxy here: forwarded headers are ignored, the peer address counts.
    args.trusted_proxies = "10.0.0.0/8".into();
    let api = TestApi::start(args).await;
    let mut statuses = Vec::new();
    for attempt in 0..4 {
        let response = client()
            .get(format!("{}/api/v1/workflows", api.url))
            .header("x-real-ip", format!("203.0.113.{attempt}"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429], "a forged X-Real-IP does not reset the count");
    for _ in 0..5 {
        assert_eq!(client().get(format!("{}/health", api.url)).send().await.unwrap().status(), 200);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_ipv6_client_counts_with_its_whole_64(pool: sqlx::PgPool) {
    let mut args = serve_args_on(&pool);
    args.rate_limit_general = "3/60s".into();
    let api = TestApi::start(args).await;
    let from = |address: &'static str| {
        let url = format!("{}/api/v1/workflows", api.url);
        async move { client().get(url).header("x-real-ip", address).send().await.unwrap().status().as_u16() }
    };
    // Four addresses of one /64, as a client rotating its privacy addresses would use.
    let mut statuses = Vec::new();
    for address in ["2001:db8:7:1::1", "2001:db8:7:1::2", "2001:db8:7:1:aaaa::3", "2001:db8:7:1:ffff::4"] {
        statuses.push(from(address).await);
    }
    assert_eq!(statuses, [401, 401, 401, 429], "one bucket for the /64");
    assert_eq!(from("2001:db8:7:2::1").await, 401, "the next /64 has its own");
    let ipv4 = [from("203.0.113.70").await, from("203.0.113.71").await, from("203.0.113.72").await];
    assert_eq!(ipv4, [401, 401, 401], "IPv4 addresses are not grouped");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_hanging_redis_costs_the_limiter_a_few_milliseconds(pool: sqlx::PgPool) {
    // Redis accepts connections and never answers. The limit would refuse the second request if
    // it were counted: every answer is the route's own (401, not signed in), so limits fail open.
    let (address, _hole) = crate::support::black_hole().await;
    let mut args = serve_args_on(&pool);
    args.redis_url = Secret::from(format!("redis://{address}").as_str());
    args.rate_limit_general = "1/60s".into();
    let api = TestApi::start(args).await;
    let http = client();
    let mut latencies = Vec::new();
    for _ in 0..30 {
        let started = std::time::Instant::now();
        let response = http.get(format!("{}/api/v1/workflows", api.url)).send().await.unwrap();
        latencies.push(started.elapsed());
        assert_eq!(response.status(), 401);
    }
    eprintln!("latencies with a hanging redis: {latencies:?}");
    // The first requests pay the call timeout (25 ms) until the breaker opens; the others do not
    // call Redis. The bounds are loose (a loaded machine), but far below the 1 s a request waited
    // on Redis before the breaker.
    let slowest = latencies.iter().max().unwrap();
    assert!(*slowest < std::time::Duration::from_millis(400), "slowest {slowest:?}");
    let after_opening: std::time::Duration = latencies[rate_limit_failures()..].iter().sum();
    assert!(
        after_opening < std::time::Duration::from_millis(50 * 27),
        "{after_opening:?} for the requests after the breaker opened"
    );
}

fn rate_limit_failures() -> usize {
    usize::try_from(masstock_api::rate_limit::FAILURES_TO_OPEN).unwrap()
}
