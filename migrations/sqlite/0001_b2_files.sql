-- The guide's table, in SQLite's types; timestamps are RFC 3339 text in UTC.
CREATE TABLE IF NOT EXISTS b2_files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    object_key TEXT NOT NULL UNIQUE,
    file_url TEXT,
    user_id TEXT NOT NULL,
    upload_timestamp TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
