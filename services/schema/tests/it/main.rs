//! The schema on the real PostgreSQL that script/bootstrap starts: each `#[sqlx::test]` gets a
//! fresh database with the migrations applied, created by a role that is not a superuser (as on
//! Supabase). If PostgreSQL is not running, start it with `script/bootstrap`.

use masstock_schema::{ExecutionStatus, DEFAULT_WORKFLOW_ID, MIGRATOR};
use sqlx::PgPool;

/// A user with a syntactically valid argon2id hash (the value is irrelevant to the schema).
async fn user(pool: &PgPool, email: &str) -> sqlx::Result<sqlx::types::Uuid> {
    sqlx::query_scalar("insert into users (email, password_hash) values ($1, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA') returning id")
        .bind(email)
        .fetch_one(pool)
        .await
}

async fn execution(
    pool: &PgPool,
    user_id: sqlx::types::Uuid,
    prompts: serde_json::Value,
) -> sqlx::Result<sqlx::types::Uuid> {
    let total = i32::try_from(prompts.as_array().map_or(0, Vec::len)).expect("a test's prompt count fits");
    sqlx::query_scalar(
        "insert into executions (user_id, workflow_id, prompts, progress_total) values ($1, $2::uuid, $3, $4) returning id",
    )
    .bind(user_id)
    .bind(DEFAULT_WORKFLOW_ID)
    .bind(prompts)
    .bind(total)
    .fetch_one(pool)
    .await
}

fn is_violation(error: &sqlx::Error, constraint_kind: &str) -> bool {
    error.as_database_error().and_then(sqlx::error::DatabaseError::code).is_some_and(|code| {
        code == match constraint_kind {
            "unique" => "23505",
            "check" => "23514",
            "foreign key" => "23503",
            other => panic!("unknown constraint kind {other}"),
        }
    })
}

/// `#[sqlx::test]` reports an unreachable server as `PoolTimedOut`; this test says what to do.
#[tokio::test]
async fn postgres_is_reachable() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by .cargo/config.toml");
    let shown = url.split_once('@').map_or(url.as_str(), |(_, host)| host);
    let connected = tokio::time::timeout(std::time::Duration::from_secs(5), PgPool::connect(&url)).await;
    match connected {
        Ok(Ok(pool)) => pool.close().await,
        Ok(Err(error)) => {
            panic!("PostgreSQL at `{shown}` refused the test role: {error}; start it with `script/bootstrap`")
        }
        Err(elapsed) => panic!("PostgreSQL at `{shown}` does not answer ({elapsed}); start it with `script/bootstrap`"),
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_default_workflow_is_seeded(pool: PgPool) {
    let name: String = sqlx::query_scalar("select name from workflows where id = $1::uuid")
        .bind(DEFAULT_WORKFLOW_ID)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(name, "Image from prompt");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn migrations_are_idempotent(pool: PgPool) {
    // The test harness applied them; applying again finds nothing to do and changes nothing.
    MIGRATOR.run(&pool).await.unwrap();
    let workflows: i64 = sqlx::query_scalar("select count(*) from workflows").fetch_one(&pool).await.unwrap();
    assert_eq!(workflows, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn emails_are_unique_whatever_their_case(pool: PgPool) {
    user(&pool, "Ana@Example.com").await.unwrap();
    let duplicate = user(&pool, "ana@example.COM").await.unwrap_err();
    assert!(is_violation(&duplicate, "unique"), "{duplicate}");
    let padded = user(&pool, " bob@example.com").await.unwrap_err();
    assert!(is_violation(&padded, "check"), "{padded}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn only_argon2id_hashes_are_stored(pool: PgPool) {
    let plain = sqlx::query("insert into users (email, password_hash) values ('c@example.com', 'hunter2')")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(is_violation(&plain, "check"), "{plain}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn refresh_tokens_are_stored_as_32_byte_hashes(pool: PgPool) {
    let user_id = user(&pool, "d@example.com").await.unwrap();
    let insert = |hash: Vec<u8>| {
        sqlx::query("insert into refresh_sessions (user_id, family_id, token_hash, expires_at) values ($1, gen_random_uuid(), $2, now() + interval '7 days')")
            .bind(user_id)
            .bind(hash)
            .execute(&pool)
    };
    insert(vec![7; 32]).await.unwrap();
    assert!(is_violation(&insert(vec![7; 32]).await.unwrap_err(), "unique"));
    assert!(is_violation(&insert(b"raw-opaque-token".to_vec()).await.unwrap_err(), "check"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn executions_hold_1_to_50_prompts_and_consistent_progress(pool: PgPool) {
    let user_id = user(&pool, "e@example.com").await.unwrap();
    let id = execution(&pool, user_id, serde_json::json!(["a cat", "a dog"])).await.unwrap();
    let status: String =
        sqlx::query_scalar("select status from executions where id = $1").bind(id).fetch_one(&pool).await.unwrap();
    assert_eq!(status.parse::<ExecutionStatus>().unwrap(), ExecutionStatus::Pending);

    let empty = execution(&pool, user_id, serde_json::json!([])).await.unwrap_err();
    assert!(is_violation(&empty, "check"), "{empty}");
    let too_many = execution(&pool, user_id, serde_json::json!(vec!["p"; 51])).await.unwrap_err();
    assert!(is_violation(&too_many, "check"), "{too_many}");
    let overrun =
        sqlx::query("update executions set progress_done = 3 where id = $1").bind(id).execute(&pool).await.unwrap_err();
    assert!(is_violation(&overrun, "check"), "{overrun}");
    let unknown =
        sqlx::query("update executions set status = 'paused' where id = $1").bind(id).execute(&pool).await.unwrap_err();
    assert!(is_violation(&unknown, "check"), "{unknown}");
    for status in ExecutionStatus::ALL {
        sqlx::query("update executions set status = $2 where id = $1")
            .bind(id)
            .bind(status.as_str())
            .execute(&pool)
            .await
            .unwrap();
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_prompt_result_is_stored_once(pool: PgPool) {
    let user_id = user(&pool, "f@example.com").await.unwrap();
    let id = execution(&pool, user_id, serde_json::json!(["a cat"])).await.unwrap();
    let store = || {
        sqlx::query("insert into execution_results (execution_id, prompt_index, content_type, storage_location, size_bytes) values ($1, 0, 'image/png', 'uploads/x.png', 10)")
            .bind(id)
            .execute(&pool)
    };
    store().await.unwrap();
    assert!(is_violation(&store().await.unwrap_err(), "unique"));
    // Deleting the user deletes their executions and results.
    sqlx::query("delete from users where id = $1").bind(user_id).execute(&pool).await.unwrap();
    let left: i64 = sqlx::query_scalar("select count(*) from execution_results").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_migrating_role_is_not_a_superuser(pool: PgPool) {
    // What makes the migrations portable to Supabase: they ran without superuser rights.
    let superuser: bool = sqlx::query_scalar("select rolsuper from pg_roles where rolname = current_user")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!superuser, "run the tests as the bootstrap's `masstock` role, which is not a superuser");
}

#[test]
fn statuses_round_trip() {
    for status in ExecutionStatus::ALL {
        assert_eq!(status.as_str().parse::<ExecutionStatus>().unwrap(), status);
    }
    assert!("paused".parse::<ExecutionStatus>().is_err());
    assert!(ExecutionStatus::Completed.is_finished() && !ExecutionStatus::Processing.is_finished());
}
