-- Keys of deleted files. A confirm that raced a delete (or a B2 webhook retry of an event Ferry
-- already handled) must not bring the row back: a deleted key stays deleted. Rows are kept
-- until no confirm window can still be open, then pruned by cleanup.
CREATE TABLE IF NOT EXISTS b2_deleted_keys (
    object_key TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    deleted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS b2_deleted_keys_at ON b2_deleted_keys (deleted_at);

ALTER TABLE b2_deleted_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE b2_deleted_keys FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS b2_deleted_keys_owner ON b2_deleted_keys;
CREATE POLICY b2_deleted_keys_owner ON b2_deleted_keys
    USING (user_id = auth.user_id())
    WITH CHECK (user_id = auth.user_id());
DO $$
BEGIN
    EXECUTE format(
        'DROP POLICY IF EXISTS b2_deleted_keys_maintenance ON b2_deleted_keys; '
        'CREATE POLICY b2_deleted_keys_maintenance ON b2_deleted_keys TO %I '
        'USING (current_setting(''ferry.maintenance'', true) = ''on'') '
        'WITH CHECK (current_setting(''ferry.maintenance'', true) = ''on'')',
        current_user);
END
$$;

-- A runtime role set up before this table existed (the README's two-role set-up) deletes files:
-- give it what deleting now needs, so an upgrade does not break deletes.
DO $$
DECLARE
    grantee_role text;
BEGIN
    FOR grantee_role IN
        SELECT DISTINCT grantee FROM information_schema.role_table_grants
        WHERE table_name = 'b2_files' AND privilege_type = 'DELETE'
          AND grantee NOT IN ('PUBLIC', current_user)
    LOOP
        EXECUTE format('GRANT SELECT, INSERT ON b2_deleted_keys TO %I', grantee_role);
    END LOOP;
END
$$;
