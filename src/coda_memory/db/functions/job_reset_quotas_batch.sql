-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
-- A retention job step (see job_archive_batch.sql for how the jobs work).

-- Start a new quota day for users whose counters belong to an earlier day (UTC). One audit
-- row per batch (user_id '', the system), not one per user.
CREATE OR REPLACE FUNCTION job_reset_quotas_batch(p_today date, p_limit integer,
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

REVOKE ALL ON FUNCTION job_reset_quotas_batch(date, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_reset_quotas_batch(date, integer, text) TO coda_app;
