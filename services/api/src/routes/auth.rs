//! `/api/v1/auth/{login,refresh,logout,me}`: cookie sessions with refresh rotation.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{cookies, tokens, AuthUser};
use crate::error::{ApiError, ErrorBody, Issue};
use crate::validation::{is_blank, Valid, Validate};

/// One message for a wrong e-mail and a wrong password: no account enumeration.
const WRONG_CREDENTIALS: &str = "wrong e-mail or password";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
}

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// 1 to 254 characters, with a character other than white space and no NUL.
    #[schema(schema_with = crate::openapi::email_schema)]
    email: String,
    /// 1 to 1024 characters.
    #[schema(min_length = 1, max_length = 1024)]
    password: String,
}

/// The access token's lifetime; the cookies carry the tokens themselves.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// When the access token expires (RFC 3339): refresh before.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// A signed-in user and their session.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: AuthUser,
    pub session: SessionInfo,
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user: AuthUser,
}

impl Validate for LoginBody {
    fn issues(&self) -> Vec<Issue> {
        let mut issues = Vec::new();
        // Characters, not bytes, as the document's `maxLength` counts them.
        if is_blank(&self.email) || self.email.chars().count() > 254 || self.email.contains('\0') {
            issues.push(Issue {
                path: "email".into(),
                message: "must be an e-mail address of at most 254 characters".into(),
            });
        }
        if self.password.is_empty() || self.password.chars().count() > 1024 {
            issues.push(Issue { path: "password".into(), message: "must be between 1 and 1024 characters".into() });
        }
        issues
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Account {
    id: Uuid,
    email: String,
    premium: bool,
    password_hash: String,
}

/// Signs in: sets the `access_token` (15 min) and `refresh_token` (7 days) httpOnly cookies.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginBody, responses(
    (status = 200, description = "Signed in; both cookies set", body = LoginResponse),
    (status = 400, description = "The body is not credentials; `issues` names each field", body = ErrorBody),
    (status = 401, description = "Wrong e-mail or password (one answer for both)", body = ErrorBody),
    (status = 429, description = "Too many attempts from this address", body = ErrorBody),
))]
pub async fn login(State(state): State<AppState>, Valid(body): Valid<LoginBody>) -> Result<Response, ApiError> {
    let account: Option<Account> =
        sqlx::query_as("select id, email, premium, password_hash from users where lower(email) = lower($1)")
            .bind(body.email.trim())
            .fetch_optional(&state.db)
            .await?;
    let hash = hash_to_verify(account.as_ref(), &state.dummy_password_hash).to_owned();
    // Bounded: a burst of logins from many addresses waits here rather than taking the memory.
    let permit = tokio::time::timeout(std::time::Duration::from_secs(5), state.password_checks.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::Unavailable("password checks"))?
        .map_err(ApiError::internal)?;
    let verified = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        crate::users::verify_password(&body.password, &hash)
    })
    .await
    .map_err(ApiError::internal)?;
    let account = match account {
        Some(account) if verified => account,
        _ => return Err(ApiError::Unauthorized(WRONG_CREDENTIALS)),
    };
    let user = AuthUser { id: account.id, email: account.email, premium: account.premium };
    start_session(&state, user, Uuid::new_v4(), Utc::now()).await
}

/// The hash a login verifies the password against: the account's, or, for an unknown e-mail, a
/// dummy made with the same argon2 parameters. Either way one full verification runs, so timing
/// does not tell whether an account exists.
fn hash_to_verify<'a>(account: Option<&'a Account>, dummy: &'a str) -> &'a str {
    account.map_or(dummy, |account| account.password_hash.as_str())
}

/// Stores a new refresh token in `family`, signed in at `started`, and answers with both cookies
/// and the user.
async fn start_session(
    state: &AppState,
    user: AuthUser,
    family: Uuid,
    started: DateTime<Utc>,
) -> Result<Response, ApiError> {
    let mut transaction = state.db.begin().await?;
    let response = start_session_in(&mut transaction, state, user, family, started).await?;
    transaction.commit().await?;
    Ok(response)
}

/// Stores the new refresh token within `transaction`, so a rotation's claim and its successor
/// commit together. The token expires after its own lifetime or at the session's absolute end
/// (`started` plus `SESSION_ABSOLUTE_LIFETIME`), whichever comes first.
async fn start_session_in(
    transaction: &mut sqlx::PgConnection,
    state: &AppState,
    user: AuthUser,
    family: Uuid,
    started: DateTime<Utc>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let (access, expires_at) =
        tokens::access_token(state.settings.jwt_secret.expose(), user.id, now).map_err(ApiError::internal)?;
    let refresh = tokens::refresh_token().map_err(ApiError::internal)?;
    let refresh_expires =
        (now + tokens::REFRESH_TOKEN_LIFETIME).min(started + state.settings.session_absolute_lifetime);
    sqlx::query(
        "insert into refresh_sessions (user_id, family_id, token_hash, expires_at, family_started_at) values ($1, $2, $3, $4, $5)",
    )
    .bind(user.id)
    .bind(family)
    .bind(tokens::refresh_token_hash(&refresh))
    .bind(refresh_expires)
    .bind(started)
    .execute(&mut *transaction)
    .await?;
    let mut headers = HeaderMap::new();
    cookies::set_session(&mut headers, &access, &refresh, state.settings.app_env.is_production());
    let body = LoginResponse {
        user,
        session: SessionInfo { expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) },
    };
    Ok((StatusCode::OK, headers, Json(body)).into_response())
}

