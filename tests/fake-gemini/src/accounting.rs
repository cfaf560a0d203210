//! What the fake saw: one record per request, the largest number in any window, and counts by status.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One request to `/v1beta/models/…`, recorded as it arrived. Never holds the API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Counts from 0 in arrival order, for the life of the server (a reset does not restart it).
    pub id: u64,
    pub arrived_at: Instant,
    pub arrived_at_system: SystemTime,
    /// The model named in the path, e.g. `gemini-2.5-flash-image`.
    pub model: String,
    /// The text parts of the user's contents, joined by newlines; `None` when the body did not parse.
    pub prompt: Option<String>,
    /// Whether the API key was accepted.
    pub key_accepted: bool,
    /// Whether the request passed the key, the rate limits and the body checks, and so reached
    /// generation (latency, triggers, failure rate).
    pub reached_generation: bool,
    /// The status answered; `None` while the request is in flight.
    pub status: Option<u16>,
}

/// The summary `GET /_fake/stats` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Every request recorded.
    pub requests: usize,
    /// The largest number of arrivals in any 60 s window.
    pub max_in_60s: usize,
    /// Requests not answered yet.
    pub in_flight: usize,
    /// Answered requests by status (JSON keys are the status as a string: `"200"`, `"429"`).
    pub by_status: BTreeMap<u16, usize>,
}

impl Stats {
    pub(crate) fn of(requests: &[RecordedRequest]) -> Self {
        let mut by_status = BTreeMap::new();
        for status in requests.iter().filter_map(|request| request.status) {
            *by_status.entry(status).or_insert(0) += 1;
        }
        Self {
            requests: requests.len(),
            max_in_60s: max_in_window(requests.iter().map(|request| request.arrived_at), Duration::from_secs(60)),
            in_flight: requests.iter().filter(|request| request.status.is_none()).count(),
            by_status,
        }
    }
}

/// The largest number of instants in any half-open window `[t, t + window)`: two requests exactly
/// `window` apart are never counted together, so a limiter allowing N per minute scores at most N.
pub(crate) fn max_in_window(instants: impl IntoIterator<Item = Instant>, window: Duration) -> usize {
    let mut instants: Vec<Instant> = instants.into_iter().collect();
    instants.sort_unstable();
    let mut largest = 0;
    let mut window_start = 0;
    for (window_end, arrived_at) in instants.iter().enumerate() {
        // With a zero window, even the newest instant falls out of its own window.
        while window_start <= window_end && arrived_at.duration_since(instants[window_start]) >= window {
            window_start += 1;
        }
        largest = largest.max(window_end + 1 - window_start);
    }
    largest
}

/// A record as `GET /_fake/requests` answers it.
#[derive(Debug, Serialize)]
pub(crate) struct RecordedRequestView<'request> {
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub arrived_at_unix_ms: u128,
    pub model: &'request str,
    pub prompt: Option<&'request str>,
    pub key_accepted: bool,
    pub reached_generation: bool,
    pub status: Option<u16>,
}

impl<'request> From<&'request RecordedRequest> for RecordedRequestView<'request> {
    fn from(request: &'request RecordedRequest) -> Self {
        Self {
            id: request.id,
            arrived_at_unix_ms: request.arrived_at_system.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis(),
            model: &request.model,
            prompt: request.prompt.as_deref(),
            key_accepted: request.key_accepted,
            reached_generation: request.reached_generation,
            status: request.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, offsets_ms: &[u64]) -> Vec<Instant> {
        offsets_ms.iter().map(|offset| start + Duration::from_millis(*offset)).collect()
    }

    #[test]
    fn no_requests_or_no_time_make_an_empty_window() {
        assert_eq!(max_in_window(Vec::new(), Duration::from_secs(60)), 0);
        assert_eq!(max_in_window(at(Instant::now(), &[0, 0, 1]), Duration::ZERO), 0);
    }

    #[test]
    fn the_busiest_window_wins() {
        let start = Instant::now();
        // Two early, then four within 500 ms a minute later.
        let instants = at(start, &[0, 100, 60_000, 60_100, 60_200, 60_499]);
        assert_eq!(max_in_window(instants.clone(), Duration::from_millis(500)), 4);
        assert_eq!(max_in_window(instants.clone(), Duration::from_millis(499)), 3);
        assert_eq!(max_in_window(instants.clone(), Duration::from_secs(60)), 4);
        assert_eq!(max_in_window(instants.clone(), Duration::from_millis(60_400)), 5);
        assert_eq!(max_in_window(instants, Duration::from_secs(61)), 6);
    }

    #[test]
    fn windows_are_half_open() {
        let start = Instant::now();
        let instants = at(start, &[0, 1000, 2000]);
        assert_eq!(max_in_window(instants.clone(), Duration::from_secs(1)), 1);
        assert_eq!(max_in_window(instants, Duration::from_millis(1001)), 2);
    }

    #[test]
    fn order_of_arrival_does_not_matter() {
        let start = Instant::now();
        let instants = at(start, &[5000, 0, 4000, 100, 4500]);
        assert_eq!(max_in_window(instants.clone(), Duration::from_secs(1)), 2);
        assert_eq!(max_in_window(instants, Duration::from_millis(1001)), 3);
    }

    #[test]
    fn stats_count_by_status_and_in_flight() {
        let start = Instant::now();
        let request = |id: u64, status: Option<u16>| RecordedRequest {
            id,
            arrived_at: start + Duration::from_secs(id * 30),
            arrived_at_system: SystemTime::now(),
            model: "m".into(),
            prompt: Some("p".into()),
            key_accepted: true,
            reached_generation: true,
            status,
        };
        let stats = Stats::of(&[request(0, Some(200)), request(1, Some(429)), request(2, Some(200)), request(3, None)]);
        assert_eq!(stats.requests, 4);
        assert_eq!(stats.max_in_60s, 2);
        assert_eq!(stats.in_flight, 1);
        assert_eq!(stats.by_status, BTreeMap::from([(200, 2), (429, 1)]));
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["by_status"]["200"], 2);
    }
}
