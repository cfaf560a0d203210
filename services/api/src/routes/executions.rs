//! `/api/v1/executions`: start a workflow on a batch of prompts, follow it, fetch its images.
//!
//! Another user's execution is a 404, never a 403: its existence is not the caller's business.

use std::path::{Component, Path as FilePath};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use masstock_queue::WorkflowJob;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody, Issue};
use crate::validation::{is_blank, stored_json_issues, strict_uuid, Valid, Validate};

/// The longest prompt, in characters.
pub const MAX_PROMPT_CHARS: usize = 2000;
/// The largest `config`, serialized.
pub const MAX_CONFIG_BYTES: usize = 8 * 1024;
const DEFAULT_PAGE: i64 = 20;
const MAX_PAGE: i64 = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/executions", get(list).post(create))
        .route("/api/v1/executions/{id}", get(show))
        .route("/api/v1/executions/{id}/results/{index}", get(result))
}

/// A batch of prompts to run through a workflow.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewExecution {
    /// A workflow's id (a hyphenated UUID); one that names no workflow is a 422.
    #[schema(format = Uuid, example = "0b6f2c1e-6a43-4c1f-9a57-2d1e5f0c7a10")]
    workflow_id: String,
    /// 1 to 50 prompts of 1 to 2000 characters, each with a character other than white space
    /// and no NUL.
    #[schema(schema_with = crate::openapi::prompts_schema)]
    prompts: Vec<String>,
    /// Options for the model: at most 8 KiB of JSON, without NUL characters, numbers from
    /// -(2^53 − 1) to 2^53 − 1 (I-JSON's interoperable range), so that it reads back unchanged.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::config_schema)]
    config: Map<String, Value>,
}

/// An execution accepted: stored, and on the queue or about to be.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionAccepted {
    pub id: Uuid,
    #[schema(example = "pending")]
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Progress {
    pub done: i32,
    pub total: i32,
}

/// A prompt's image.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultInfo {
    pub index: i32,
    #[schema(example = "image/png")]
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Where to fetch it.
    pub url: String,
}

/// Why a prompt has no image (yet).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptFailure {
    pub index: i32,
    #[schema(example = "gemini refused the request (400 INVALID_ARGUMENT): ...")]
    pub error: String,
    /// Whether the worker will try this prompt again (a transient failure with attempts left).
    pub retrying: bool,
}

/// An execution and, when fetched alone, its results and the prompts that failed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub id: Uuid,
    pub workflow_id: Uuid,
    /// `pending`, `processing`, `completed` or `failed`.
    #[schema(example = "processing")]
    pub status: String,
    pub progress: Progress,
    pub prompts: Vec<String>,
    #[schema(value_type = Object)]
    pub config: Value,
    pub error: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<ResultInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<Vec<PromptFailure>>,
}

/// A page of the caller's executions, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionList {
    pub items: Vec<Execution>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

impl Validate for NewExecution {
    fn issues(&self) -> Vec<Issue> {
        let mut issues = Vec::new();
        if strict_uuid(&self.workflow_id).is_none() {
            issues.push(Issue { path: "workflowId".into(), message: "must be a UUID".into() });
        }
        if self.prompts.is_empty() || self.prompts.len() > masstock_schema::MAX_PROMPTS {
            issues.push(Issue {
                path: "prompts".into(),
                message: format!(
                    "must hold between 1 and {} prompts, it holds {}",
                    masstock_schema::MAX_PROMPTS,
                    self.prompts.len()
                ),
            });
        }
        for (index, prompt) in self.prompts.iter().enumerate() {
            let length = prompt.chars().count();
            if prompt.contains('\0') {
                issues.push(Issue {
                    path: format!("prompts[{index}]"),
                    message: "must not contain NUL characters".into(),
                });
            } else if is_blank(prompt) {
                issues.push(Issue { path: format!("prompts[{index}]"), message: "must not be empty".into() });
            } else if length > MAX_PROMPT_CHARS {
                issues.push(Issue {
                    path: format!("prompts[{index}]"),
                    message: format!("must be at most {MAX_PROMPT_CHARS} characters, it has {length}"),
                });
            }
        }
        issues.extend(stored_json_issues(&Value::Object(self.config.clone()), "config"));
        if serde_json::to_vec(&self.config).map_or(true, |bytes| bytes.len() > MAX_CONFIG_BYTES) {
            issues.push(Issue {
                path: "config".into(),
                message: format!("must be at most {MAX_CONFIG_BYTES} bytes of JSON"),
            });
        }
        issues
    }
}

