-- What Ferry records from the store (never from the client), and delete bookkeeping.
ALTER TABLE b2_files ADD COLUMN file_name TEXT;
ALTER TABLE b2_files ADD COLUMN content_type TEXT;
ALTER TABLE b2_files ADD COLUMN size INTEGER;
ALTER TABLE b2_files ADD COLUMN etag TEXT;
ALTER TABLE b2_files ADD COLUMN deleting_at TEXT;
CREATE INDEX IF NOT EXISTS b2_files_user_newest ON b2_files (user_id, id DESC);
CREATE INDEX IF NOT EXISTS b2_files_deleting ON b2_files (deleting_at) WHERE deleting_at IS NOT NULL;
