-- The statement every upload makes, as one statement: recording a confirmed upload (when its key
-- holds no reservation and no quota is set). (A list page was tried the same way and left as it
-- was: a PL/pgSQL function returning 50 rows cost Postgres twice the pipelined transaction.)
-- Elsewhere Ferry publishes the caller with BEGIN; set_config(...); <statement>; COMMIT, which
-- is four statements and four protocol round trips for one row: measured, that wrapper cost a
-- quarter of the confirm's throughput (README, Benchmarks).
--
-- Row-level security is unchanged and stays fail-closed. The functions run as the caller's role
-- (SECURITY INVOKER, the default) under the same policies; each publishes the claims it is given
-- with set_config(..., true) before its query runs, so the query sees exactly that user's rows,
-- and the setting is local to the statement's own transaction: nothing outlives the statement,
-- and a pooler in transaction mode hands the connection on clean. A statement given no claims,
-- or another user's, sees and writes nothing of anyone else's.

CREATE OR REPLACE FUNCTION ferry_record_file(
    p_claims text, p_key text, p_url text, p_user text, p_name text, p_type text, p_size bigint, p_etag text)
RETURNS TABLE (id bigint, object_key text, file_url text, user_id text, file_name text, content_type text,
               size bigint, etag text, content_md5 text, checksum_sha256 text, upload_timestamp timestamptz,
               created boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('request.jwt.claims', p_claims, true);
    RETURN QUERY
        INSERT INTO b2_files AS f (object_key, file_url, user_id, file_name, content_type, size, etag)
        SELECT p_key, p_url, p_user, p_name, p_type, p_size, p_etag
        WHERE NOT EXISTS (SELECT 1 FROM b2_deleted_keys d WHERE d.object_key = p_key)
        ON CONFLICT (object_key) DO NOTHING
        RETURNING f.id::bigint, f.object_key, f.file_url, f.user_id, f.file_name, f.content_type, f.size, f.etag,
                  f.content_md5, f.checksum_sha256, COALESCE(f.upload_timestamp, now()), true;
END
$$;
