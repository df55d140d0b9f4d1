-- The list's index, keyed by the id widened to bigint, replacing (user_id, id DESC).
--
-- A list page is `WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`. Ordered by the bare
-- id, the primary key serves that order too, and Postgres took it whenever the user owns a large
-- share of the table: it expects their rows spread evenly through the ids, so a backward scan of
-- the primary key would meet 50 of them soon. When their rows are older than another user's many
-- (a user who stopped uploading while another kept going), that scan reads every newer row of
-- everyone else first: measured, 75 ms for one page past 108k rows, growing with the table,
-- against 0.1 ms. The list now orders by id::bigint, which only this index provides, so the
-- primary key can never serve the order and the page is always read from the user's own rows.
-- (Building it blocks writes to b2_files while it runs, once, at the upgrade.)

CREATE INDEX IF NOT EXISTS b2_files_user_newest_id8 ON b2_files (user_id, (id::bigint) DESC);
DROP INDEX IF EXISTS b2_files_user_newest;
