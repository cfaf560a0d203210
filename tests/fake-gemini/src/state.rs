//! The state the server and its handle share: the knobs, the rate limits, the triggers' counts, the
//! accounting, and the decision each request gets.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;

use crate::accounting::RecordedRequest;
use crate::generate::{GenerateRequest, Triggers, GENERATE_CONTENT};
use crate::google_error::GoogleError;
use crate::png::fnv1a;
use crate::settings::{ImageMode, Settings};

/// The length of the fake's own quota window.
const QUOTA_WINDOW: Duration = Duration::from_secs(60);

/// A request as the handler read it, before any decision.
pub(crate) struct Arrival {
    pub arrived_at: Instant,
    pub arrived_at_system: SystemTime,
    pub model: String,
    pub method: String,
    pub presented_api_key: Option<String>,
    pub request: Result<GenerateRequest, GoogleError>,
}

/// What to answer, and after how long.
pub(crate) struct Decision {
    pub request_id: u64,
    pub delay: Duration,
    pub answer: Answer,
}

pub(crate) enum Answer {
    Error(GoogleError),
    Generated(Generation),
}

/// A 200 answer, built outside the lock.
pub(crate) struct Generation {
    pub model: String,
    pub prompt: String,
    pub kind: ImageMode,
    pub image_size: (u32, u32),
    pub response_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyCheck {
    Missing,
    Invalid,
    Accepted,
}

fn check_api_key(expected: Option<&str>, presented: Option<&str>) -> KeyCheck {
    match (expected, presented) {
        (_, None | Some("")) => KeyCheck::Missing,
        (None, Some(_)) => KeyCheck::Accepted,
        (Some(expected), Some(presented)) if expected == presented => KeyCheck::Accepted,
        (Some(_), Some(_)) => KeyCheck::Invalid,
    }
}

/// `SplitMix64`: small, seedable, and good enough to decide which requests fail.
#[derive(Debug, Clone)]
struct Generator(u64);

impl Generator {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_fraction(&mut self) -> f64 {
        let high_bits = u32::try_from(self.next_u64() >> 32).expect("32 bits fit");
        // 2^32: the fraction stays below 1.
        f64::from(high_bits) / 4_294_967_296.0
    }
}

/// The 429s that `rate_limit_burst` queued.
#[derive(Debug, Clone, Copy)]
struct RateLimitBurst {
    remaining: u32,
    retry_delay: Duration,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub settings: Settings,
    generator: Generator,
    burst: Option<RateLimitBurst>,
    /// Requests admitted by the quota in the last minute, oldest first.
    quota_admissions: VecDeque<Instant>,
    /// How many times each `[flaky:N]` prompt reached generation.
    flaky_arrivals: HashMap<String, u32>,
    pub requests: Vec<RecordedRequest>,
    next_request_id: u64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn new(settings: Settings) -> Self {
        let generator = Generator(settings.seed);
        Self {
            inner: Mutex::new(Inner {
                settings,
                generator,
                burst: None,
                quota_admissions: VecDeque::new(),
                flaky_arrivals: HashMap::new(),
                requests: Vec::new(),
                next_request_id: 0,
            }),
        }
    }

    /// The state; a handler that panicked cannot leave it inconsistent, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the arrival and decides its answer, all under one lock so concurrent requests see
    /// the quota, the burst and the counts one after another.
    pub(crate) fn decide(&self, arrival: &Arrival) -> Decision {
        let mut inner = self.lock();
        let request_id = inner.next_request_id;
        inner.next_request_id += 1;
        let key_check = check_api_key(inner.settings.api_key.as_deref(), arrival.presented_api_key.as_deref());
        inner.requests.push(RecordedRequest {
            id: request_id,
            arrived_at: arrival.arrived_at,
            arrived_at_system: arrival.arrived_at_system,
            model: arrival.model.clone(),
            prompt: arrival.request.as_ref().ok().map(|request| request.prompt.clone()),
            key_accepted: key_check == KeyCheck::Accepted,
            reached_generation: false,
            status: None,
        });
        let (delay, answer) = match inner.check_admission(arrival, key_check) {
            Err(error) => (Duration::ZERO, Answer::Error(error)),
            Ok(request) => {
                if let Some(record) = inner.requests.last_mut() {
                    record.reached_generation = true;
                }
                inner.generate(&arrival.model, request, request_id)
            }
        };
        Decision { request_id, delay, answer }
    }

