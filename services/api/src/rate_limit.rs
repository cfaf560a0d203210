//! Per-client rate limits held in Redis, so every API process counts the same requests:
//! `RATE_LIMIT_GENERAL` on every route but the probes, and `RATE_LIMIT_AUTH` on top of it for
//! `POST /api/v1/auth/login`. Each client's window starts at its first request and lasts the
//! rate's period (one key with an expiry, counted atomically by one Lua script): no clock is
//! compared across processes.
//!
//! Over the limit: 429 with `Retry-After` and the `RateLimit-*` headers. When Redis cannot be
//! reached the limit is not enforced (logged): executions are unavailable then anyway, and
//! argon2 bounds how fast passwords can be tried.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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
    let key = format!("{}:{scope}:{client}", state.settings.rate_limit_prefix);
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
        match tokio::time::timeout(Duration::from_secs(1), count(&state, scope, rate, client)).await {
            Ok(Ok(verdict)) => verdicts.push(verdict),
            Ok(Err(error)) => tracing::warn!(%error, "rate limit not enforced: redis failed"),
            Err(_) => tracing::warn!("rate limit not enforced: redis did not answer"),
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
