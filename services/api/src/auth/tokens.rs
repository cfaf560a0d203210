//! Access tokens (HS256 JWTs, 15 minutes) and refresh tokens (32 random bytes, 7 days).

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::{Digest as _, Sha256};

pub const ACCESS_TOKEN_LIFETIME: Duration = Duration::minutes(15);
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::days(7);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: uuid::Uuid,
    pub iat: i64,
    pub exp: i64,
}

/// Signs an access token for `user`; returns it with its expiry.
pub fn access_token(
    secret: &str,
    user: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>), jsonwebtoken::errors::Error> {
    let expires = now + ACCESS_TOKEN_LIFETIME;
    let claims = Claims { sub: user, iat: now.timestamp(), exp: expires.timestamp() };
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))?;
    Ok((token, expires))
}

/// The user of a valid, unexpired access token signed with `secret` (HS256 only).
#[must_use]
pub fn verify_access_token(secret: &str, token: &str) -> Option<uuid::Uuid> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation)
        .ok()
        .map(|data| data.claims.sub)
}

/// A new opaque refresh token: 32 random bytes, URL-safe base64.
pub fn refresh_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0; 32];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What the database keeps of a refresh token.
#[must_use]
pub fn refresh_token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn access_tokens_verify_only_with_their_secret_and_in_time() {
        let user = uuid::Uuid::new_v4();
        let (token, expires) = access_token(SECRET, user, Utc::now()).unwrap();
        assert_eq!(verify_access_token(SECRET, &token), Some(user));
        assert!(expires > Utc::now() + Duration::minutes(14));
        assert_eq!(verify_access_token("another-secret-another-secret-xx", &token), None);
        let (old, _) = access_token(SECRET, user, Utc::now() - Duration::minutes(16)).unwrap();
        assert_eq!(verify_access_token(SECRET, &old), None, "expired");
        assert_eq!(verify_access_token(SECRET, "not.a.jwt"), None);
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, b) = (refresh_token().unwrap(), refresh_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(refresh_token_hash(&a).len(), 32);
        assert_ne!(refresh_token_hash(&a), refresh_token_hash(&b));
    }
}
