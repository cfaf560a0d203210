//! The API's settings, from the environment of DESIGN.md §4, checked once at start-up.
//!
//! Secrets are read as [`Secret`], whose `Debug` is redacted, and are validated after parsing:
//! clap's own "invalid value" errors would echo the value.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

pub use masstock_kit::config::{check_url, problem, ConfigError};
pub use masstock_kit::{AppEnv, Secret};

/// Where the database is.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Secret,
}

/// Everything `serve` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Redis connection URL, password included (`redis://:password@host:6379`)
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    pub redis_url: Secret,
    /// Signs access tokens; at least 32 bytes
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub jwt_secret: Secret,
    /// Origins allowed to call the API with credentials, comma-separated
    #[arg(long, env = "CORS_ORIGIN", value_name = "ORIGINS")]
    pub cors_origin: String,
    /// The port to listen on
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// The deployment environment
    #[arg(long, env = "APP_ENV", value_enum, default_value = "production")]
    pub app_env: AppEnv,
    /// Networks whose `X-Forwarded-For` / `X-Real-IP` are believed, comma-separated CIDRs
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "127.0.0.0/8,::1/128", value_name = "CIDRS")]
    pub trusted_proxies: String,
    /// Where result images live
    #[arg(long, env = "UPLOADS_DIR", default_value = "uploads", value_name = "DIR")]
    pub uploads_dir: PathBuf,
    /// Requests per client address on every route but the probes (`<count>/<window>`)
    #[arg(long, env = "RATE_LIMIT_GENERAL", default_value = "100/60s", value_name = "RATE")]
    pub rate_limit_general: String,
    /// Login attempts per client address, on top of the general limit
    #[arg(long, env = "RATE_LIMIT_AUTH", default_value = "5/60s", value_name = "RATE")]
    pub rate_limit_auth: String,
    /// Where rate-limit counters live in Redis
    #[arg(long, env = "RATE_LIMIT_PREFIX", default_value = "masstock:ratelimit", value_name = "PREFIX")]
    pub rate_limit_prefix: String,
    /// BullMQ's key prefix (tests give each run its own)
    #[arg(long, env = "QUEUE_PREFIX", default_value = masstock_queue::PREFIX, value_name = "PREFIX")]
    pub queue_prefix: String,
    /// How long a session lasts from its sign-in, whatever the refreshes (`30d`, `12h`, `90m`)
    #[arg(long, env = "SESSION_ABSOLUTE_LIFETIME", default_value = "30d", value_name = "DURATION")]
    pub session_absolute_lifetime: String,
    /// How long in-flight requests may take to finish after SIGTERM, in seconds
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,
}

/// A network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    #[must_use]
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = text.split_once('/').unwrap_or((text, ""));
        let network: IpAddr = address.trim().parse().map_err(|_| format!("`{text}` is not an IP address or CIDR"))?;
        let maximum = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            maximum
        } else {
            prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= maximum)
                .ok_or_else(|| format!("`{text}` has an invalid prefix length"))?
        };
        Ok(Self { network, prefix })
    }
}

/// The settings `serve` runs with, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: Secret,
    pub redis_url: Secret,
    pub jwt_secret: Secret,
    pub cors_origins: Vec<String>,
    pub port: u16,
    pub app_env: AppEnv,
    pub trusted_proxies: Vec<Cidr>,
    pub uploads_dir: PathBuf,
    pub queue_prefix: String,
    pub rate_limit_general: crate::rate_limit::Rate,
    pub rate_limit_auth: crate::rate_limit::Rate,
    pub rate_limit_prefix: String,
    pub shutdown_grace: std::time::Duration,
    /// A session ends this long after its sign-in; refreshing does not move it.
    pub session_absolute_lifetime: chrono::Duration,
}

