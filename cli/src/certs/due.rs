//! When a certificate is due for renewal, and by which rule.
//!
//! Caddy's order: the CA's ARI window when it offers one (RFC 9773), else when less than a third
//! of the lifetime is left. The one-third rule scales with the lifetime, so it is right for Let's
//! Encrypt's 90-day, 45-day and 6-day certificates alike, and for a test CA's hour-long ones, where
//! certbot's fixed "30 days before" would renew on every run.
//!
//! `decide` goes, in order: `--force`; expired (due at once); the CA's ARI window when `renew`
//! got one: due from a point in the window derived from the serial's SHA-256, so it is uniform
//! across certificates and the same on every run of the timer, and at once when the window is
//! past; else when less than a third of the lifetime (`notAfter` − `notBefore`) is left:
//! 30 days of a 90-day certificate (certbot's figure), 53 hours of Let's Encrypt's 6-day ones, 20
//! minutes of a 1-hour Pebble test certificate. Pebble 2.4.0 has no ARI, so the ARI rule is tested
//! here against a recorded `renewalInfo` answer. `certs status` never touches the network: it
//! reports the one-third moment and says `renew` also asks for ARI. (`renew` also makes a
//! certificate that lacks a name deploy.toml serves with it due at once: `names-changed`, certbot's
//! `--expand`.)

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::store::CertInfo;

/// Which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The CA's renewal window (ARI).
    Ari,
    /// Less than a third of the lifetime left.
    OneThird,
    /// The operator asked (`--force`).
    Forced,
    /// The certificate has expired.
    Expired,
    /// deploy.toml serves names the certificate lacks (certbot's `--expand`).
    NamesChanged,
}

impl Rule {
    /// The rule's name in `--json` documents and messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ari => "ari",
            Self::OneThird => "one-third",
            Self::Forced => "forced",
            Self::Expired => "expired",
            Self::NamesChanged => "names-changed",
        }
    }
}

/// The decision: renew from `at`, by `rule`; `due` says whether that moment has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub at: DateTime<Utc>,
    pub rule: Rule,
    pub due: bool,
    pub reason: String,
}

/// The CA's suggested renewal window (RFC 9773 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AriWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub explanation_url: Option<String>,
}

#[derive(Deserialize)]
struct RenewalInfo {
    #[serde(rename = "suggestedWindow")]
    suggested_window: SuggestedWindow,
    #[serde(rename = "explanationURL")]
    explanation_url: Option<String>,
}

