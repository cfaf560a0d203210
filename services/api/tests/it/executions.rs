//! Workflows and executions: the job on the queue read back by the Python `bullmq` client,
//! Redis away and restarted, the sweeper, validation, owner isolation, pagination, result bytes.

use masstock_api::config::{AppEnv, Secret};
use masstock_schema::{DEFAULT_WORKFLOW_ID, MIGRATOR};
use serde_json::{json, Value};

use crate::support::{
    api_on, client, python, serve_args_on, set_cookie, user, PrivateRedis, TestApi, PASSWORD, REDIS_URL,
};

/// Signs `email` in and returns a client request decorator (the access token).
async fn token(api: &TestApi, email: &str) -> String {
    let response = client()
        .post(format!("{}/api/v1/auth/login", api.url))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    set_cookie(&response, "access_token").expect("signed in").0
}

async fn start(api: &TestApi, token: &str, body: &Value) -> reqwest::Response {
    client().post(format!("{}/api/v1/executions", api.url)).bearer_auth(token).json(body).send().await.unwrap()
}

/// The jobs of the queue under `prefix`, as Python's BullMQ client reads them.
const READ_JOBS: &str = r#"
import asyncio, json, sys
from bullmq import Queue
async def main():
    queue = Queue("workflow-queue", {"connection": sys.argv[1], "prefix": sys.argv[2]})
    jobs = await queue.getJobs(["prioritized", "waiting"])
    print(json.dumps([{"id": job.id, "name": job.name, "data": job.data, "priority": job.opts.get("priority"),
                       "removeOnComplete": job.opts.get("removeOnComplete")} for job in jobs]))
    await queue.close()
asyncio.run(main())
"#;

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_execution_is_stored_and_its_job_is_on_the_queue(pool: sqlx::PgPool) {
    user(&pool, "premium@example.com", true).await;
    user(&pool, "standard@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    let mut ids = Vec::new();
    for email in ["premium@example.com", "standard@example.com"] {
        let token = token(&api, email).await;
        let body = json!({ "workflowId": DEFAULT_WORKFLOW_ID, "prompts": ["a red fox", "a blue whale"], "config": { "aspectRatio": "16:9" } });
        let response = start(&api, &token, &body).await;
        assert_eq!(response.status(), 202);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["status"], "pending");
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    let stored: i64 =
        sqlx::query_scalar("select count(*) from executions where status = 'pending' and progress_total = 2")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, 2);

    let prefix = api.queue_prefix.clone();
    let jobs = tokio::task::spawn_blocking(move || python(READ_JOBS, &[REDIS_URL, &prefix])).await.unwrap();
    let jobs: Vec<Value> = serde_json::from_str(&jobs).unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for (id, priority) in ids.iter().zip([1, 2]) {
        let job = jobs.iter().find(|job| job["id"] == json!(id)).unwrap_or_else(|| panic!("job {id} in {jobs:?}"));
        assert_eq!(job["name"], "execute-workflow");
        assert_eq!(job["priority"], priority, "premium 1, standard 2");
        assert_eq!(job["removeOnComplete"], true);
        assert_eq!(
            job["data"],
            json!({ "executionId": id, "prompts": ["a red fox", "a blue whale"], "config": { "aspectRatio": "16:9" } })
        );
    }
}

/// Whether the queue under `prefix` on `redis` holds the job of execution `id`.
fn has_job(redis: &mut redis::Connection, prefix: &str, id: &str) -> bool {
    redis::cmd("EXISTS").arg(format!("{prefix}:workflow-queue:{id}")).query::<bool>(redis).unwrap()
}