/// The shortest `JWT_SECRET` accepted: HS256 wants a key as long as its hash.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl ServeArgs {
    /// Checks every variable, returning the first problem.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let database_url = check_url("DATABASE_URL", &self.database.database_url, &["postgres", "postgresql"])?;
        let redis_url = check_url("REDIS_URL", &self.redis_url, &["redis", "rediss"])?;
        let secret_length = self.jwt_secret.expose().len();
        if secret_length < MIN_JWT_SECRET_BYTES {
            return Err(problem(
                "JWT_SECRET",
                format!("must be at least {MIN_JWT_SECRET_BYTES} bytes, it has {secret_length}; generate one with `masstockctl secrets generate`"),
            ));
        }
        // Browsers send scheme and host in lower case: compare in lower case.
        let cors_origins: Vec<String> = self
            .cors_origin
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        for origin in &cors_origins {
            let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
            });
            if !valid {
                return Err(problem(
                    "CORS_ORIGIN",
                    format!("`{origin}` is not an origin (`https://host[:port]`, no path)"),
                ));
            }
        }
        let trusted_proxies = self
            .trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|cidr| !cidr.is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| problem("TRUSTED_PROXIES", why))?;
        Ok(Settings {
            database_url,
            redis_url,
            jwt_secret: self.jwt_secret.clone(),
            cors_origins,
            port: self.port,
            app_env: self.app_env,
            trusted_proxies,
            uploads_dir: self.uploads_dir.clone(),
            queue_prefix: self.queue_prefix.clone(),
            rate_limit_general: self.rate_limit_general.parse().map_err(|why| problem("RATE_LIMIT_GENERAL", why))?,
            rate_limit_auth: self.rate_limit_auth.parse().map_err(|why| problem("RATE_LIMIT_AUTH", why))?,
            rate_limit_prefix: self.rate_limit_prefix.clone(),
            shutdown_grace: std::time::Duration::from_secs(self.shutdown_grace_seconds),
            session_absolute_lifetime: lifetime(&self.session_absolute_lifetime)
                .map_err(|why| problem("SESSION_ABSOLUTE_LIFETIME", why))?,
        })
    }
}

/// A lifetime written as masstockctl writes durations: a whole number and one unit of `s`, `m`,
/// `h` or `d`; at least a minute, at most ten years.
fn lifetime(text: &str) -> Result<chrono::Duration, String> {
    let invalid = || format!("`{text}` is not a lifetime such as `30d`, `12h`, `90m` or `3600s`");
    let text = text.trim();
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
    let number: i64 = text[..unit_at].parse().map_err(|_| invalid())?;
    let seconds_per_unit = match &text[unit_at..] {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    let seconds = number.checked_mul(seconds_per_unit).ok_or_else(invalid)?;
    if !(60..=3_650 * 86_400).contains(&seconds) {
        return Err(format!("`{text}` must be between one minute and ten years"));
    }
    Ok(chrono::Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let loopback: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(loopback.contains("127.1.2.3".parse().unwrap()));
        assert!(!loopback.contains("10.0.0.1".parse().unwrap()));
        assert!(loopback.contains("::ffff:127.0.0.1".parse().unwrap()), "IPv4-mapped addresses count");
        let docker: Cidr = "172.16.0.0/12".parse().unwrap();
        assert!(docker.contains("172.18.0.1".parse().unwrap()));
        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("8.8.8.8".parse().unwrap()));
        let host: Cidr = "::1".parse().unwrap();
        assert_eq!(host.prefix, 128);
        for bad in ["", "10.0.0.0/33", "nope/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "`{bad}`");
        }
    }

    #[test]
    fn lifetimes() {
        assert_eq!(lifetime("30d"), Ok(chrono::Duration::days(30)));
        assert_eq!(lifetime("90m"), Ok(chrono::Duration::minutes(90)));
        assert_eq!(lifetime("3600s"), Ok(chrono::Duration::hours(1)));
        for bad in ["", "30", "d", "30 d", "1m30s", "-5d", "59s", "3651d", "99999999999999999d"] {
            assert!(lifetime(bad).is_err(), "`{bad}`");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(format!("{:?}", Secret::from("hunter2")), "[redacted]");
    }
}
