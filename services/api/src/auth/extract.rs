//! `AuthUser`: the caller, from `Authorization: Bearer` or the `access_token` cookie.
//!
//! An `Authorization` header, when present, decides alone: it must be `Bearer` (any case, as
//! RFC 9110 makes schemes case-insensitive) and a valid access token, or the answer is a 401,
//! even when a valid cookie comes with it. A script whose token is broken or expired learns it at
//! once, instead of being served as whoever's browser session shares its cookie jar; and there
//! is one answer to "who is calling", not a fallback that hides a mistake. The cookie is read only
//! when no `Authorization` header is sent.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::error::ApiError;

/// A signed-in user, loaded from the database (a deleted user's token stops working at once).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuthUser {
    pub id: uuid::Uuid,
    pub email: String,
    pub premium: bool,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = match parts.headers.get(AUTHORIZATION) {
            Some(header) => Some(
                bearer_token(header)
                    .ok_or(ApiError::Unauthorized("the `Authorization` header must be `Bearer` and an access token"))?,
            ),
            None => super::cookies::get(&parts.headers, super::cookies::ACCESS_COOKIE),
        };
        let token = token.ok_or(ApiError::Unauthorized("sign in first"))?;
        let id = super::tokens::verify_access_token(state.settings.jwt_secret.expose(), token)
            .ok_or(ApiError::Unauthorized("the session has expired; refresh it or sign in again"))?;
        let user: Option<Self> = sqlx::query_as("select id, email, premium from users where id = $1")
            .bind(id)
            .fetch_optional(&state.db)
            .await?;
        let user = user.ok_or(ApiError::Unauthorized("sign in first"))?;
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        Ok(user)
    }
}

/// The token of `Bearer <token>`, the scheme in any case; `None` for any other header.
fn bearer_token(header: &axum::http::HeaderValue) -> Option<&str> {
    let (scheme, token) = header.to_str().ok()?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::bearer_token;

    #[test]
    fn only_bearer_headers_carry_a_token() {
        assert_eq!(bearer_token(&HeaderValue::from_static("Bearer a.b.c")), Some("a.b.c"));
        assert_eq!(bearer_token(&HeaderValue::from_static("bearer  a.b.c ")), Some("a.b.c"));
        for other in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "a.b.c", "", "Token a.b.c"] {
            assert_eq!(bearer_token(&HeaderValue::from_static(other)), None, "`{other}`");
        }
        assert_eq!(bearer_token(&HeaderValue::from_bytes(b"Bearer \xff").unwrap()), None);
    }
}
