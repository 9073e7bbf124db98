-- Retention jobs (archival, quota reset, retention purge).
-- The service role coda_app only ever sees one user's rows (RLS); the jobs work across users,
-- so each step is a SECURITY DEFINER function owned by the schema owner. Every call handles
-- one bounded batch: it locks at most p_limit rows with FOR UPDATE SKIP LOCKED (never waits on,
-- never blocks a request for long), changes them, writes audit rows through write_audit, and
-- returns how many rows it changed. The caller loops, one short transaction per batch, until a
-- batch comes back smaller than p_limit. All three are idempotent: a second run finds nothing.

-- Archive memories created more than p_after_days ago that were read fewer than
-- p_max_access_count times. One audit row per affected user per batch.
CREATE FUNCTION job_archive_batch(p_after_days integer, p_max_access_count integer,
                                  p_limit integer, p_request_id text DEFAULT NULL)
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
            WHERE NOT m.archived AND NOT m.deleted
              AND m.created_at < now() - make_interval(days => p_after_days)
              AND m.access_count < p_max_access_count
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
                                                      'max_access_count', p_max_access_count));
    END LOOP;
    RETURN n;
END
$$;

-- Hard-delete memories soft-deleted more than p_after_days ago. user_quotas.memory_count is
-- not touched: it counts live memories, and the soft delete already took the row off it.
CREATE FUNCTION job_purge_batch(p_after_days integer, p_limit integer,
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
            WHERE m.deleted AND m.deleted_at IS NOT NULL
              AND m.deleted_at < now() - make_interval(days => p_after_days)
            ORDER BY m.user_id, m.deleted_at
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ), gone AS (
            DELETE FROM public.memories m
            USING candidates c
            WHERE m.user_id = c.user_id AND m.id = c.id
            RETURNING m.user_id
        )
        SELECT user_id, count(*)::integer AS cnt FROM gone GROUP BY user_id
    LOOP
        n := n + r.cnt;
        PERFORM public.write_audit(r.user_id, 'job:retention_purge', 'purge', 'memories', NULL,
                                   'ok', p_request_id,
                                   jsonb_build_object('purged', r.cnt, 'after_days', p_after_days));
    END LOOP;
    RETURN n;
END
$$;

-- Start a new quota day for users whose counters belong to an earlier day (UTC). One audit
-- row per batch (user_id '', the system), not one per user.
CREATE FUNCTION job_reset_quotas_batch(p_today date, p_limit integer,
                                       p_request_id text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    n integer;
BEGIN
    IF p_today IS NULL OR p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'job_reset_quotas_batch: p_today is required and p_limit must be >= 1';
    END IF;
    WITH candidates AS (
        SELECT q.user_id FROM public.user_quotas q
        WHERE q.quota_day < p_today
        ORDER BY q.user_id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE public.user_quotas q
    SET daily_ingestions = 0, quota_day = p_today, updated_at = now()
    FROM candidates c
    WHERE q.user_id = c.user_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM public.write_audit('', 'job:quota_reset', 'quota_reset', 'user_quotas', NULL, 'ok',
                                   p_request_id,
                                   jsonb_build_object('users', n, 'quota_day', p_today));
    END IF;
    RETURN n;
END
$$;

-- One summary row per job run (user_id '' = the system), written by the job runner.
CREATE FUNCTION job_record_run(p_job text, p_result text, p_request_id text, p_details jsonb)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT public.write_audit('', 'job:' || p_job, 'job_run', p_job, NULL, p_result, p_request_id,
                              p_details)
$$;

REVOKE ALL ON FUNCTION job_archive_batch(integer, integer, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION job_purge_batch(integer, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION job_reset_quotas_batch(date, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION job_record_run(text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_archive_batch(integer, integer, integer, text) TO coda_app;
GRANT EXECUTE ON FUNCTION job_purge_batch(integer, integer, text) TO coda_app;
GRANT EXECUTE ON FUNCTION job_reset_quotas_batch(date, integer, text) TO coda_app;
GRANT EXECUTE ON FUNCTION job_record_run(text, text, text, jsonb) TO coda_app;
