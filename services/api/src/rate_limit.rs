//! Per-client rate limits held in Redis, so every API process counts the same requests:
//! `RATE_LIMIT_GENERAL` on every route but the probes, and `RATE_LIMIT_AUTH` on top of it for
//! `POST /api/v1/auth/login`. Each client's window starts at its first request and lasts the
//! rate's period (one key with an expiry, counted atomically by one Lua script): no clock is
//! compared across processes.
//!
//! Over the limit: 429 with `Retry-After` and the `RateLimit-*` headers.
//!
//! **Buckets.** An IPv4 client is its own bucket; an IPv6 client counts with its whole `/64`
//! (`2001:db8:1:2::/64`), because one subscriber is handed a /64 at least and picks any address in
//! it at will (RFC 4941 privacy addresses), so per-address buckets would be per-request ones.
//! IPv4-mapped IPv6 addresses count as the IPv4 address.
//!
//! **A Redis that fails or hangs costs a request a few milliseconds at most.** Each count gets
//! [`CALL_TIMEOUT`] (25 ms; a healthy Redis answers in well under one). A circuit breaker sits in
//! front: after [`FAILURES_TO_OPEN`] consecutive failures or timeouts it opens, and for
//! [`OPEN_FOR`] requests do not call Redis at all; then one request at a time probes it
//! (half-open), closing the breaker when it answers and opening it again when it does not. While
//! Redis is away the limits **fail open** (not enforced, logged when the breaker opens and closes):
//! executions are unavailable then anyway, and argon2 bounds how fast passwords can be tried,
//! whereas failing closed would turn a Redis outage into a whole-API outage.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::config::Cidr;
use crate::error::ApiError;

/// `count` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub window: Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `100/60s`, `5/1m`, `10/s` (the format masstockctl writes).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("`{text}` is not a rate like `100/60s`");
        let (count, window) = text.split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().ok().filter(|count| *count > 0).ok_or_else(invalid)?;
        let window = window.trim();
        let digits = window.find(|c: char| !c.is_ascii_digit()).unwrap_or(window.len());
        let number: u64 = if digits == 0 { 1 } else { window[..digits].parse().map_err(|_| invalid())? };
        let unit = match &window[digits..] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        let window = unit
            .checked_mul(u32::try_from(number).map_err(|_| invalid())?)
            .filter(|window| !window.is_zero())
            .ok_or_else(invalid)?;
        Ok(Self { count, window })
    }
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy, in which case the
/// address it reports (`X-Real-IP`, else the nearest untrusted `X-Forwarded-For` hop).
#[must_use]
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |address: IpAddr| trusted.iter().any(|cidr| cidr.contains(address));
    if !is_trusted(peer) {
        return peer;
    }
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(real) = header("x-real-ip").and_then(|value| value.trim().parse().ok()) {
        return real;
    }
    // From the nearest hop outwards; a hop that is not an address ends the walk, since anything
    // further left is the client's to write.
    for hop in header("x-forwarded-for").into_iter().flat_map(|value| value.rsplit(',')) {
        match hop.trim().parse::<IpAddr>() {
            Ok(hop) if is_trusted(hop) => {}
            Ok(hop) => return hop,
            Err(_) => break,
        }
    }
    peer
}

/// The bucket a client counts in: an IPv4 address alone, an IPv6 address's `/64`.
#[must_use]
pub fn bucket(client: IpAddr) -> String {
    match client.to_canonical() {
        IpAddr::V4(address) => address.to_string(),
        IpAddr::V6(address) => {
            let network = Ipv6Addr::from(u128::from(address) & (u128::MAX << 64));
            format!("{network}/64")
        }
    }
}

/// How long one count may take before it counts as a failure.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(25);
/// Consecutive failures that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;
/// How long an open breaker lets requests through without calling Redis.
pub const OPEN_FOR: Duration = Duration::from_secs(5);

/// The rate limiter's circuit breaker (see the module's docs).
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<BreakerState>,
    failures_to_open: u32,
    open_for: Duration,
    probe_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One request is probing Redis; one that started long ago was cancelled (its client left).
    HalfOpen {
        since: Instant,
    },
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new(FAILURES_TO_OPEN, OPEN_FOR, CALL_TIMEOUT)
    }
}

