-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
-- A retention job step (see job_archive_batch.sql for how the jobs work).

-- Hard-delete memories soft-deleted more than p_after_days ago, and memories whose expires_at
-- has passed (invisible since then; deleted or not). user_quotas.memory_count counts live
-- memories: a soft delete already took its row off, an expired memory that was never deleted
-- leaves it now. The memory_history rows go with the memory (ON DELETE CASCADE).
CREATE OR REPLACE FUNCTION job_purge_batch(p_after_days integer, p_limit integer,
                                p_request_id text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    n integer := 0;
    r record;
BEGIN
    IF p_after_days IS NULL OR p_after_days < 0 OR p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'job_purge_batch: p_after_days must be >= 0 and p_limit >= 1';
    END IF;
    FOR r IN
        WITH candidates AS (
            SELECT m.user_id, m.id
            FROM public.memories m
            WHERE (m.deleted AND m.deleted_at IS NOT NULL
                   AND m.deleted_at < now() - make_interval(days => p_after_days))
               OR public.memory_expired(m)
            ORDER BY m.user_id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ), gone AS (
            DELETE FROM public.memories m
            USING candidates c
            WHERE m.user_id = c.user_id AND m.id = c.id
            RETURNING m.user_id, m.deleted
        )
        SELECT user_id, count(*)::integer AS cnt, count(*) FILTER (WHERE NOT deleted)::integer AS live
        FROM gone GROUP BY user_id
    LOOP
        n := n + r.cnt;
        IF r.live > 0 THEN
            UPDATE public.user_quotas q
            SET memory_count = greatest(0, q.memory_count - r.live), updated_at = now()
            WHERE q.user_id = r.user_id;
        END IF;
        PERFORM public.write_audit(r.user_id, 'job:retention_purge', 'purge', 'memories', NULL,
                                   'ok', p_request_id,
                                   jsonb_build_object('purged', r.cnt, 'expired', r.live,
                                                      'after_days', p_after_days));
    END LOOP;
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION job_purge_batch(integer, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_purge_batch(integer, integer, text) TO coda_app;