    pub(crate) fn record_status(&self, request_id: u64, status: u16) {
        let mut inner = self.lock();
        if let Some(record) = inner.requests.iter_mut().rev().find(|record| record.id == request_id) {
            record.status = Some(status);
        }
    }

    /// Changes the settings, reseeding the generator when the seed changes.
    pub(crate) fn update_settings(&self, change: impl FnOnce(&mut Settings)) -> Settings {
        let mut inner = self.lock();
        let seed_before = inner.settings.seed;
        change(&mut inner.settings);
        inner.settings.failure_rate = crate::settings::clamp_failure_rate(inner.settings.failure_rate);
        if inner.settings.seed != seed_before {
            inner.generator = Generator(inner.settings.seed);
        }
        inner.settings.clone()
    }

    pub(crate) fn rate_limit_burst(&self, count: u32, retry_delay: Duration) {
        self.lock().burst = Some(RateLimitBurst { remaining: count, retry_delay });
    }

    pub(crate) fn rate_limit_burst_remaining(&self) -> u32 {
        self.lock().burst.map_or(0, |burst| burst.remaining)
    }

    /// Forgets the requests, the `[flaky:N]` counts and the quota window.
    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        inner.requests.clear();
        inner.flaky_arrivals.clear();
        inner.quota_admissions.clear();
    }
}

