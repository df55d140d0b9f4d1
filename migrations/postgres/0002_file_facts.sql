-- What Ferry records from the store (never from the client), and delete bookkeeping.
ALTER TABLE b2_files ADD COLUMN IF NOT EXISTS file_name TEXT;
ALTER TABLE b2_files ADD COLUMN IF NOT EXISTS content_type TEXT;
ALTER TABLE b2_files ADD COLUMN IF NOT EXISTS size BIGINT;
ALTER TABLE b2_files ADD COLUMN IF NOT EXISTS etag TEXT;
ALTER TABLE b2_files ADD COLUMN IF NOT EXISTS deleting_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS b2_files_user_newest ON b2_files (user_id, id DESC);
CREATE INDEX IF NOT EXISTS b2_files_deleting ON b2_files (deleting_at) WHERE deleting_at IS NOT NULL;
