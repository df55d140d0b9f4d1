-- Leases for work that one process at a time should do (the periodic cleanup), for processes
-- sharing one SQLite file. Taken and renewed with one statement; a lease whose holder died
-- expires on its own.
CREATE TABLE IF NOT EXISTS ferry_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
