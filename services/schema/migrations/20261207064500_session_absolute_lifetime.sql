-- When the sign-in that started a session family happened: refreshing slides the refresh token's
-- own expiry, never this, so a session ends at `family_started_at` plus the API's absolute
-- lifetime (`SESSION_ABSOLUTE_LIFETIME`, 30 days by default) whatever the refreshes (OWASP's
-- absolute timeout). Each rotation copies it to the successor.
alter table refresh_sessions add column family_started_at timestamptz;
update refresh_sessions r set family_started_at = (
    select min(f.created_at) from refresh_sessions f where f.family_id = r.family_id
);
alter table refresh_sessions alter column family_started_at set default now();
alter table refresh_sessions alter column family_started_at set not null;
