//! Values written as strings in deploy.toml: durations (`30s`), rates (`100/60s`), sizes (`10m`), and
//! Docker's byte counts (`512m`, `1g`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written with a unit: `500ms`, `30s`, `5m`, `24h`, `7d`, or a sum such as `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    #[must_use]
    pub const fn from_secs(seconds: u64) -> Self {
        Self(std::time::Duration::from_secs(seconds))
    }

    #[must_use]
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!(
                "invalid duration `{text}`\nhint: write a number with a unit: `500ms`, `30s`, `5m`, `24h` or `1m30s`"
            )
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(invalid());
        }
        let mut total = std::time::Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(invalid());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            let unit_length = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let millis_per_unit: u64 = match &rest[..unit_length] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(invalid()),
            };
            rest = &rest[unit_length..];
            let millis = number.checked_mul(millis_per_unit).ok_or_else(invalid)?;
            total = total.checked_add(std::time::Duration::from_millis(millis)).ok_or_else(invalid)?;
        }
        Ok(Self(total))
    }
}

impl fmt::Display for Duration {
    /// The shortest exact form: `86400s` prints as `24h`, `1500ms` as `1500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if millis != 0 && millis % size == 0 {
                return write!(f, "{}{unit}", millis / size);
            }
        }
        write!(f, "{millis}ms")
    }
}

/// A number of events allowed per period: `100/60s`, `5/1m`, `10/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// The rate in nginx's `limit_req_zone` syntax, which only knows per second and per minute.
    #[must_use]
    pub fn to_nginx(self) -> Option<String> {
        match self.per.0.as_millis() {
            1_000 => Some(format!("{}r/s", self.count)),
            60_000 => Some(format!("{}r/m", self.count)),
            _ => None,
        }
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| {
            format!("invalid rate `{text}`: {why}\nhint: write `<count>/<duration>`, like `100/60s` or `10/1s`")
        };
        let (count, period) = text.split_once('/').ok_or_else(|| invalid("no `/`"))?;
        let count: u32 = count.trim().parse().map_err(|_| invalid("the count is not a whole number"))?;
        if count == 0 {
            return Err(invalid("the count must be at least 1"));
        }
        let period = period.trim();
        // `10/s` reads as `10/1s`.
        let period =
            if period.starts_with(|c: char| c.is_ascii_digit()) { period.to_owned() } else { format!("1{period}") };
        let per: Duration = period.parse().map_err(|_| invalid("the period is not a duration"))?;
        if per.0.is_zero() {
            return Err(invalid("the period must be longer than zero"));
        }
        Ok(Self { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.per)
    }
}

/// A size in nginx's syntax: bytes, or a number with `k` or `m` (`10m`, `512k`), at most 1 GiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Size {
    pub bytes: u64,
    text: String,
}

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const LIMIT: u64 = 1 << 30;
        let invalid = || {
            format!("invalid size `{text}`\nhint: write a number of bytes, optionally with `k` or `m`, like `10m` (at most `1024m`)")
        };
        let lower = text.to_ascii_lowercase();
        let (digits, unit) = match lower.strip_suffix('k') {
            Some(digits) => (digits, 1 << 10),
            None => lower.strip_suffix('m').map_or((lower.as_str(), 1), |digits| (digits, 1 << 20)),
        };
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(invalid());
        }
        let bytes =
            digits.parse::<u64>().ok().and_then(|number| number.checked_mul(unit)).filter(|bytes| *bytes <= LIMIT);
        let bytes = bytes.ok_or_else(invalid)?;
        Ok(Self { bytes, text: lower })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A byte count as Docker and compose write it (`mem_limit`, `--memory`): a whole number with `b`,
