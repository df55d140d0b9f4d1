-- Keys of deleted files. A confirm that raced a delete (or a B2 webhook retry of an event Ferry
-- already handled) must not bring the row back: a deleted key stays deleted. Rows are kept
-- until no confirm window can still be open, then pruned by cleanup.
CREATE TABLE IF NOT EXISTS b2_deleted_keys (
    object_key TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    deleted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS b2_deleted_keys_at ON b2_deleted_keys (deleted_at);
