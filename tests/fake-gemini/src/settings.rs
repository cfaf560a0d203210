//! The knobs: which key the fake expects and how it misbehaves, set at start and changed while it runs.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// What a request that reaches generation gets, unless a trigger in its prompt says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ImageMode {
    /// A candidate with a text part and a PNG in an `inlineData` part.
    #[default]
    Image,
    /// A candidate with only a text part, `finishReason` `STOP`: the model chose not to draw.
    TextOnly,
    /// No candidates; `promptFeedback.blockReason` is `SAFETY`.
    PromptBlocked,
}

/// How the fake behaves. Start from [`Settings::default`] (accept any key, answer at once, never fail)
/// and change what a test needs with the `with_…` methods or struct update syntax.
#[derive(Clone, PartialEq)]
pub struct Settings {
    /// The address to listen on (read only by [`crate::FakeGemini::start`]); `0.0.0.0` lets
    /// containers reach the fake through `host.docker.internal`. Default `127.0.0.1`.
    pub host: IpAddr,
    /// The port to listen on (read only at start); 0, the default, picks a free one. The running
    /// server's settings hold the port it listens on.
    pub port: u16,
    /// The only API key accepted; `None`, the default, accepts any non-empty key.
    pub api_key: Option<String>,
    /// How long generation takes.
    pub latency: Duration,
    /// At most this much more, drawn uniformly per request.
    pub latency_jitter: Duration,
    /// The fraction of requests reaching generation that fail with 503 or 500, between 0 and 1.
    pub failure_rate: f64,
    /// Seeds the generator behind the failure rate, the jitter and the response ids.
    pub seed: u64,
    /// The fake's own quota, in a sliding 60 s window; `None` (or 0) turns it off.
    pub requests_per_minute: Option<u32>,
    /// What requests that reach generation get.
    pub image_mode: ImageMode,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            api_key: None,
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            failure_rate: 0.0,
            seed: 0,
            requests_per_minute: None,
            image_mode: ImageMode::Image,
        }
    }
}

/// The API key is a secret even in tests: `Debug` says whether one is set, never which.
impl fmt::Debug for Settings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("latency", &self.latency)
            .field("latency_jitter", &self.latency_jitter)
            .field("failure_rate", &self.failure_rate)
            .field("seed", &self.seed)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("image_mode", &self.image_mode)
            .finish()
    }
}

impl Settings {
    #[must_use]
    pub fn with_host(mut self, host: IpAddr) -> Self {
        self.host = host;
        self
    }

    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Accept only this key.
    #[must_use]
    pub fn with_api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(api_key.into());
        self
    }

    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    #[must_use]
    pub fn with_latency_jitter(mut self, latency_jitter: Duration) -> Self {
        self.latency_jitter = latency_jitter;
        self
    }

    /// Clamped to 0..=1 (NaN is 0).
    #[must_use]
    pub fn with_failure_rate(mut self, failure_rate: f64) -> Self {
        self.failure_rate = clamp_failure_rate(failure_rate);
        self
    }

    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    #[must_use]
    pub fn with_requests_per_minute(mut self, requests_per_minute: u32) -> Self {
        self.requests_per_minute = Some(requests_per_minute);
        self
    }

    #[must_use]
    pub fn with_image_mode(mut self, image_mode: ImageMode) -> Self {
        self.image_mode = image_mode;
        self
    }

    /// The limit in force, if any: 0 means no quota, like `None`.
    pub(crate) fn effective_requests_per_minute(&self) -> Option<u32> {
        self.requests_per_minute.filter(|limit| *limit > 0)
    }
}

pub(crate) fn clamp_failure_rate(failure_rate: f64) -> f64 {
    if failure_rate.is_nan() {
        0.0
    } else {
        failure_rate.clamp(0.0, 1.0)
    }
}

/// A rejected `POST /_fake/settings`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettingsError {
    #[error("invalid settings: {0}")]
    Json(#[from] serde_json::Error),
    #[error("`failure_rate` must be between 0 and 1, got `{0}`")]
    FailureRate(f64),
    #[error("`requests_per_minute` must be at least 1 (null turns the quota off)")]
    RequestsPerMinute,
}

/// A partial change from `POST /_fake/settings`: absent fields keep their value, `null` clears the
/// optional ones. No `Debug`: it may hold the API key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(clippy::option_option, reason = "absent, `null` and a value are three different requests")]
pub(crate) struct SettingsUpdate {
    #[serde(default, deserialize_with = "present")]
    pub api_key: Option<Option<String>>,
    pub latency_ms: Option<u64>,
    pub latency_jitter_ms: Option<u64>,
    pub failure_rate: Option<f64>,
    pub seed: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub requests_per_minute: Option<Option<u32>>,
    pub image_mode: Option<ImageMode>,
    pub rate_limit_burst: Option<BurstUpdate>,
}