/// `k`, `m` or `g` (powers of 1024), in either case, optionally followed by `b` (`512m`, `1g`,
/// `64mb`). Unlike [`Size`], which nginx reads, it goes beyond 1 GiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteSize {
    pub bytes: u64,
    text: String,
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!("invalid byte count `{text}`\nhint: write a whole number with `k`, `m` or `g`, like `512m` or `1g`")
        };
        let lower = text.to_ascii_lowercase();
        let without_b = match lower.strip_suffix('b') {
            Some(rest) if rest.ends_with(['k', 'm', 'g']) => rest,
            _ => lower.as_str(),
        };
        let (digits, unit) = match without_b.as_bytes().last() {
            Some(b'k') => (&without_b[..without_b.len() - 1], 1_u64 << 10),
            Some(b'm') => (&without_b[..without_b.len() - 1], 1 << 20),
            Some(b'g') => (&without_b[..without_b.len() - 1], 1 << 30),
            Some(b'b') => (&without_b[..without_b.len() - 1], 1),
            _ => (without_b, 1),
        };
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(invalid());
        }
        // Docker takes an int64.
        let bytes = digits
            .parse::<u64>()
            .ok()
            .and_then(|number| number.checked_mul(unit))
            .filter(|bytes| i64::try_from(*bytes).is_ok())
            .ok_or_else(invalid)?;
        Ok(Self { bytes, text: lower })
    }
}

impl ByteSize {
    /// `count` mebibytes, written `<count>m`.
    #[must_use]
    pub fn mebibytes(count: u32) -> Self {
        Self { bytes: u64::from(count) << 20, text: format!("{count}m") }
    }

    /// The count for the Engine API, which takes an `int64`; parsing keeps it in range.
    #[must_use]
    pub fn as_i64(&self) -> i64 {
        i64::try_from(self.bytes).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Deserializes and serializes every `FromStr + Display` unit as a string.
macro_rules! string_serde {
    ($($type:ty),*) => {$(
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    )*};
}

string_serde!(Duration, Rate, Size, ByteSize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("30s".parse::<Duration>().unwrap(), Duration::from_secs(30));
        assert_eq!("1m30s".parse::<Duration>().unwrap(), Duration::from_secs(90));
        assert_eq!("24h".parse::<Duration>().unwrap(), Duration::from_secs(86_400));
        assert_eq!("500ms".parse::<Duration>().unwrap().0.as_millis(), 500);
        for bad in ["", "30", "s", "30x", "1.5s", "-1s", "99999999999999999999s", "30 s"] {
            assert!(bad.parse::<Duration>().is_err(), "`{bad}` should be rejected");
        }
        assert_eq!(Duration::from_secs(86_400).to_string(), "1d");
        assert_eq!(Duration::from_secs(90).to_string(), "90s");
    }

    #[test]
    fn rates() {
        let rate: Rate = "100/60s".parse().unwrap();
        assert_eq!((rate.count, rate.per), (100, Duration::from_secs(60)));
        assert_eq!(rate.to_nginx().as_deref(), Some("100r/m"));
        assert_eq!("10/s".parse::<Rate>().unwrap().to_nginx().as_deref(), Some("10r/s"));
        assert_eq!("5/90s".parse::<Rate>().unwrap().to_nginx(), None);
        for bad in ["100", "x/60s", "0/60s", "100/0s", "100/sixty", "/60s"] {
            assert!(bad.parse::<Rate>().is_err(), "`{bad}` should be rejected");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!("10m".parse::<Size>().unwrap().bytes, 10 << 20);
        assert_eq!("10M".parse::<Size>().unwrap().to_string(), "10m");
        assert_eq!("4096".parse::<Size>().unwrap().bytes, 4096);
        for bad in ["", "m", "10mb", "1.5m", "ten", "1g", "2048m", "99999999999999999999m", "+1k"] {
            assert!(bad.parse::<Size>().is_err(), "`{bad}` should be rejected");
        }
    }

    #[test]
    fn byte_counts() {
        assert_eq!("512m".parse::<ByteSize>().unwrap().bytes, 512 << 20);
        assert_eq!("1G".parse::<ByteSize>().unwrap().bytes, 1 << 30);
        assert_eq!("64mb".parse::<ByteSize>().unwrap().bytes, 64 << 20);
        assert_eq!("4096".parse::<ByteSize>().unwrap().bytes, 4096);
        assert_eq!("100b".parse::<ByteSize>().unwrap().bytes, 100);
        assert_eq!("2G".parse::<ByteSize>().unwrap().to_string(), "2g");
        for bad in ["", "m", "1.5g", "ten", "1t", "-1m", "mb", "99999999999g", "1 g"] {
            assert!(bad.parse::<ByteSize>().is_err(), "`{bad}` should be rejected");
        }
    }
}
