-- When the API stored an execution but could not add its job (Redis restarting or away), it keeps
-- the execution `pending` and records when the add failed here; the API's sweeper adds the job as
-- soon as Redis answers again and clears the mark. Null: the job was added (or is being added).
alter table executions add column enqueue_failed_at timestamptz;
-- The sweeper's quick pass reads only the marked executions.
create index executions_enqueue_failed on executions (enqueue_failed_at) where enqueue_failed_at is not null;
-- The orphan pass reads every pending execution, oldest first, by pages.
create index executions_pending on executions (created_at, id) where status = 'pending';