/// Starts a workflow on a batch of prompts. Premium users' jobs run first.
#[utoipa::path(post, path = "/api/v1/executions", tag = "executions", request_body = NewExecution, security(("bearer" = []), ("cookie" = [])), responses(
    (status = 202, description = "Stored, and queued now or, while Redis is away, as soon as it answers again", body = ExecutionAccepted),
    (status = 400, description = "Invalid body; `issues` names each field", body = ErrorBody),
    (status = 422, description = "`workflowId` names no workflow", body = ErrorBody),
    (status = 401, description = "Not signed in", body = ErrorBody),
    (status = 413, description = "Body over 512 KiB", body = ErrorBody),
    (status = 415, description = "Not `application/json`", body = ErrorBody),
    (status = 503, description = "PostgreSQL is unreachable; nothing was stored", body = ErrorBody),
))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Valid(body): Valid<NewExecution>,
) -> Result<Response, ApiError> {
    let workflow_id = Uuid::parse_str(&body.workflow_id).map_err(ApiError::internal)?;
    let known: bool = sqlx::query_scalar("select exists (select 1 from workflows where id = $1)")
        .bind(workflow_id)
        .fetch_one(&state.db)
        .await?;
    if !known {
        return Err(ApiError::Unprocessable(vec![Issue {
            path: "workflowId".into(),
            message: "no such workflow".into(),
        }]));
    }
    let config = Value::Object(body.config);
    let id: Uuid = sqlx::query_scalar(
        "insert into executions (user_id, workflow_id, prompts, config, progress_total) values ($1, $2, $3, $4, $5) returning id",
    )
    .bind(user.id)
    .bind(workflow_id)
    .bind(sqlx::types::Json(&body.prompts))
    .bind(&config)
    .bind(i32::try_from(body.prompts.len()).map_err(ApiError::internal)?)
    .fetch_one(&state.db)
    .await?;
    // Stored first, so a worker that takes the job at once finds its row. When Redis is away
    // (restarting), the execution stays pending, marked for the sweeper, which adds its job as
    // soon as Redis answers: the submission is accepted either way.
    let job = WorkflowJob { execution_id: id, prompts: body.prompts, config };
    if state.add_job(&job, user.premium).await.is_ok() {
        state.metrics.job_enqueued();
        tracing::info!(execution = %id, prompts = job.prompts.len(), premium = user.premium, "execution queued");
    } else {
        tracing::warn!(execution = %id, "redis is away; the execution waits for the sweeper to add its job");
        // Unmarked, it is still an orphan to the sweeper's slower pass: accepted all the same.
        let marked =
            sqlx::query("update executions set enqueue_failed_at = now() where id = $1").bind(id).execute(&state.db);
        if let Err(error) = marked.await {
            tracing::warn!(%error, execution = %id, "cannot mark the execution; the orphan sweep will add its job");
        }
    }
    Ok((StatusCode::ACCEPTED, Json(ExecutionAccepted { id, status: "pending" })).into_response())
}

/// A path or query the router could not read, as a validation issue rather than plain text.
fn unreadable(what: &str, rejection: &impl std::fmt::Display) -> ApiError {
    ApiError::Validation(vec![Issue { path: what.into(), message: rejection.to_string() }])
}

/// A path parameter that must be a UUID.
fn uuid_parameter(name: &str, value: &str) -> Result<Uuid, ApiError> {
    strict_uuid(value)
        .ok_or_else(|| ApiError::Validation(vec![Issue { path: name.into(), message: "must be a UUID".into() }]))
}

