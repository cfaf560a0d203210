//! How close a certificate is to its end: the thresholds `certs status` and `doctor` judge with,
//! and the one-line form of a store error both show.

use chrono::{DateTime, TimeDelta, Utc};

/// A certificate that expires sooner than this many days is a problem (`certs status` exits 1,
/// `doctor` warns).
pub const EXPIRING_DAYS: i64 = 7;

/// Where a certificate stands against its `not_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// More than [`EXPIRING_DAYS`] left.
    Valid,
    /// Still valid, for less than [`EXPIRING_DAYS`].
    Expiring,
    Expired,
}

impl Expiry {
    /// The standing of a certificate valid until `not_after`, at `now`.
    #[must_use]
    pub fn at(not_after: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        let left = not_after - now;
        if left <= TimeDelta::zero() {
            Self::Expired
        } else if left < TimeDelta::days(EXPIRING_DAYS) {
            Self::Expiring
        } else {
            Self::Valid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thresholds_split_valid_expiring_and_expired() {
        let now = Utc::now();
        assert_eq!(Expiry::at(now + TimeDelta::days(30), now), Expiry::Valid);
        assert_eq!(Expiry::at(now + TimeDelta::days(EXPIRING_DAYS), now), Expiry::Valid);
        assert_eq!(Expiry::at(now + TimeDelta::days(EXPIRING_DAYS) - TimeDelta::seconds(1), now), Expiry::Expiring);
        assert_eq!(Expiry::at(now, now), Expiry::Expired);
        assert_eq!(Expiry::at(now - TimeDelta::days(1), now), Expiry::Expired);
    }
}
