-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
-- Retention jobs (archival, quota reset, retention purge).
-- The service role coda_app only ever sees one user's rows (RLS); the jobs work across users,
-- so each step is a SECURITY DEFINER function owned by the schema owner. Every call handles
-- one bounded batch: it locks at most p_limit rows with FOR UPDATE SKIP LOCKED (never waits on,
-- never blocks a request for long), changes them, writes audit rows through write_audit, and
-- returns how many rows it changed. The caller loops, one short transaction per batch, until a
-- batch comes back smaller than p_limit. All three are idempotent: a second run finds nothing.


-- Archive searchable memories created more than p_after_days ago that were read fewer than
-- p_max_access_count times, except those with importance >= p_keep_importance: an old fact the
-- user or the agent marked important stays searchable however rarely it is read (archival by
-- age and reads alone hid 49,903 of 50,042 memories of one imported history, important facts
-- included). Superseded memories are out of search already and stay as they are. One audit
-- row per affected user per batch.
DROP FUNCTION IF EXISTS job_archive_batch(integer, integer, integer, text);

CREATE OR REPLACE FUNCTION job_archive_batch(p_after_days integer, p_max_access_count integer,
                                  p_limit integer, p_request_id text DEFAULT NULL,
                                  p_keep_importance real DEFAULT 0.8)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    n integer := 0;
    r record;
BEGIN
    IF p_after_days IS NULL OR p_after_days < 1 OR p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'job_archive_batch: p_after_days and p_limit must be >= 1';
    END IF;
    FOR r IN
        WITH candidates AS (
            SELECT m.user_id, m.id
            FROM public.memories m
            WHERE NOT m.archived AND NOT m.deleted AND public.memory_searchable(m)
              AND m.created_at < now() - make_interval(days => p_after_days)
              AND m.access_count < p_max_access_count
              AND (p_keep_importance IS NULL OR m.importance < p_keep_importance)
            ORDER BY m.user_id, m.created_at
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ), changed AS (
            UPDATE public.memories m
            SET archived = true, archived_at = now()
            FROM candidates c
            WHERE m.user_id = c.user_id AND m.id = c.id
            RETURNING m.user_id
        )
        SELECT user_id, count(*)::integer AS cnt FROM changed GROUP BY user_id
    LOOP
        n := n + r.cnt;
        PERFORM public.write_audit(r.user_id, 'job:archival', 'archive', 'memories', NULL, 'ok',
                                   p_request_id,
                                   jsonb_build_object('archived', r.cnt,
                                                      'after_days', p_after_days,
                                                      'max_access_count', p_max_access_count,
                                                      'keep_importance', p_keep_importance));
    END LOOP;
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION job_archive_batch(integer, integer, integer, text, real) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_archive_batch(integer, integer, integer, text, real) TO coda_app;