impl Breaker {
    #[must_use]
    pub fn new(failures_to_open: u32, open_for: Duration, probe_timeout: Duration) -> Self {
        Self { state: Mutex::new(BreakerState::Closed { failures: 0 }), failures_to_open, open_for, probe_timeout }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // The state is a plain value, valid whatever a panicking holder was doing.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this request may call Redis now.
    #[must_use]
    pub fn admit(&self) -> bool {
        let mut state = self.state();
        let now = Instant::now();
        match *state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now < until => false,
            BreakerState::HalfOpen { since } if now.duration_since(since) < 4 * self.probe_timeout => false,
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => {
                *state = BreakerState::HalfOpen { since: now };
                true
            }
        }
    }

    /// Redis answered.
    pub fn succeeded(&self) {
        let mut state = self.state();
        if !matches!(*state, BreakerState::Closed { .. }) {
            tracing::info!("the rate limiter reaches redis again; limits are enforced");
        }
        *state = BreakerState::Closed { failures: 0 };
    }

    /// Redis failed or did not answer in time.
    pub fn failed(&self) {
        let mut state = self.state();
        let open = BreakerState::Open { until: Instant::now() + self.open_for };
        match *state {
            BreakerState::Closed { failures } if failures + 1 < self.failures_to_open => {
                *state = BreakerState::Closed { failures: failures + 1 };
            }
            BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => {
                tracing::warn!(open_for = ?self.open_for, "the rate limiter cannot reach redis; limits are not enforced (fail open) until it answers");
                *state = open;
            }
            BreakerState::Open { .. } => {}
        }
    }
}

/// Counts one request in `key`'s current window; returns the count and the milliseconds left.
const COUNT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
";

struct Verdict {
    rate: Rate,
    count: u64,
    reset: Duration,
}

impl Verdict {
    fn exceeded(&self) -> bool {
        self.count > u64::from(self.rate.count)
    }

    fn remaining(&self) -> u64 {
        u64::from(self.rate.count).saturating_sub(self.count)
    }

    fn headers(&self, headers: &mut HeaderMap) {
        let remaining = self.remaining();
        // Rounded up: a client that waits this long is never refused again for the same window.
        let reset = self.reset.as_millis().div_ceil(1000).max(1);
        let mut set = |name: &'static str, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        set("ratelimit-limit", self.rate.count.to_string());
        set("ratelimit-remaining", remaining.to_string());
        set("ratelimit-reset", reset.to_string());
        set("ratelimit-policy", format!("{};w={}", self.rate.count, self.rate.window.as_secs()));
        if self.exceeded() {
            set("retry-after", reset.to_string());
        }
    }
}

async fn count(state: &AppState, scope: &str, rate: Rate, client: IpAddr) -> redis::RedisResult<Verdict> {
    let window_ms = u64::try_from(rate.window.as_millis()).unwrap_or(u64::MAX).max(1);
    let key = format!("{}:{scope}:{}", state.settings.rate_limit_prefix, bucket(client));
    let mut connection = state.redis_shared.clone();
    let (count, ttl_ms): (u64, i64) =
        redis::Script::new(COUNT_SCRIPT).key(key).arg(window_ms).invoke_async(&mut connection).await?;
    Ok(Verdict { rate, count, reset: Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(window_ms)) })
}

/// Routes the limits leave alone: probes and metrics are for machines on the inside.
fn exempt(path: &str) -> bool {
    matches!(path, "/health" | "/health/ready" | "/metrics")
}

