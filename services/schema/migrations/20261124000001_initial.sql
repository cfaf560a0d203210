-- MasStock's first schema: users, refresh sessions, workflows, executions and their results.
-- Portable to Supabase: no extension and nothing that needs a superuser (gen_random_uuid() is
-- built into PostgreSQL 13 and later).

create table users (
    id uuid primary key default gen_random_uuid(),
    email text not null check (length(email) between 3 and 254 and email = btrim(email)),
    -- argon2id, in the PHC string format (`$argon2id$v=19$m=...`).
    password_hash text not null check (password_hash like '$argon2id$%'),
    premium boolean not null default false,
    created_at timestamptz not null default now()
);
-- One account per address, whatever its case.
create unique index users_email_lower_key on users (lower(email));

-- A refresh token is stored only as its SHA-256. Rotation keeps the family: presenting a token
-- that was already rotated revokes every session of its family (OWASP's reuse detection).
create table refresh_sessions (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null references users (id) on delete cascade,
    family_id uuid not null,
    token_hash bytea not null unique check (length(token_hash) = 32),
    expires_at timestamptz not null,
    created_at timestamptz not null default now(),
    rotated_at timestamptz,
    revoked_at timestamptz
);
create index refresh_sessions_family on refresh_sessions (family_id);
create index refresh_sessions_user on refresh_sessions (user_id);

create table workflows (
    id uuid primary key default gen_random_uuid(),
    name text not null unique check (length(name) between 1 and 200),
    prompt_template text not null check (prompt_template like '%{prompt}%'),
    model_config jsonb not null default '{}' check (jsonb_typeof(model_config) = 'object'),
    created_at timestamptz not null default now()
);

-- The default workflow, with a fixed id so that clients and tests can name it.
insert into workflows (id, name, prompt_template, model_config) values (
    '0b6f2c1e-6a43-4c1f-9a57-2d1e5f0c7a10',
    'Image from prompt',
    '{prompt}',
    '{"model": "gemini-2.5-flash-image", "aspectRatio": "1:1"}'
);

create table executions (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null references users (id) on delete cascade,
    workflow_id uuid not null references workflows (id),
    prompts jsonb not null check (jsonb_typeof(prompts) = 'array' and jsonb_array_length(prompts) between 1 and 50),
    config jsonb not null default '{}' check (jsonb_typeof(config) = 'object'),
    status text not null default 'pending' check (status in ('pending', 'processing', 'completed', 'failed')),
    progress_done integer not null default 0,
    progress_total integer not null,
    error text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz,
    check (progress_total = jsonb_array_length(prompts)),
    check (progress_done between 0 and progress_total)
);
-- A user's executions, newest first, for keyset pagination on (created_at, id).
create index executions_user_newest on executions (user_id, created_at desc, id desc);

create table execution_results (
    id uuid primary key default gen_random_uuid(),
    execution_id uuid not null references executions (id) on delete cascade,
    prompt_index integer not null check (prompt_index between 0 and 49),
    content_type text not null check (content_type like 'image/%'),
    storage_location text not null check (length(storage_location) > 0),
    size_bytes bigint not null check (size_bytes >= 0),
    created_at timestamptz not null default now(),
    -- A job that runs again never stores a prompt's result twice.
    unique (execution_id, prompt_index)
);
