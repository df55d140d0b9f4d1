-- Leases for work that one instance at a time should do (the periodic cleanup): several Ferry
-- instances share one database. Taken and renewed with one statement (pooler-safe, unlike a
-- session advisory lock); a lease whose holder died expires on its own.
CREATE TABLE IF NOT EXISTS ferry_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