#[derive(Deserialize)]
struct SuggestedWindow {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// Why a `renewalInfo` response body is refused.
#[derive(Debug, thiserror::Error)]
pub enum RenewalInfoError {
    #[error("invalid renewalInfo response: {0}")]
    Json(serde_json::Error),
    #[error("invalid renewalInfo response: the window ends (`{end}`) before it starts (`{start}`)")]
    Backwards { start: DateTime<Utc>, end: DateTime<Utc> },
}

/// Parses a `renewalInfo` response body: `{"suggestedWindow":{"start","end"},"explanationURL"}`.
/// A window whose end is not after its start is refused, as RFC 9773 §4.2 asks.
pub fn parse_renewal_info(json: &str) -> Result<AriWindow, RenewalInfoError> {
    let info: RenewalInfo = serde_json::from_str(json).map_err(RenewalInfoError::Json)?;
    let SuggestedWindow { start, end } = info.suggested_window;
    if end <= start {
        return Err(RenewalInfoError::Backwards { start, end });
    }
    Ok(AriWindow { start, end, explanation_url: info.explanation_url })
}

/// Decides whether `cert` is due at `now`.
///
/// Order: `force`, then expiry, then the ARI window when there is one, then the one-third rule.
/// In the window, the moment is a point chosen uniformly at random (RFC 9773 §4.2), derived from
/// the serial so that every run (the timer's twice a day) picks the same one; a window already in
/// the past is due at once.
#[must_use]
pub fn decide(cert: &CertInfo, ari: Option<&AriWindow>, now: DateTime<Utc>, force: bool) -> Due {
    if force {
        return Due { at: now, rule: Rule::Forced, due: true, reason: "renewal forced (`--force`)".into() };
    }
    if now >= cert.not_after {
        return Due {
            at: cert.not_after,
            rule: Rule::Expired,
            due: true,
            reason: format!("expired at {}", stamp(cert.not_after)),
        };
    }
    if let Some(window) = ari {
        let at = point_in_window(window, &cert.serial);
        let explanation =
            window.explanation_url.as_deref().map(|url| format!(" (the CA explains: {url})")).unwrap_or_default();
        let reason = if window.end <= now {
            format!("the CA's renewal window ended at {}{explanation}", stamp(window.end))
        } else if now >= at {
            format!(
                "inside the CA's renewal window {} – {} (this certificate's point: {}){explanation}",
                stamp(window.start),
                stamp(window.end),
                stamp(at)
            )
        } else {
            format!(
                "the CA's renewal window is {} – {}; this certificate's point in it is {}{explanation}",
                stamp(window.start),
                stamp(window.end),
                stamp(at)
            )
        };
        return Due { at, rule: Rule::Ari, due: now >= at, reason };
    }
    let lifetime = cert.not_after - cert.not_before;
    let at = cert.not_after - lifetime / 3;
    let left = cert.not_after - now;
    // Due when strictly less than a third of the lifetime is left.
    let due = left * 3 < lifetime;
    let reason = if due {
        format!("less than a third of its {} lifetime is left (since {})", span(lifetime), stamp(at))
    } else {
        format!("a third of its {} lifetime will be left at {}", span(lifetime), stamp(at))
    };
    Due { at, rule: Rule::OneThird, due, reason }
}

/// A point in `window`, uniformly distributed over certificates, fixed for one serial.
fn point_in_window(window: &AriWindow, serial: &str) -> DateTime<Utc> {
    let digest = Sha256::digest(serial.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let fraction = u64::from_be_bytes(first);
    let width = (window.end - window.start).num_milliseconds().max(0);
    // `width × fraction / 2^64`, in 128 bits: no float, no overflow.
    let offset = i64::try_from((i128::from(width) * i128::from(fraction)) >> 64).unwrap_or(0);
    window.start + TimeDelta::milliseconds(offset)
}

fn stamp(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A lifetime in the largest whole unit that fits: `90 days`, `6 days`, `1 hour`.
fn span(delta: TimeDelta) -> String {
    // A certificate's notAfter is inclusive, so lifetimes are one second short of round numbers.
    let seconds = delta.num_seconds() + 1;
    let (count, unit) = if seconds >= 86_400 {
        (seconds / 86_400, "day")
    } else if seconds >= 3_600 {
        (seconds / 3_600, "hour")
    } else {
        (seconds / 60, "minute")
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A renewalInfo answer recorded in the shape Let's Encrypt's production ARI endpoint gives
    /// (`GET /acme/renewal-info/<aki>.<serial>`): Pebble 2.4.0 has no ARI, so the ARI rule is
    /// tested against this fixture rather than a live CA.
    const RECORDED_RENEWAL_INFO: &str = r#"{
  "suggestedWindow": {
    "start": "2025-03-29T17:12:41Z",
    "end": "2025-03-31T17:12:41Z"
  },
  "explanationURL": "https://letsencrypt.org/docs/integration-guide/#renewal-information-ari"
}"#;

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn cert(not_before: &str, not_after: &str) -> CertInfo {
        CertInfo {
            names: vec!["masstock.fr".into()],
            serial: "3a1f9c0e5d7b2a4c6e8f0a1b2c3d4e5f6a7b".into(),
            issuer: "C=US, O=Let's Encrypt, CN=E5".into(),
            not_before: time(not_before),
            not_after: time(not_after),
            ari_id: None,
        }
    }

    #[test]
    fn one_third_of_a_90_day_certificate() {
        // Let's Encrypt's 90 days: notAfter is notBefore + 90 days − 1 s.
        let cert = cert("2025-01-01T00:00:00Z", "2025-03-31T23:59:59Z");
        let lifetime = cert.not_after - cert.not_before;
        let boundary = cert.not_after - lifetime / 3;
        let before = decide(&cert, None, boundary - TimeDelta::minutes(1), false);
        assert!(!before.due, "{before:?}");
        assert_eq!((before.rule, before.at), (Rule::OneThird, boundary));
        let after = decide(&cert, None, boundary + TimeDelta::minutes(1), false);
        assert!(after.due, "{after:?}");
        assert_eq!(after.rule, Rule::OneThird);
        assert!(after.reason.contains("90 days"), "{}", after.reason);
        // 30 days before expiry, as certbot would: same answer here.
        assert!(decide(&cert, None, cert.not_after - TimeDelta::days(29), false).due);
        assert!(!decide(&cert, None, cert.not_after - TimeDelta::days(31), false).due);
    }

    #[test]
    fn one_third_of_a_6_day_certificate() {
        // Let's Encrypt's short-lived profile: 160 hours. A third is 53 h 20 min, where certbot's
        // "30 days before" would renew on every run.
        let cert = cert("2025-01-01T00:00:00Z", "2025-01-07T15:59:59Z");
        let lifetime = cert.not_after - cert.not_before;
        let boundary = cert.not_after - lifetime / 3;
        assert!(!decide(&cert, None, boundary - TimeDelta::seconds(1), false).due);
        assert!(decide(&cert, None, boundary + TimeDelta::seconds(1), false).due);
        assert!(!decide(&cert, None, cert.not_before + TimeDelta::days(4), false).due);
        assert!(decide(&cert, None, cert.not_before + TimeDelta::days(5), false).due);
    }

    #[test]
    fn expired_and_forced() {
        let cert = cert("2025-01-01T00:00:00Z", "2025-03-31T23:59:59Z");
        let expired = decide(&cert, None, time("2025-04-01T00:00:00Z"), false);
        assert_eq!((expired.rule, expired.due, expired.at), (Rule::Expired, true, cert.not_after));
        let window = parse_renewal_info(RECORDED_RENEWAL_INFO).unwrap();
        assert_eq!(decide(&cert, Some(&window), time("2025-04-01T00:00:00Z"), false).rule, Rule::Expired);
        let forced = decide(&cert, None, time("2025-01-02T00:00:00Z"), true);
        assert_eq!((forced.rule, forced.due), (Rule::Forced, true));
    }

    #[test]
    fn recorded_renewal_info_parses() {
        let window = parse_renewal_info(RECORDED_RENEWAL_INFO).unwrap();
        assert_eq!(window.start, time("2025-03-29T17:12:41Z"));
        assert_eq!(window.end, time("2025-03-31T17:12:41Z"));
        assert_eq!(
            window.explanation_url.as_deref(),
            Some("https://letsencrypt.org/docs/integration-guide/#renewal-information-ari")
        );
        let minimal =
            parse_renewal_info(r#"{"suggestedWindow":{"start":"2025-03-29T00:00:00Z","end":"2025-03-30T00:00:00Z"}}"#);
        assert_eq!(minimal.unwrap().explanation_url, None);
        let backwards =
            parse_renewal_info(r#"{"suggestedWindow":{"start":"2025-03-30T00:00:00Z","end":"2025-03-29T00:00:00Z"}}"#);
        assert!(backwards.unwrap_err().to_string().contains("before it starts"));
        assert!(parse_renewal_info(r#"{"suggestedWindow":{}}"#).is_err());
        assert!(parse_renewal_info("<html>").is_err());
    }

    #[test]
    fn ari_window_in_the_future_inside_and_past() {
        // A certificate whose one-third point (2025-03-01) is long past during the window: ARI
        // alone decides when the CA answers.
        let cert = cert("2025-01-01T00:00:00Z", "2025-03-31T23:59:59Z");
        let window = parse_renewal_info(RECORDED_RENEWAL_INFO).unwrap();

        let future = decide(&cert, Some(&window), time("2025-03-20T00:00:00Z"), false);
        assert_eq!((future.rule, future.due), (Rule::Ari, false), "{future:?}");
        assert!(window.start <= future.at && future.at <= window.end, "{future:?}");
        assert!(future.reason.contains("letsencrypt.org/docs"), "{}", future.reason);

        // Inside the window: not due before this certificate's point, due from it on.
        let point = future.at;
        assert!(!decide(&cert, Some(&window), point - TimeDelta::seconds(1), false).due);
        let inside = decide(&cert, Some(&window), point, false);
        assert_eq!((inside.rule, inside.due, inside.at), (Rule::Ari, true, point));
        // Every run agrees on the point.
        assert_eq!(decide(&cert, Some(&window), time("2025-03-29T18:00:00Z"), false).at, point);

        let past = decide(&cert, Some(&window), time("2025-03-31T18:00:00Z"), false);
        assert_eq!((past.rule, past.due), (Rule::Ari, true), "{past:?}");
        assert!(past.reason.contains("ended"), "{}", past.reason);
    }

    #[test]
    fn points_spread_over_the_window() {
        let window = parse_renewal_info(RECORDED_RENEWAL_INFO).unwrap();
        let width = (window.end - window.start).num_seconds();
        let offsets: Vec<i64> = (0..200)
            .map(|serial| (point_in_window(&window, &format!("{serial:x}")) - window.start).num_seconds())
            .collect();
        assert!(offsets.iter().all(|offset| (0..=width).contains(offset)));
        let first_half = offsets.iter().filter(|offset| **offset < width / 2).count();
        assert!((60..=140).contains(&first_half), "{first_half} of 200 in the first half");
    }
}
