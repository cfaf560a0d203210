-- Why a prompt of an execution has no image. A prompt's failure never fails the other prompts;
-- a row here is replaced when the prompt is tried again and removed when it finally succeeds.
create table execution_prompt_failures (
    execution_id uuid not null references executions (id) on delete cascade,
    prompt_index integer not null check (prompt_index between 0 and 49),
    error text not null check (length(error) between 1 and 2000),
    -- Whether trying again cannot help (the provider rejected the prompt), as opposed to a
    -- failure that a later attempt of the job may overcome (timeouts, 5xx, rate limits).
    permanent boolean not null,
    attempts integer not null default 1 check (attempts >= 1),
    updated_at timestamptz not null default now(),
    primary key (execution_id, prompt_index)
);
