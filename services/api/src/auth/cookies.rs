//! The two session cookies: both `HttpOnly` and `SameSite=Lax`, `Secure` in production.

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};

pub const ACCESS_COOKIE: &str = "access_token";
pub const REFRESH_COOKIE: &str = "refresh_token";
/// The refresh token is only ever sent to the auth routes.
pub const REFRESH_PATH: &str = "/api/v1/auth";

/// A `Set-Cookie` value. Token values are base64url or JWTs: no character needs quoting.
fn set_cookie(name: &str, value: &str, path: &str, max_age_seconds: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!("{name}={value}; Path={path}; Max-Age={max_age_seconds}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Adds both cookies of a new session.
pub fn set_session(headers: &mut HeaderMap, access: &str, refresh: &str, secure: bool) {
    let access_age = super::tokens::ACCESS_TOKEN_LIFETIME.num_seconds();
    let refresh_age = super::tokens::REFRESH_TOKEN_LIFETIME.num_seconds();
    headers.append(SET_COOKIE, set_cookie(ACCESS_COOKIE, access, "/", access_age, secure));
    headers.append(SET_COOKIE, set_cookie(REFRESH_COOKIE, refresh, REFRESH_PATH, refresh_age, secure));
}

/// Expires both cookies.
pub fn clear_session(headers: &mut HeaderMap, secure: bool) {
    headers.append(SET_COOKIE, set_cookie(ACCESS_COOKIE, "", "/", 0, secure));
    headers.append(SET_COOKIE, set_cookie(REFRESH_COOKIE, "", REFRESH_PATH, 0, secure));
}

/// The value of cookie `name` in the request, if sent.
#[must_use]
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_carry_their_attributes() {
        let mut headers = HeaderMap::new();
        set_session(&mut headers, "a.b.c", "r-token", true);
        let cookies: Vec<&str> = headers.get_all(SET_COOKIE).iter().map(|value| value.to_str().unwrap()).collect();
        assert_eq!(cookies[0], "access_token=a.b.c; Path=/; Max-Age=900; HttpOnly; SameSite=Lax; Secure");
        assert_eq!(
            cookies[1],
            "refresh_token=r-token; Path=/api/v1/auth; Max-Age=604800; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn cookies_are_read_from_any_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("theme=dark; access_token=abc"));
        headers.append(COOKIE, HeaderValue::from_static("refresh_token="));
        assert_eq!(get(&headers, ACCESS_COOKIE), Some("abc"));
        assert_eq!(get(&headers, REFRESH_COOKIE), None, "an empty cookie is no cookie");
        assert_eq!(get(&headers, "missing"), None);
    }
}
