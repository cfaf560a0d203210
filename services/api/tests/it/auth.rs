//! Login, cookies, refresh rotation with reuse detection, logout, `me`, and the validation of
//! JSON bodies, on a fresh database per test.

use masstock_api::config::AppEnv;
use masstock_schema::MIGRATOR;
use serde_json::{json, Value};

use crate::support::{api_on, client, serve_args_on, set_cookie, user, TestApi, PASSWORD};

async fn login(url: &str, email: &str, password: &str) -> reqwest::Response {
    client()
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn login_sets_both_cookies_with_their_attributes(pool: sqlx::PgPool) {
    let id = user(&pool, "ana@example.com", true).await;
    for (app_env, secure) in [(AppEnv::Production, true), (AppEnv::Local, false)] {
        let api = api_on(&pool, app_env).await;
        let response = login(&api.url, "ANA@example.com", PASSWORD).await;
        assert_eq!(response.status(), 200);
        let (_, access) = set_cookie(&response, "access_token").expect("access_token cookie");
        let (_, refresh) = set_cookie(&response, "refresh_token").expect("refresh_token cookie");
        let secure_flag = if secure { "; Secure" } else { "" };
        assert!(access.ends_with(&format!("; Path=/; Max-Age=900; HttpOnly; SameSite=Lax{secure_flag}")), "{access}");
        assert!(
            refresh.ends_with(&format!("; Path=/api/v1/auth; Max-Age=604800; HttpOnly; SameSite=Lax{secure_flag}")),
            "{refresh}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["user"], json!({ "id": id, "email": "ana@example.com", "premium": true }));
        let expires = chrono::DateTime::parse_from_rfc3339(body["session"]["expiresAt"].as_str().unwrap()).unwrap();
        let minutes = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes();
        assert!((14..=15).contains(&minutes), "the access token lasts 15 minutes, got {minutes}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_wrong_email_and_a_wrong_password_get_the_same_answer(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    let wrong_password = login(&api.url, "ana@example.com", "not the password").await;
    let wrong_email = login(&api.url, "nobody@example.com", PASSWORD).await;
    assert_eq!(
        (wrong_password.status(), wrong_email.status()),
        (reqwest::StatusCode::UNAUTHORIZED, reqwest::StatusCode::UNAUTHORIZED)
    );
    assert!(set_cookie(&wrong_password, "access_token").is_none());
    let (a, b): (Value, Value) = (wrong_password.json().await.unwrap(), wrong_email.json().await.unwrap());
    assert_eq!(a, b);
    assert_eq!(a, json!({ "error": "unauthorized", "message": "wrong e-mail or password" }));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn me_takes_the_cookie_or_a_bearer_token(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    let (access, _) = set_cookie(&login(&api.url, "ana@example.com", PASSWORD).await, "access_token").unwrap();
    let me = |request: reqwest::RequestBuilder| async move { request.send().await.unwrap() };
    let url = format!("{}/api/v1/auth/me", api.url);
    let by_cookie = me(client().get(&url).header("cookie", format!("access_token={access}"))).await;
    assert_eq!(by_cookie.status(), 200);
    assert_eq!(by_cookie.json::<Value>().await.unwrap()["user"]["email"], "ana@example.com");
    let by_bearer = me(client().get(&url).bearer_auth(&access)).await;
    assert_eq!(by_bearer.status(), 200);
    assert_eq!(me(client().get(&url)).await.status(), 401);
    assert_eq!(me(client().get(&url).bearer_auth("forged.token.here")).await.status(), 401);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_authorization_header_decides_alone_whatever_the_cookie_says(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    let (access, _) = set_cookie(&login(&api.url, "ana@example.com", PASSWORD).await, "access_token").unwrap();
    let url = format!("{}/api/v1/auth/me", api.url);
    let with_cookie = |authorization: String| {
        client()
            .get(&url)
            .header("cookie", format!("access_token={access}"))
            .header("authorization", authorization)
            .send()
    };
    // A valid cookie does not rescue a header that is not a valid Bearer token.
    for authorization in ["Basic YW5hOnB3", "Bearer forged.token.here", "Bearer", "Token abc", &access] {
        let response = with_cookie(authorization.to_owned()).await.unwrap();
        assert_eq!(response.status(), 401, "`{authorization}`");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "unauthorized", "`{authorization}`");
    }
    // The scheme is case-insensitive (RFC 9110), and a valid header works with or without the cookie.
    assert_eq!(with_cookie(format!("bearer {access}")).await.unwrap().status(), 200);
    assert_eq!(with_cookie(format!("Bearer {access}")).await.unwrap().status(), 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn refresh_rotates_and_a_replayed_token_ends_the_family(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    let refresh = |token: String| {
        let url = format!("{}/api/v1/auth/refresh", api.url);
        async move { client().post(url).header("cookie", format!("refresh_token={token}")).send().await.unwrap() }
    };
    let (first, _) = set_cookie(&login(&api.url, "ana@example.com", PASSWORD).await, "refresh_token").unwrap();

    let rotated = refresh(first.clone()).await;
    assert_eq!(rotated.status(), 200);
    let (second, _) = set_cookie(&rotated, "refresh_token").expect("a new refresh token");
    assert!(set_cookie(&rotated, "access_token").is_some());
    assert_ne!(first, second);

    // The first token again: reuse. It fails, clears the cookies, and ends the family,
    // so the legitimate second token fails too.
    let replay = refresh(first).await;
    assert_eq!(replay.status(), 401);
    assert!(set_cookie(&replay, "refresh_token").unwrap().1.contains("Max-Age=0"));
    assert_eq!(refresh(second).await.status(), 401, "the whole family is revoked");

    let stored: Vec<(Vec<u8>,)> =
        sqlx::query_as("select token_hash from refresh_sessions").fetch_all(&pool).await.unwrap();
    assert!(stored.iter().all(|(hash,)| hash.len() == 32), "only hashes are stored");
    // Another login starts a new family that works.
    let (fresh, _) = set_cookie(&login(&api.url, "ana@example.com", PASSWORD).await, "refresh_token").unwrap();
    assert_eq!(refresh(fresh).await.status(), 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn logout_revokes_and_clears_both_cookies(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    let (token, _) = set_cookie(&login(&api.url, "ana@example.com", PASSWORD).await, "refresh_token").unwrap();
    let response = client()
        .post(format!("{}/api/v1/auth/logout", api.url))
        .header("cookie", format!("refresh_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for name in ["access_token", "refresh_token"] {
        let (value, line) = set_cookie(&response, name).unwrap();
        assert!(value.is_empty() && line.contains("Max-Age=0"), "{line}");
    }
    let again = client()
        .post(format!("{}/api/v1/auth/refresh", api.url))
        .header("cookie", format!("refresh_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bodies_are_validated_like_zod(pool: sqlx::PgPool) {
    // More than 5 logins from one address: lift the auth limit, which is not what is tested here.
    let mut args = serve_args_on(&pool);
    args.rate_limit_auth = "1000/60s".into();
    let api = TestApi::start(args).await;
    let url = format!("{}/api/v1/auth/login", api.url);
    let post = |body: &'static str, content_type: &'static str| {
        let url = url.clone();
        async move { client().post(url).header("content-type", content_type).body(body).send().await.unwrap() }
    };
    let cases: &[(&str, &str, u16, Value)] = &[
        ("{", "application/json", 400, json!([{ "path": "", "message": "EOF while parsing an object" }])),
        (
            r#"{"email": 3, "password": "x"}"#,
            "application/json",
            400,
            json!([{ "path": "email", "message": "expected another type: integer `3`, expected a string" }]),
        ),
        (
            r#"{"email": "a@b.fr"}"#,
            "application/json",
            400,
            json!([{ "path": "password", "message": "missing field `password`" }]),
        ),
        (
            r#"{"email": "a@b.fr", "password": "x", "admin": true}"#,
            "application/json",
            400,
            json!([{ "path": "admin", "message": "unknown field `admin`, expected `email` or `password`" }]),
        ),
        (
            r#"{"email": " ", "password": ""}"#,
            "application/json; charset=utf-8",
            400,
            json!([
                { "path": "email", "message": "must be an e-mail address of at most 254 characters" },
                { "path": "password", "message": "must be between 1 and 1024 characters" },
            ]),
        ),
    ];
    for (body, content_type, status, issues) in cases {
        let response = post(body, content_type).await;
        assert_eq!(response.status().as_u16(), *status, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer, json!({ "error": "validation_failed", "issues": issues }), "{body}");
    }
    assert_eq!(post(r#"{"email": "a@b.fr", "password": "x"}"#, "text/plain").await.status(), 415);
    let huge = format!(r#"{{"email": "a@b.fr", "password": "{}"}}"#, "x".repeat(600 * 1024));
    let too_large = client().post(&url).header("content-type", "application/json").body(huge).send().await.unwrap();
    assert_eq!(too_large.status(), 413);
    assert_eq!(too_large.json::<Value>().await.unwrap()["error"], "payload_too_large");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_concurrent_refreshes_of_one_token_end_the_family(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    let (token, _) = set_cookie(&login(&api.url, "ana@example.com", PASSWORD).await, "refresh_token").unwrap();
    let refresh = |token: String| {
        let url = format!("{}/api/v1/auth/refresh", api.url);
        async move { client().post(url).header("cookie", format!("refresh_token={token}")).send().await.unwrap() }
    };
    let (first, second) = tokio::join!(refresh(token.clone()), refresh(token));
    let statuses = [first.status().as_u16(), second.status().as_u16()];
    let mut sorted = statuses;
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 401], "exactly one rotation wins");
    // The loser was a replay: the winner's successor belongs to a revoked family.
    let winner = if statuses[0] == 200 { first } else { second };
    let (successor, _) = set_cookie(&winner, "refresh_token").unwrap();
    assert_eq!(refresh(successor).await.status(), 401);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_refresh_racing_a_logout_leaves_no_live_session(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    let (token, _) = set_cookie(&login(&api.url, "ana@example.com", PASSWORD).await, "refresh_token").unwrap();
    let post = |path: &'static str, token: String| {
        let url = format!("{}{path}", api.url);
        async move { client().post(url).header("cookie", format!("refresh_token={token}")).send().await.unwrap() }
    };
    let (refreshed, logged_out) =
        tokio::join!(post("/api/v1/auth/refresh", token.clone()), post("/api/v1/auth/logout", token));
    assert_eq!(logged_out.status(), 204);
    if let Some((successor, _)) = set_cookie(&refreshed, "refresh_token").filter(|(value, _)| !value.is_empty()) {
        assert_eq!(post("/api/v1/auth/refresh", successor).await.status(), 401, "logout ended the family");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn refreshing_cannot_outlive_the_absolute_session_lifetime(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let mut args = serve_args_on(&pool);
    args.session_absolute_lifetime = "30d".into();
    let api = TestApi::start(args).await;
    let refresh = |token: String| {
        let url = format!("{}/api/v1/auth/refresh", api.url);
        async move { client().post(url).header("cookie", format!("refresh_token={token}")).send().await.unwrap() }
    };
    let signed_in_days_ago = |days: i32| {
        let pool = pool.clone();
        async move {
            sqlx::query("update refresh_sessions set family_started_at = now() - make_interval(days => $1)")
                .bind(days)
                .execute(&pool)
                .await
                .unwrap();
        }
    };

    // Signed in 29 days ago and refreshed since: one more refresh works, and its token expires
    // when the session does (in a day), not a full refresh lifetime (7 days) from now.
    let (token, _) = set_cookie(&login(&api.url, "ana@example.com", PASSWORD).await, "refresh_token").unwrap();
    signed_in_days_ago(29).await;
    let rotated = refresh(token).await;
    assert_eq!(rotated.status(), 200);
    let (token, _) = set_cookie(&rotated, "refresh_token").unwrap();
    let days_left: f64 = sqlx::query_scalar(
        "select extract(epoch from expires_at - now())::float8 / 86400 from refresh_sessions where rotated_at is null",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!((0.99..=1.0).contains(&days_left), "the successor ends with the session: {days_left} days left");

    // Past the absolute lifetime, even an unused, unexpired token is refused, cookies cleared.
    signed_in_days_ago(31).await;
    sqlx::query("update refresh_sessions set expires_at = now() + interval '1 day' where rotated_at is null")
        .execute(&pool)
        .await
        .unwrap();
    let refused = refresh(token).await;
    assert_eq!(refused.status(), 401);
    assert!(set_cookie(&refused, "refresh_token").unwrap().1.contains("Max-Age=0"));
    assert_eq!(refused.json::<Value>().await.unwrap()["error"], "unauthorized");

    // A new sign-in starts a new session.
    let (fresh, _) = set_cookie(&login(&api.url, "ana@example.com", PASSWORD).await, "refresh_token").unwrap();
    assert_eq!(refresh(fresh).await.status(), 200);
}