/// Rotates the refresh token (cookie); a token presented twice ends its whole session family.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", responses(
    (status = 200, description = "New cookies", body = LoginResponse),
    (status = 401, description = "No valid refresh token; both cookies cleared", body = ErrorBody),
))]
pub async fn refresh(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let secure = state.settings.app_env.is_production();
    let refused = |message: &'static str| {
        let mut headers = HeaderMap::new();
        cookies::clear_session(&mut headers, secure);
        (headers, ApiError::Unauthorized(message)).into_response()
    };
    let Some(token) = cookies::get(&headers, cookies::REFRESH_COOKIE) else {
        return Ok(refused("sign in first"));
    };
    let hash = tokens::refresh_token_hash(token);
    // The claim, the user and the successor commit together: a concurrent replay's claim waits
    // on the row lock, then finds it rotated and revokes the family, successor included. A
    // family with any revoked session (a logout, a detected reuse) can no longer be refreshed,
    // nor one signed in longer ago than the absolute lifetime, however often it was refreshed.
    let mut transaction = state.db.begin().await?;
    let claimed: Option<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(
        "update refresh_sessions set rotated_at = now()
         where token_hash = $1 and rotated_at is null and revoked_at is null and expires_at > now()
           and family_started_at > now() - make_interval(secs => $2)
           and not exists (select 1 from refresh_sessions revoked
                           where revoked.family_id = refresh_sessions.family_id and revoked.revoked_at is not null)
         returning user_id, family_id, family_started_at",
    )
    .bind(&hash)
    .bind(state.settings.session_absolute_lifetime.num_seconds())
    .fetch_optional(&mut *transaction)
    .await?;
    if let Some((user_id, family, started)) = claimed {
        let user: Option<AuthUser> = sqlx::query_as("select id, email, premium from users where id = $1")
            .bind(user_id)
            .fetch_optional(&mut *transaction)
            .await?;
        let Some(user) = user else { return Ok(refused("sign in first")) };
        let response = start_session_in(&mut transaction, &state, user, family, started).await?;
        transaction.commit().await?;
        return Ok(response);
    }
    transaction.rollback().await?;
    // Not claimable. If it was rotated before, someone replays it: end the whole family.
    let reused: Option<Uuid> =
        sqlx::query_scalar("select family_id from refresh_sessions where token_hash = $1 and rotated_at is not null")
            .bind(&hash)
            .fetch_optional(&state.db)
            .await?;
    if let Some(family) = reused {
        let revoked =
            sqlx::query("update refresh_sessions set revoked_at = now() where family_id = $1 and revoked_at is null")
                .bind(family)
                .execute(&state.db)
                .await?;
        tracing::warn!(%family, sessions = revoked.rows_affected(), "a rotated refresh token was presented again; its session family is revoked");
    }
    Ok(refused("the session has ended; sign in again"))
}

/// Ends the session family of the refresh token and clears both cookies.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204, description = "Signed out")))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = cookies::get(&headers, cookies::REFRESH_COOKIE) {
        sqlx::query(
            "update refresh_sessions set revoked_at = now()
             where family_id = (select family_id from refresh_sessions where token_hash = $1) and revoked_at is null",
        )
        .bind(tokens::refresh_token_hash(token))
        .execute(&state.db)
        .await?;
    }
    let mut response_headers = HeaderMap::new();
    cookies::clear_session(&mut response_headers, state.settings.app_env.is_production());
    Ok((StatusCode::NO_CONTENT, response_headers).into_response())
}

/// The signed-in user (cookie or `Authorization: Bearer`).
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = []), ("cookie" = [])), responses(
    (status = 200, description = "The caller", body = MeResponse),
    (status = 401, description = "Not signed in", body = ErrorBody),
))]
pub async fn me(user: AuthUser) -> Json<MeResponse> {
    Json(MeResponse { user })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_email_is_verified_against_a_hash_of_the_same_cost() {
        let dummy = crate::users::hash_password("no account has this password").unwrap();
        let real = crate::users::hash_password("correct horse battery staple").unwrap();
        let account =
            Account { id: Uuid::nil(), email: "ana@example.com".into(), premium: false, password_hash: real.clone() };
        assert_eq!(hash_to_verify(Some(&account), &dummy), real);
        assert_eq!(hash_to_verify(None, &dummy), dummy);
        // Same algorithm and parameters (`$argon2id$v=19$m=...,t=...,p=...$`): the same work.
        let parameters = |hash: &str| hash.split('$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(parameters(&dummy), parameters(&real));
        assert!(!crate::users::verify_password("correct horse battery staple", &dummy));
    }
}