#[derive(Debug, sqlx::FromRow)]
struct ExecutionRow {
    id: Uuid,
    workflow_id: Uuid,
    status: String,
    prompts: Value,
    config: Value,
    progress_done: i32,
    progress_total: i32,
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

const EXECUTION_COLUMNS: &str =
    "id, workflow_id, status, prompts, config, progress_done, progress_total, error, created_at, updated_at, started_at, finished_at";

fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl ExecutionRow {
    fn into_execution(self, details: Option<(Vec<ResultInfo>, Vec<PromptFailure>)>) -> Execution {
        let (results, failures) = details.map_or((None, None), |(results, failures)| (Some(results), Some(failures)));
        Execution {
            id: self.id,
            workflow_id: self.workflow_id,
            status: self.status,
            progress: Progress { done: self.progress_done, total: self.progress_total },
            prompts: serde_json::from_value(self.prompts).unwrap_or_default(),
            config: self.config,
            error: self.error,
            created_at: timestamp(self.created_at),
            updated_at: timestamp(self.updated_at),
            started_at: self.started_at.map(timestamp),
            finished_at: self.finished_at.map(timestamp),
            results,
            failures,
        }
    }
}

/// One of the caller's executions, with its progress and results.
#[utoipa::path(get, path = "/api/v1/executions/{id}", tag = "executions", security(("bearer" = []), ("cookie" = [])),
    params(("id" = Uuid, Path, description = "The execution")), responses(
    (status = 200, description = "The execution", body = Execution),
    (status = 400, description = "`id` is not a UUID", body = ErrorBody),
    (status = 404, description = "No such execution of the caller's", body = ErrorBody),
))]
pub async fn show(
    State(state): State<AppState>,
    user: AuthUser,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Execution>, ApiError> {
    let Path(id) = id.map_err(|rejection| unreadable("id", &rejection))?;
    let id = uuid_parameter("id", &id)?;
    let row: Option<ExecutionRow> =
        sqlx::query_as(&format!("select {EXECUTION_COLUMNS} from executions where id = $1 and user_id = $2"))
            .bind(id)
            .bind(user.id)
            .fetch_optional(&state.db)
            .await?;
    let row = row.ok_or(ApiError::NotFound)?;
    let results: Vec<(i32, String, i64)> =
        sqlx::query_as("select prompt_index, content_type, size_bytes from execution_results where execution_id = $1 order by prompt_index")
            .bind(id)
            .fetch_all(&state.db)
            .await?;
    let results = results
        .into_iter()
        .map(|(index, content_type, size)| ResultInfo {
            index,
            content_type,
            size,
            url: format!("/api/v1/executions/{id}/results/{index}"),
        })
        .collect();
    let failures: Vec<(i32, String, bool)> = sqlx::query_as(
        "select prompt_index, error, permanent from execution_prompt_failures where execution_id = $1 order by prompt_index",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    // A finished execution retries nothing, whatever a row left by an interrupted run says.
    let finished =
        row.status.parse::<masstock_schema::ExecutionStatus>().is_ok_and(masstock_schema::ExecutionStatus::is_finished);
    let failures = failures
        .into_iter()
        .map(|(index, error, permanent)| PromptFailure { index, error, retrying: !permanent && !finished })
        .collect();
    Ok(Json(row.into_execution(Some((results, failures)))))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// What the document says a cursor looks like; every string it matches is one [`decode_cursor`]
/// reads, so a client cannot make up a cursor that is refused while the document allows it.
pub const CURSOR_PATTERN: &str = r"^[0-9]{1,17}\.[0-9a-f]{32}$";

/// The position after the last item of a page: `(created_at, id)` as `<microseconds>.<id>`,
/// opaque to clients.
fn encode_cursor(row: &ExecutionRow) -> String {
    format!("{}.{}", row.created_at.timestamp_micros(), row.id.simple())
}

/// The position a cursor names: 1 to 17 digits of microseconds since 1970 (up to the year 5138,
/// all times PostgreSQL compares) and the id as 32 lowercase hexadecimal digits.
fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = cursor.split_once('.')?;
    let digits = |text: &str, allowed: fn(&u8) -> bool| text.bytes().all(|byte| allowed(&byte));
    if !(1..=17).contains(&micros.len()) || !digits(micros, u8::is_ascii_digit) {
        return None;
    }
    if id.len() != 32 || !digits(id, |byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte)) {
        return None;
    }
    let time = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((time, Uuid::try_parse(id).ok()?))
}

/// The caller's executions, newest first, by pages.
#[utoipa::path(get, path = "/api/v1/executions", operation_id = "list_executions", tag = "executions", security(("bearer" = []), ("cookie" = [])), params(
        ("cursor" = Option<String>, Query, pattern = r"^[0-9]{1,17}\.[0-9a-f]{32}$", description = "`nextCursor` of the previous page"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Items per page, 1 to 100 (20 by default)"),
    ), responses(
    (status = 200, description = "A page", body = ExecutionList),
    (status = 400, description = "Bad `limit` or `cursor`", body = ErrorBody),
))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ExecutionList>, ApiError> {
    let Query(query) = query.map_err(|rejection| unreadable("", &rejection))?;
    let mut issues = Vec::new();
    // An empty `limit=` or `cursor=` is refused like any other value the document does not allow.
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(text) => text.parse::<i64>().ok().filter(|limit| (1..=MAX_PAGE).contains(limit)).unwrap_or_else(|| {
            issues
                .push(Issue { path: "limit".into(), message: format!("must be a whole number from 1 to {MAX_PAGE}") });
            DEFAULT_PAGE
        }),
    };
    let after = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => decode_cursor(cursor).or_else(|| {
            issues.push(Issue { path: "cursor".into(), message: "is not a cursor this API gave".into() });
            None
        }),
    };
    if !issues.is_empty() {
        return Err(ApiError::Validation(issues));
    }
    // Keyset pagination on the (user_id, created_at desc, id desc) index: stable under inserts.
    let (after_time, after_id) = after.unwrap_or((DateTime::<Utc>::MAX_UTC, Uuid::max()));
    let mut rows: Vec<ExecutionRow> = sqlx::query_as(&format!(
        "select {EXECUTION_COLUMNS} from executions
         where user_id = $1 and (created_at, id) < ($2, $3)
         order by created_at desc, id desc limit $4"
    ))
    .bind(user.id)
    .bind(after_time)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(&state.db)
    .await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if more { rows.last().map(encode_cursor) } else { None };
    let items = rows.into_iter().map(|row| row.into_execution(None)).collect();
    Ok(Json(ExecutionList { items, next_cursor }))
}

