//! MasStock's PostgreSQL schema, as sqlx migrations shared by the API and the worker, and the
//! few names both must agree on.
//!
//! `MIGRATOR` embeds `migrations/`; the shared names are `ExecutionStatus`, `DEFAULT_WORKFLOW_ID`
//! and `MAX_PROMPTS`.
//!
//! - The schema uses no extension and nothing a superuser must do, so it runs on Supabase.
//! - Case-insensitive e-mail uniqueness is a unique index on `lower(email)`, not `citext`.
//! - Statuses are text with a check constraint rather than an enum type, so adding one is a plain
//!   migration.
//! - Refresh tokens are stored only as their SHA-256, in families, for reuse detection.
//! - `execution_results` is unique per (execution, prompt index), so a job that runs again cannot
//!   store a result twice; per-prompt failures are `execution_prompt_failures`.
//!
//! Its tests use `#[sqlx::test]` on the bootstrap's PostgreSQL, as a role that is not a superuser.
//! `.cargo/config.toml` points `DATABASE_URL` there unless the environment says otherwise.

use sqlx::migrate::Migrator;

/// Every migration of `migrations/`, embedded in the binary that applies them.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The workflow seeded by the first migration.
pub const DEFAULT_WORKFLOW_ID: &str = "0b6f2c1e-6a43-4c1f-9a57-2d1e5f0c7a10";

/// Prompts in one execution, at least one: the schema holds both bounds.
pub const MAX_PROMPTS: usize = 50;

/// Where an execution stands; stored as text with a check constraint, so a new state is one
/// migration away rather than an enum type to alter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl ExecutionStatus {
    pub const ALL: [Self; 4] = [Self::Pending, Self::Processing, Self::Completed, Self::Failed];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    /// Whether the execution is over: nothing will change it again.
    #[must_use]
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

impl std::str::FromStr for ExecutionStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| format!("unknown execution status `{text}`"))
    }
}

/// Applies every pending migration.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