impl Inner {
    /// Steps 1 to 5 of the crate's documentation: the key, the method, the burst, the quota, the body.
    fn check_admission<'arrival>(
        &mut self,
        arrival: &'arrival Arrival,
        key_check: KeyCheck,
    ) -> Result<&'arrival GenerateRequest, GoogleError> {
        match key_check {
            KeyCheck::Missing => return Err(GoogleError::missing_api_key()),
            KeyCheck::Invalid => return Err(GoogleError::invalid_api_key()),
            KeyCheck::Accepted => {}
        }
        if arrival.method != GENERATE_CONTENT {
            return Err(GoogleError::not_found(&format!("models/{}:{}", arrival.model, arrival.method)));
        }
        if let Some(burst) = self.burst.as_mut().filter(|burst| burst.remaining > 0) {
            burst.remaining -= 1;
            return Err(GoogleError::free_tier_exhausted(&arrival.model, burst.retry_delay));
        }
        self.admit_to_quota(arrival.arrived_at, &arrival.model)?;
        arrival.request.as_ref().map_err(Clone::clone)
    }

    /// The sliding 60 s window: admitted requests take a slot, rejected ones do not.
    fn admit_to_quota(&mut self, now: Instant, model: &str) -> Result<(), GoogleError> {
        while self.quota_admissions.front().is_some_and(|oldest| now.saturating_duration_since(*oldest) >= QUOTA_WINDOW)
        {
            self.quota_admissions.pop_front();
        }
        if let Some(limit) = self.settings.effective_requests_per_minute() {
            let admitted = self.quota_admissions.len();
            let limit_slots = limit as usize;
            if admitted >= limit_slots {
                // The slot that frees last among those that must free before one is available.
                let frees_at = self.quota_admissions[admitted - limit_slots] + QUOTA_WINDOW;
                let wait = frees_at.saturating_duration_since(now);
                let whole_seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                return Err(GoogleError::quota_exhausted(model, limit, Duration::from_secs(whole_seconds)));
            }
        }
        self.quota_admissions.push_back(now);
        Ok(())
    }

    /// Step 6: latency, triggers, failure rate, image mode.
    fn generate(&mut self, model: &str, request: &GenerateRequest, request_id: u64) -> (Duration, Answer) {
        let triggers = Triggers::in_prompt(&request.prompt);
        let jitter = if self.settings.latency_jitter.is_zero() {
            Duration::ZERO
        } else {
            self.settings.latency_jitter.mul_f64(self.generator.next_fraction())
        };
        let delay = self.settings.latency + jitter + triggers.slow;

        if let Some(code) = triggers.fail {
            return (delay, Answer::Error(GoogleError::for_code(code, model)));
        }
        if let Some(failures) = triggers.flaky {
            let arrivals = self.flaky_arrivals.entry(request.prompt.clone()).or_insert(0);
            *arrivals = arrivals.saturating_add(1);
            if *arrivals <= failures {
                return (delay, Answer::Error(GoogleError::overloaded()));
            }
        }
        if self.settings.failure_rate > 0.0 && self.generator.next_fraction() < self.settings.failure_rate {
            let error =
                if self.generator.next_u64() % 2 == 0 { GoogleError::overloaded() } else { GoogleError::internal() };
            return (delay, Answer::Error(error));
        }

        let kind = if triggers.blocked {
            ImageMode::PromptBlocked
        } else if triggers.no_image || !request.wants_image {
            ImageMode::TextOnly
        } else {
            self.settings.image_mode
        };
        let mut id_bytes = [0_u8; 16];
        id_bytes[..8].copy_from_slice(&self.generator.next_u64().to_le_bytes());
        id_bytes[8..].copy_from_slice(&(fnv1a(request.prompt.as_bytes()) ^ request_id).to_le_bytes());
        let generation = Generation {
            model: model.to_owned(),
            prompt: request.prompt.clone(),
            kind,
            image_size: request.image_size,
            response_id: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id_bytes),
        };
        (delay, Answer::Generated(generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_like_google() {
        assert_eq!(check_api_key(None, None), KeyCheck::Missing);
        assert_eq!(check_api_key(None, Some("")), KeyCheck::Missing);
        assert_eq!(check_api_key(None, Some("anything")), KeyCheck::Accepted);
        assert_eq!(check_api_key(Some("right"), Some("right")), KeyCheck::Accepted);
        assert_eq!(check_api_key(Some("right"), Some("wrong")), KeyCheck::Invalid);
        assert_eq!(check_api_key(Some("right"), None), KeyCheck::Missing);
    }

    #[test]
    fn the_generator_is_reproducible_and_in_range() {
        let mut first = Generator(42);
        let mut second = Generator(42);
        for _ in 0..1000 {
            let fraction = first.next_fraction();
            assert!((0.0..1.0).contains(&fraction), "{fraction}");
            assert!((fraction - second.next_fraction()).abs() < f64::EPSILON);
        }
    }

    #[test]
    fn the_quota_frees_a_slot_sixty_seconds_after_the_oldest() {
        let shared = Shared::new(Settings::default().with_requests_per_minute(2));
        let mut inner = shared.lock();
        let start = Instant::now();
        assert!(inner.admit_to_quota(start, "m").is_ok());
        assert!(inner.admit_to_quota(start + Duration::from_secs(10), "m").is_ok());
        let rejected = inner.admit_to_quota(start + Duration::from_millis(20_500), "m").unwrap_err();
        assert_eq!(rejected.code, 429);
        // The oldest frees at 60 s: 39.5 s away, rounded up.
        assert_eq!(rejected.details[1]["retryDelay"], "40s");
        assert_eq!(rejected.details[0]["violations"][0]["quotaValue"], "2");
        assert!(inner.admit_to_quota(start + Duration::from_secs(60), "m").is_ok());
        assert!(inner.admit_to_quota(start + Duration::from_secs(61), "m").is_err());
    }
}