/// Whether `location` stays inside the uploads folder: relative, no `..`, no root.
fn is_contained(location: &str) -> bool {
    let path = FilePath::new(location);
    !location.is_empty() && path.components().all(|component| matches!(component, Component::Normal(_)))
}

/// A prompt's image, with its content type.
#[utoipa::path(get, path = "/api/v1/executions/{id}/results/{index}", tag = "executions", security(("bearer" = []), ("cookie" = [])),
    params(("id" = Uuid, Path, description = "The execution"), ("index" = i32, Path, minimum = 0, maximum = 49, description = "The prompt's index, from 0")), responses(
    (status = 200, description = "The image bytes, of the type the worker stored (`image/png`, `image/jpeg`, ...)", content_type = "image/*"),
    (status = 400, description = "`id` is not a UUID or `index` not a prompt index", body = ErrorBody),
    (status = 404, description = "No such result of the caller's", body = ErrorBody),
))]
pub async fn result(
    State(state): State<AppState>,
    user: AuthUser,
    parameters: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((id, index)) = parameters.map_err(|rejection| unreadable("", &rejection))?;
    let id = uuid_parameter("id", &id)?;
    let index: i32 = index
        .parse()
        .ok()
        .filter(|index| (0..i32::try_from(masstock_schema::MAX_PROMPTS).unwrap_or(i32::MAX)).contains(index))
        .ok_or_else(|| {
            ApiError::Validation(vec![Issue { path: "index".into(), message: "must be a prompt index".into() }])
        })?;
    let stored: Option<(String, String)> = sqlx::query_as(
        "select r.content_type, r.storage_location from execution_results r
         join executions e on e.id = r.execution_id
         where r.execution_id = $1 and r.prompt_index = $2 and e.user_id = $3",
    )
    .bind(id)
    .bind(index)
    .bind(user.id)
    .fetch_optional(&state.db)
    .await?;
    let (content_type, location) = stored.ok_or(ApiError::NotFound)?;
    if !is_contained(&location) {
        return Err(ApiError::internal(format!("result {id}/{index} is stored outside the uploads folder")));
    }
    let path = state.settings.uploads_dir.join(&location);
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok((
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "private, max-age=86400, immutable".to_owned()),
            ],
            bytes,
        )
            .into_response()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(execution = %id, index, "a recorded result's file is missing");
            Err(ApiError::NotFound)
        }
        Err(error) => Err(ApiError::internal(format!("cannot read a result file: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_locations_stay_in_the_uploads_folder() {
        assert!(is_contained("0b6f/0.png"));
        for bad in ["", "/etc/passwd", "../x.png", "a/../../x.png", "./x"] {
            assert!(!is_contained(bad), "`{bad}`");
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_cursor("not-a-cursor"), None);
        let (time, id) = decode_cursor(&format!("1700000000000000.{}", Uuid::max().simple())).unwrap();
        assert_eq!((time.timestamp(), id), (1_700_000_000, Uuid::max()));
        let largest = decode_cursor(&format!("99999999999999999.{}", Uuid::nil().simple())).unwrap();
        assert_eq!(chrono::Datelike::year(&largest.0), 5138, "within what PostgreSQL compares");
        for bad in [
            "",
            ".",
            "1.",
            "-1.00000000000000000000000000000000",
            "123456789012345678.00000000000000000000000000000000",
        ] {
            assert_eq!(decode_cursor(bad), None, "`{bad}`");
        }
        assert_eq!(decode_cursor(&format!("1.{}", Uuid::max().simple().to_string().to_uppercase())), None);
    }
}
