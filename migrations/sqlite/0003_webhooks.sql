-- Who each pending upload belongs to (written in batches off the presign path, only when the B2
-- webhook is enabled), and which B2 event notifications were already handled.
CREATE TABLE IF NOT EXISTS b2_pending_uploads (
    object_key TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS b2_pending_uploads_expiry ON b2_pending_uploads (expires_at);
CREATE TABLE IF NOT EXISTS b2_webhook_events (
    event_id TEXT PRIMARY KEY,
    handled_at INTEGER NOT NULL
);
