-- Row-level security, the way Neon does it: a session sees, inserts, updates and deletes only
-- the rows whose user_id is auth.user_id(). Ferry publishes the caller in each transaction with
-- set_config('request.jwt.claims', '{"sub": ...}', true).

CREATE SCHEMA IF NOT EXISTS auth;

-- On Neon, pg_session_jwt provides auth.user_id(); elsewhere an equivalent reading the same
-- setting is created, and only when none exists.
DO $$
BEGIN
    IF to_regprocedure('auth.user_id()') IS NULL THEN
        CREATE FUNCTION auth.user_id() RETURNS text
            LANGUAGE sql STABLE
            AS $f$ SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub' $f$;
    END IF;
END
$$;

ALTER TABLE b2_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE b2_files FORCE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS b2_files_owner ON b2_files;
CREATE POLICY b2_files_owner ON b2_files
    USING (user_id = auth.user_id())
    WITH CHECK (user_id = auth.user_id());

-- Cleanup must see every row. It runs as the role that owns the schema (this migration's
-- role), inside transactions that set ferry.maintenance; no other role gets this policy.
DO $$
BEGIN
    EXECUTE format(
        'DROP POLICY IF EXISTS b2_files_maintenance ON b2_files; '
        'CREATE POLICY b2_files_maintenance ON b2_files TO %I '
        'USING (current_setting(''ferry.maintenance'', true) = ''on'') '
        'WITH CHECK (current_setting(''ferry.maintenance'', true) = ''on'')',
        current_user);
END
$$;
