//! `AuthUser`: the caller, from `Authorization: Bearer` or the `access_token` cookie.

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
        let bearer = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let token = bearer.or_else(|| super::cookies::get(&parts.headers, super::cookies::ACCESS_COOKIE));
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
