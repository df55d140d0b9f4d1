-- Quotas and end-to-end checksums (see the Postgres migration of the same name).
CREATE TABLE IF NOT EXISTS ferry_reservations (
    object_key TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    content_md5 TEXT,
    checksum_sha256 TEXT,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ferry_reservations_user ON ferry_reservations (user_id, expires_at);
CREATE INDEX IF NOT EXISTS ferry_reservations_expiry ON ferry_reservations (expires_at);

ALTER TABLE b2_files ADD COLUMN content_md5 TEXT;
ALTER TABLE b2_files ADD COLUMN checksum_sha256 TEXT;

-- A user's usage (count and sum of sizes) read from the index alone.
CREATE INDEX IF NOT EXISTS b2_files_user_usage ON b2_files (user_id, size) WHERE deleting_at IS NULL;
