-- The guide's table, created only when it does not exist yet, so that an existing
-- b2_files table from the guide is adopted as it is.
CREATE TABLE IF NOT EXISTS b2_files (
    id SERIAL PRIMARY KEY,
    object_key TEXT NOT NULL UNIQUE,
    file_url TEXT,
    user_id TEXT NOT NULL,
    upload_timestamp TIMESTAMPTZ DEFAULT NOW()
);