/// `{"count": N, "retry_delay_ms": MS}`: the next N requests answer 429.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BurstUpdate {
    pub count: u32,
    #[serde(default = "default_retry_delay_ms")]
    pub retry_delay_ms: u64,
}

fn default_retry_delay_ms() -> u64 {
    2000
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`, by `#[serde(default)]`).
#[allow(clippy::option_option, reason = "absent, `null` and a value are three different requests")]
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl SettingsUpdate {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, SettingsError> {
        let update: Self = serde_json::from_slice(body)?;
        if let Some(failure_rate) = update.failure_rate {
            if !(0.0..=1.0).contains(&failure_rate) {
                return Err(SettingsError::FailureRate(failure_rate));
            }
        }
        if update.requests_per_minute == Some(Some(0)) {
            return Err(SettingsError::RequestsPerMinute);
        }
        Ok(update)
    }

    /// Applies the knobs (not the burst, which is an action the caller takes).
    pub(crate) fn apply_to(&self, settings: &mut Settings) {
        if let Some(api_key) = &self.api_key {
            settings.api_key.clone_from(api_key);
        }
        if let Some(latency_ms) = self.latency_ms {
            settings.latency = Duration::from_millis(latency_ms);
        }
        if let Some(latency_jitter_ms) = self.latency_jitter_ms {
            settings.latency_jitter = Duration::from_millis(latency_jitter_ms);
        }
        if let Some(failure_rate) = self.failure_rate {
            settings.failure_rate = clamp_failure_rate(failure_rate);
        }
        if let Some(seed) = self.seed {
            settings.seed = seed;
        }
        if let Some(requests_per_minute) = self.requests_per_minute {
            settings.requests_per_minute = requests_per_minute;
        }
        if let Some(image_mode) = self.image_mode {
            settings.image_mode = image_mode;
        }
    }
}

/// The settings as `/_fake/settings` answers them: whether a key is expected, never which.
#[derive(Debug, Serialize)]
pub(crate) struct SettingsView {
    pub host: String,
    pub port: u16,
    pub expects_api_key: bool,
    pub latency_ms: u128,
    pub latency_jitter_ms: u128,
    pub failure_rate: f64,
    pub seed: u64,
    pub requests_per_minute: Option<u32>,
    pub image_mode: ImageMode,
    pub rate_limit_burst_remaining: u32,
}

impl SettingsView {
    pub(crate) fn new(settings: &Settings, rate_limit_burst_remaining: u32) -> Self {
        Self {
            host: settings.host.to_string(),
            port: settings.port,
            expects_api_key: settings.api_key.is_some(),
            latency_ms: settings.latency.as_millis(),
            latency_jitter_ms: settings.latency_jitter.as_millis(),
            failure_rate: settings.failure_rate,
            seed: settings.seed,
            requests_per_minute: settings.requests_per_minute,
            image_mode: settings.image_mode,
            rate_limit_burst_remaining,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_api_key() {
        let settings = Settings::default().with_api_key("super-secret-key");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("super-secret-key"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn an_update_tells_null_from_absent() {
        let mut settings = Settings::default().with_api_key("key").with_requests_per_minute(5);
        SettingsUpdate::parse(br#"{"latency_ms": 20}"#).unwrap().apply_to(&mut settings);
        assert_eq!(settings.api_key.as_deref(), Some("key"));
        assert_eq!(settings.requests_per_minute, Some(5));
        assert_eq!(settings.latency, Duration::from_millis(20));

        SettingsUpdate::parse(br#"{"api_key": null, "requests_per_minute": null}"#).unwrap().apply_to(&mut settings);
        assert_eq!(settings.api_key, None);
        assert_eq!(settings.requests_per_minute, None);
    }

    #[test]
    fn an_update_is_validated() {
        assert!(matches!(SettingsUpdate::parse(br#"{"failure_rate": 1.5}"#), Err(SettingsError::FailureRate(_))));
        assert!(matches!(
            SettingsUpdate::parse(br#"{"requests_per_minute": 0}"#),
            Err(SettingsError::RequestsPerMinute)
        ));
        let unknown = SettingsUpdate::parse(br#"{"latency": 5}"#).err().unwrap().to_string();
        assert!(unknown.contains("unknown field `latency`"), "{unknown}");
    }

    #[test]
    fn failure_rates_are_clamped() {
        assert!((Settings::default().with_failure_rate(2.0).failure_rate - 1.0).abs() < f64::EPSILON);
        assert!(Settings::default().with_failure_rate(f64::NAN).failure_rate.abs() < f64::EPSILON);
    }
}
