//! Accounts: argon2id password hashes, and creating users from the command line.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _};

/// The shortest password `user add` accepts.
pub const MIN_PASSWORD_CHARS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("`{0}` is not an e-mail address")]
    InvalidEmail(String),
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    #[error("a user with e-mail `{0}` already exists")]
    Exists(String),
    #[error("failed to hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The address as stored: trimmed. Uniqueness ignores case (the schema's index on `lower(email)`).
pub fn normalize_email(email: &str) -> Result<String, UserError> {
    let email = email.trim();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email.to_owned())
    } else {
        Err(UserError::InvalidEmail(email.to_owned()))
    }
}

/// An argon2id hash in PHC format, with OWASP's recommended parameters (argon2's defaults:
/// m = 19 MiB, t = 2, p = 1).
pub fn hash_password(password: &str) -> Result<String, UserError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| UserError::Hash(error.to_string()))
}

/// Whether `password` matches `hash`; a hash that does not parse matches nothing.
#[must_use]
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// Creates a user; returns its id.
pub async fn add_user(
    pool: &sqlx::PgPool,
    email: &str,
    password: &str,
    premium: bool,
) -> Result<uuid::Uuid, UserError> {
    let email = normalize_email(email)?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::WeakPassword);
    }
    let hash = hash_password(password)?;
    let inserted =
        sqlx::query_scalar("insert into users (email, password_hash, premium) values ($1, $2, $3) returning id")
            .bind(&email)
            .bind(hash)
            .bind(premium)
            .fetch_one(pool)
            .await;
    match inserted {
        Ok(id) => Ok(id),
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => Err(UserError::Exists(email)),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_checked() {
        assert_eq!(normalize_email("  Ana@Example.com ").unwrap(), "Ana@Example.com");
        for bad in ["", "ana", "@example.com", "ana@", "ana@example", "a na@example.com", "ana@.com"] {
            assert!(normalize_email(bad).is_err(), "`{bad}`");
        }
    }

    #[test]
    fn hashes_are_argon2id() {
        let hash = hash_password("correct horse battery staple").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert_ne!(hash, hash_password("correct horse battery staple").unwrap(), "salted");
    }
}
