-- Quotas and end-to-end checksums.
--
-- A reservation is an upload Ferry presigned and that may still be confirmed: it holds its
-- declared size against the user's quota until it is confirmed (the row in b2_files takes over)
-- or its confirm window ends, and it remembers the digests signed into its URL so the confirm
-- can record them. Only uploads that need one get one (a quota is set, or a digest was sent).
CREATE TABLE IF NOT EXISTS ferry_reservations (
    object_key TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    content_md5 TEXT,
    checksum_sha256 TEXT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS ferry_reservations_user ON ferry_reservations (user_id, expires_at);
CREATE INDEX IF NOT EXISTS ferry_reservations_expiry ON ferry_reservations (expires_at);

-- The digests the bucket verified, as the client declared them (base64).
ALTER TABLE b2_files ADD COLUMN IF NOT EXISTS content_md5 TEXT;
ALTER TABLE b2_files ADD COLUMN IF NOT EXISTS checksum_sha256 TEXT;

-- A user's usage (count and sum of sizes) read from the index alone.
CREATE INDEX IF NOT EXISTS b2_files_user_usage ON b2_files (user_id) INCLUDE (size) WHERE deleting_at IS NULL;

ALTER TABLE ferry_reservations ENABLE ROW LEVEL SECURITY;
ALTER TABLE ferry_reservations FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS ferry_reservations_owner ON ferry_reservations;
CREATE POLICY ferry_reservations_owner ON ferry_reservations
    USING (user_id = auth.user_id())
    WITH CHECK (user_id = auth.user_id());
DO $$
BEGIN
    EXECUTE format(
        'DROP POLICY IF EXISTS ferry_reservations_maintenance ON ferry_reservations; '
        'CREATE POLICY ferry_reservations_maintenance ON ferry_reservations TO %I '
        'USING (current_setting(''ferry.maintenance'', true) = ''on'') '
        'WITH CHECK (current_setting(''ferry.maintenance'', true) = ''on'')',
        current_user);
END
$$;

-- A runtime role set up before this table existed (the README's two-role set-up) presigns and
-- confirms: give it what reservations need, so an upgrade does not break uploads.
DO $$
DECLARE
    grantee_role text;
BEGIN
    FOR grantee_role IN
        SELECT DISTINCT grantee FROM information_schema.role_table_grants
        WHERE table_name = 'b2_files' AND privilege_type = 'INSERT'
          AND grantee NOT IN ('PUBLIC', current_user)
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, DELETE ON ferry_reservations TO %I', grantee_role);
    END LOOP;
END
$$;
