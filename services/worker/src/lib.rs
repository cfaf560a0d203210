//! MasStock's worker: takes executions off the BullMQ `workflow-queue`, asks Gemini for an image
//! per prompt under a rate limit shared by every worker, stores the images under `UPLOADS_DIR`
//! and records the results in PostgreSQL.
//!
//! `run` wires the parts together and owns shutdown; `process` holds the rules of an execution;
//! `gemini` speaks Gemini's REST API; `gemini_quota` (the Gemini quota shared by every worker) and `heartbeat` keep their state in Redis;
//! `reconcile` settles executions whose job ended outside processing; `text` cuts error texts.

pub mod cli;
pub mod config;
pub mod gemini;
pub mod gemini_quota;
pub mod healthcheck;
pub mod heartbeat;
pub mod process;
pub mod reconcile;
pub mod run;
pub mod storage;
pub mod text;