pub async fn limit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if exempt(request.uri().path()) || request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    let client = client_address(peer.ip(), request.headers(), &state.settings.trusted_proxies);
    let is_login = request.method() == Method::POST && request.uri().path() == "/api/v1/auth/login";
    let mut checks = vec![("general", state.settings.rate_limit_general)];
    if is_login {
        checks.push(("auth", state.settings.rate_limit_auth));
    }
    let mut verdicts = Vec::new();
    for (scope, rate) in checks {
        if !state.limiter_breaker.admit() {
            continue;
        }
        match tokio::time::timeout(CALL_TIMEOUT, count(&state, scope, rate, client)).await {
            Ok(Ok(verdict)) => {
                state.limiter_breaker.succeeded();
                verdicts.push(verdict);
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "rate limit not enforced: redis failed");
                state.limiter_breaker.failed();
            }
            Err(_) => {
                tracing::warn!(timeout = ?CALL_TIMEOUT, "rate limit not enforced: redis did not answer");
                state.limiter_breaker.failed();
            }
        }
    }
    // The limit to report: one that is exceeded, else the one with the fewest requests left.
    let binding = verdicts.into_iter().min_by_key(|verdict| (!verdict.exceeded(), verdict.remaining()));
    let Some(verdict) = binding else { return next.run(request).await };
    if verdict.exceeded() {
        tracing::info!(%client, limit = verdict.rate.count, "rate limited");
        let mut response = ApiError::TooManyRequests.into_response();
        verdict.headers(response.headers_mut());
        return response;
    }
    let mut response = next.run(request).await;
    verdict.headers(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_masstockctl_writes_them() {
        assert_eq!("100/60s".parse::<Rate>().unwrap(), Rate { count: 100, window: Duration::from_secs(60) });
        assert_eq!("5/1m".parse::<Rate>().unwrap(), Rate { count: 5, window: Duration::from_secs(60) });
        assert_eq!("10/s".parse::<Rate>().unwrap(), Rate { count: 10, window: Duration::from_secs(1) });
        for bad in ["", "100", "0/60s", "x/60s", "100/0s", "100/60x"] {
            assert!(bad.parse::<Rate>().is_err(), "`{bad}`");
        }
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_ipv4_clients_alone() {
        let bucket_of = |address: &str| bucket(address.parse().unwrap());
        assert_eq!(bucket_of("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
        assert_eq!(bucket_of("2001:db8:1:2::1"), bucket_of("2001:db8:1:2:ffff:ffff:ffff:ffff"), "one /64, one bucket");
        assert_ne!(bucket_of("2001:db8:1:2::1"), bucket_of("2001:db8:1:3::1"), "the next /64 is someone else");
        assert_eq!(bucket_of("203.0.113.7"), "203.0.113.7");
        assert_ne!(bucket_of("203.0.113.7"), bucket_of("203.0.113.8"), "IPv4 addresses are not grouped");
        assert_eq!(bucket_of("::ffff:203.0.113.7"), "203.0.113.7", "an IPv4-mapped address is its IPv4 address");
        assert_eq!(bucket_of("::1"), "::/64");
    }

    #[test]
    fn the_breaker_opens_after_failures_and_probes_one_request_at_a_time() {
        let open_for = Duration::from_millis(200);
        let breaker = Breaker::new(3, open_for, Duration::from_secs(10));
        for _ in 0..2 {
            assert!(breaker.admit());
            breaker.failed();
        }
        assert!(breaker.admit(), "two failures leave it closed");
        breaker.succeeded();
        for _ in 0..3 {
            assert!(breaker.admit());
            breaker.failed();
        }
        assert!(!breaker.admit(), "three in a row open it: requests skip redis");
        std::thread::sleep(open_for);
        assert!(breaker.admit(), "half-open: one probe");
        assert!(!breaker.admit(), "and only one");
        breaker.failed();
        assert!(!breaker.admit(), "a failed probe opens it again");
        std::thread::sleep(open_for);
        assert!(breaker.admit());
        breaker.succeeded();
        assert!(breaker.admit() && breaker.admit(), "a probe that succeeds closes it");
    }

    #[test]
    fn a_probe_that_never_reports_does_not_keep_the_breaker_half_open() {
        let breaker = Breaker::new(1, Duration::ZERO, Duration::from_millis(10));
        assert!(breaker.admit());
        breaker.failed();
        assert!(breaker.admit(), "the probe, whose request is then cancelled");
        assert!(!breaker.admit());
        std::thread::sleep(Duration::from_millis(50));
        assert!(breaker.admit(), "another probe after four probe timeouts");
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_peers() {
        let trusted: Vec<Cidr> = vec!["127.0.0.0/8".parse().unwrap(), "172.16.0.0/12".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7, 172.18.0.1"));
        let outsider: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_address(outsider, &headers, &trusted),
            outsider,
            "an untrusted peer cannot choose its address"
        );
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(client_address(proxy, &headers, &trusted), "203.0.113.7".parse::<IpAddr>().unwrap());
        headers.insert("x-real-ip", HeaderValue::from_static("203.0.113.9"));
        assert_eq!(client_address(proxy, &headers, &trusted), "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
    }
}