async fn marked(pool: &sqlx::PgPool, id: &str) -> bool {
    sqlx::query_scalar(
        "select enqueue_failed_at is not null from executions where id = $1::uuid and status = 'pending'",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn with_redis_away_a_submission_is_accepted_and_queued_when_redis_returns(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let mut redis = PrivateRedis::stopped();
    let mut args = serve_args_on(&pool);
    args.redis_url = Secret::from(redis.url().as_str());
    let prefix = args.queue_prefix.clone();
    let api = TestApi::start(args.clone()).await;
    let token = token(&api, "ana@example.com").await;
    let response = start(&api, &token, &json!({ "workflowId": DEFAULT_WORKFLOW_ID, "prompts": ["a cat"] })).await;
    assert_eq!(response.status(), 202, "accepted while redis is away");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "pending");
    let id = answer["id"].as_str().unwrap().to_owned();
    assert!(marked(&pool, &id).await, "marked for the sweeper");

    // The sweeper of another API instance (its own state) while Redis is still away: nothing yet.
    let state = masstock_api::app::AppState::new(args.settings().unwrap()).unwrap();
    assert!(masstock_api::sweeper::offer_marked(&state).await.is_err(), "redis is still away");
    assert!(marked(&pool, &id).await);

    redis.start();
    // The failure is remembered for 5 s, so that requests do not wait on a dead Redis.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(masstock_api::sweeper::offer_marked(&state).await.unwrap(), 1);
    assert!(has_job(&mut redis.connection(), &prefix, &id), "the sweeper added the job");
    assert!(!marked(&pool, &id).await, "and cleared the mark");
    assert_eq!(masstock_api::sweeper::offer_marked(&state).await.unwrap(), 0, "once");
    drop(api);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_redis_restart_between_two_submissions_costs_neither(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let mut redis = PrivateRedis::stopped();
    redis.start();
    let mut args = serve_args_on(&pool);
    args.redis_url = Secret::from(redis.url().as_str());
    let prefix = args.queue_prefix.clone();
    let api = TestApi::start(args).await;
    let token = token(&api, "ana@example.com").await;
    let mut ids = Vec::new();
    for round in 0..2 {
        if round == 1 {
            // The API's connection to the old process is now broken: the add is tried again on a
            // new one, and the job added at once.
            redis.restart();
        }
        let response = start(&api, &token, &json!({ "workflowId": DEFAULT_WORKFLOW_ID, "prompts": ["a cat"] })).await;
        assert_eq!(response.status(), 202);
        let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        assert!(!marked(&pool, &id).await, "queued by the request itself, round {round}");
        ids.push(id);
    }
    let mut connection = redis.connection();
    for id in &ids {
        assert!(has_job(&mut connection, &prefix, id), "the job of {id} survived the restart (AOF)");
    }
    drop(api);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_orphan_sweep_reads_every_pending_execution_not_only_a_page(pool: sqlx::PgPool) {
    let ana = user(&pool, "ana@example.com", false).await;
    let count = 2 * masstock_api::sweeper::PAGE + 17;
    sqlx::query(
        "insert into executions (user_id, workflow_id, prompts, progress_total, created_at)
         select $1, $2::uuid, '[\"orphan\"]', 1, now() - interval '10 minutes' + make_interval(secs => n % 7)
         from generate_series(1, $3) as n",
    )
    .bind(ana)
    .bind(DEFAULT_WORKFLOW_ID)
    .bind(count)
    .execute(&pool)
    .await
    .unwrap();
    let args = serve_args_on(&pool);
    let prefix = args.queue_prefix.clone();
    let api = TestApi::start(args.clone()).await;
    let state = masstock_api::app::AppState::new(args.settings().unwrap()).unwrap();
    let offered = masstock_api::sweeper::sweep_pending(&state, masstock_api::sweeper::ORPHAN_AGE).await.unwrap();
    assert_eq!(offered, usize::try_from(count).unwrap());
    let mut connection = redis::Client::open(REDIS_URL).unwrap().get_connection().unwrap();
    let queued: i64 =
        redis::cmd("ZCARD").arg(format!("{prefix}:workflow-queue:prioritized")).query(&mut connection).unwrap();
    assert_eq!(queued, count, "one job per execution, ties on created_at included");
    drop(api);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_executions_name_the_field(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    let token = token(&api, "ana@example.com").await;
    let long = "x".repeat(2001);
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({ "workflowId": DEFAULT_WORKFLOW_ID, "prompts": [] }),
            "prompts",
            "must hold between 1 and 50 prompts, it holds 0",
        ),
        (
            json!({ "workflowId": DEFAULT_WORKFLOW_ID, "prompts": vec!["p"; 51] }),
            "prompts",
            "must hold between 1 and 50 prompts, it holds 51",
        ),
        (
            json!({ "workflowId": DEFAULT_WORKFLOW_ID, "prompts": ["ok", "", "ok", long] }),
            "prompts[1]",
            "must not be empty",
        ),
        (
            json!({ "workflowId": DEFAULT_WORKFLOW_ID, "prompts": ["ok", 3] }),
            "prompts[1]",
            "expected another type: integer `3`, expected a string",
        ),
        (json!({ "workflowId": "nope", "prompts": ["a"] }), "workflowId", "must be a UUID"),
        (
            json!({ "workflowId": DEFAULT_WORKFLOW_ID, "prompts": ["a"], "config": [] }),
            "config",
            "expected another type: sequence, expected a map",
        ),
        (
            json!({ "workflowId": DEFAULT_WORKFLOW_ID, "prompts": ["a"], "priority": 0 }),
            "priority",
            "unknown field `priority`, expected one of `workflowId`, `prompts`, `config`",
        ),
    ];
    for (body, path, message) in cases {
        let response = start(&api, &token, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "validation_failed");
        assert_eq!(answer["issues"][0], json!({ "path": path, "message": message }), "{body}");
    }
    let answer: Value =
        start(&api, &token, &json!({ "workflowId": DEFAULT_WORKFLOW_ID, "prompts": ["ok", "", "ok", long] }))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(
        answer["issues"][1],
        json!({ "path": "prompts[3]", "message": "must be at most 2000 characters, it has 2001" })
    );
    // Well formed, but naming no workflow: 422, with the same body.
    let unknown = start(&api, &token, &json!({ "workflowId": uuid::Uuid::new_v4(), "prompts": ["a"] })).await;
    assert_eq!(unknown.status(), 422);
    let answer: Value = unknown.json().await.unwrap();
    assert_eq!(
        answer,
        json!({ "error": "validation_failed", "issues": [{ "path": "workflowId", "message": "no such workflow" }] })
    );
    let no_token = client().post(format!("{}/api/v1/executions", api.url)).json(&json!({})).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
}

/// Inserts an execution for `owner` directly, as if the API had taken it.
async fn insert_execution(pool: &sqlx::PgPool, owner: uuid::Uuid, prompt: &str) -> uuid::Uuid {
    sqlx::query_scalar(
        "insert into executions (user_id, workflow_id, prompts, progress_total) values ($1, $2::uuid, $3, 1) returning id",
    )
    .bind(owner)
    .bind(DEFAULT_WORKFLOW_ID)
    .bind(json!([prompt]))
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn executions_are_their_owners_only_and_paginate_newest_first(pool: sqlx::PgPool) {
    let ana = user(&pool, "ana@example.com", false).await;
    let bob = user(&pool, "bob@example.com", false).await;
    let mut anas = Vec::new();
    for prompt in ["first", "second", "third"] {
        anas.push(insert_execution(&pool, ana, prompt).await);
    }
    let bobs = insert_execution(&pool, bob, "bob's").await;
    let api = api_on(&pool, AppEnv::Test).await;
    let ana_token = token(&api, "ana@example.com").await;
    let bob_token = token(&api, "bob@example.com").await;
    let get = |path: String, token: String| {
        let url = format!("{}{path}", api.url);
        async move { client().get(url).bearer_auth(token).send().await.unwrap() }
    };

    let mine = get(format!("/api/v1/executions/{}", anas[0]), ana_token.clone()).await;
    assert_eq!(mine.status(), 200);
    let body: Value = mine.json().await.unwrap();
    assert_eq!(body["progress"], json!({ "done": 0, "total": 1 }));
    assert_eq!(body["status"], "pending");
    assert_eq!(body["results"], json!([]));
    assert_eq!(get(format!("/api/v1/executions/{}", anas[0]), bob_token.clone()).await.status(), 404, "not 403");
    assert_eq!(get(format!("/api/v1/executions/{bobs}"), ana_token.clone()).await.status(), 404);
    assert_eq!(get("/api/v1/executions/not-a-uuid".into(), ana_token.clone()).await.status(), 400);

    let page: Value = get("/api/v1/executions?limit=2".into(), ana_token.clone()).await.json().await.unwrap();
    let prompts: Vec<&Value> = page["items"].as_array().unwrap().iter().map(|item| &item["prompts"][0]).collect();
    assert_eq!(prompts, ["third", "second"], "newest first, Bob's never");
    let cursor = page["nextCursor"].as_str().expect("a next page").to_owned();
    let rest: Value =
        get(format!("/api/v1/executions?limit=2&cursor={cursor}"), ana_token.clone()).await.json().await.unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["prompts"][0], "first");
    assert_eq!(rest["nextCursor"], Value::Null);
    assert_eq!(get("/api/v1/executions?limit=0".into(), ana_token.clone()).await.status(), 400);
    assert_eq!(get("/api/v1/executions?cursor=garbage".into(), ana_token).await.status(), 400);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn result_images_are_served_with_their_type_to_their_owner(pool: sqlx::PgPool) {
    let ana = user(&pool, "ana@example.com", false).await;
    user(&pool, "bob@example.com", false).await;
    let execution = insert_execution(&pool, ana, "a cat").await;
    let uploads = tempfile::tempdir().unwrap();
    fs_err::create_dir(uploads.path().join(execution.to_string())).unwrap();
    let png = b"\x89PNG\r\n\x1a\nnot really an image".to_vec();
    fs_err::write(uploads.path().join(format!("{execution}/0.png")), &png).unwrap();
    sqlx::query("insert into execution_results (execution_id, prompt_index, content_type, storage_location, size_bytes) values ($1, 0, 'image/png', $2, $3)")
        .bind(execution)
        .bind(format!("{execution}/0.png"))
        .bind(i64::try_from(png.len()).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("insert into execution_prompt_failures (execution_id, prompt_index, error, permanent) values ($1, 1, 'gemini answered without an image', true)")
        .bind(execution)
        .execute(&pool)
        .await
        .unwrap();
    let mut args = serve_args_on(&pool);
    args.uploads_dir = uploads.path().to_path_buf();
    let api = TestApi::start(args).await;
    let ana_token = token(&api, "ana@example.com").await;
    let bob_token = token(&api, "bob@example.com").await;

    let shown: Value = client()
        .get(format!("{}/api/v1/executions/{execution}", api.url))
        .bearer_auth(&ana_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["results"],
        json!([{ "index": 0, "contentType": "image/png", "size": png.len(), "url": format!("/api/v1/executions/{execution}/results/0") }])
    );
    assert_eq!(
        shown["failures"],
        json!([{ "index": 1, "error": "gemini answered without an image", "retrying": false }])
    );
    let image = client()
        .get(format!("{}/api/v1/executions/{execution}/results/0", api.url))
        .bearer_auth(&ana_token)
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert_eq!(image.bytes().await.unwrap().to_vec(), png);
    let others = client()
        .get(format!("{}/api/v1/executions/{execution}/results/0", api.url))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(others.status(), 404);
    let missing = client()
        .get(format!("{}/api/v1/executions/{execution}/results/1", api.url))
        .bearer_auth(&ana_token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn workflows_are_listed_for_signed_in_users(pool: sqlx::PgPool) {
    user(&pool, "ana@example.com", false).await;
    let api = api_on(&pool, AppEnv::Test).await;
    assert_eq!(client().get(format!("{}/api/v1/workflows", api.url)).send().await.unwrap().status(), 401);
    let token = token(&api, "ana@example.com").await;
    let body: Value = client()
        .get(format!("{}/api/v1/workflows", api.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["items"][0]["id"], DEFAULT_WORKFLOW_ID);
    assert_eq!(body["items"][0]["name"], "Image from prompt");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn orphaned_pending_executions_are_offered_to_the_queue_again(pool: sqlx::PgPool) {
    let ana = user(&pool, "ana@example.com", true).await;
    // Stored ten minutes ago by a process that died before adding the job; and a fresh one.
    let orphan = insert_execution(&pool, ana, "orphan").await;
    sqlx::query("update executions set created_at = now() - interval '10 minutes' where id = $1")
        .bind(orphan)
        .execute(&pool)
        .await
        .unwrap();
    let fresh = insert_execution(&pool, ana, "fresh").await;
    let args = serve_args_on(&pool);
    let prefix = args.queue_prefix.clone();
    let api = TestApi::start(args.clone()).await;
    let state = masstock_api::app::AppState::new(args.settings().unwrap()).unwrap();

    let offered = masstock_api::sweeper::sweep_pending(&state, masstock_api::sweeper::ORPHAN_AGE).await.unwrap();
    assert_eq!(offered, 1, "only the orphan");
    // A second pass adds nothing new: the job id is the execution id.
    masstock_api::sweeper::sweep_pending(&state, masstock_api::sweeper::ORPHAN_AGE).await.unwrap();
    let jobs = tokio::task::spawn_blocking(move || python(READ_JOBS, &[REDIS_URL, &prefix])).await.unwrap();
    let jobs: Vec<Value> = serde_json::from_str(&jobs).unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["id"], json!(orphan.to_string()));
    assert_eq!(jobs[0]["priority"], 1);
    assert_eq!(jobs[0]["data"]["prompts"], json!(["orphan"]));
    assert_ne!(jobs[0]["id"], json!(fresh.to_string()));
    drop(api);
}
