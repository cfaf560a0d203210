//! Sessions: a short-lived JWT access token and a long-lived opaque refresh token, both in
//! httpOnly cookies (or the access token as `Authorization: Bearer` for scripts).
//!
//! Refresh tokens are stored only as SHA-256 hashes, grouped in families. Each refresh rotates
//! the token; presenting one that was already rotated revokes its whole family (OWASP's reuse
//! detection: a stolen token and its legitimate holder cannot both keep a session).

pub mod cookies;
pub mod extract;
pub mod tokens;

pub use extract::AuthUser;
