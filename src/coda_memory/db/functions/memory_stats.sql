-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- What the current user's memory holds (the transaction's app.current_user_id, as under
-- row-level security), or with p_all every user's, as one JSON document for
-- GET /users/{user_id}/stats and GET /stats. SECURITY DEFINER because the tallies are the
-- owner's and the totals over all users cross row-level security: the function returns
-- aggregates only (counts, and the ids of the busiest users with their counts), never a memory;
-- the API lets only the service key ask for them. A session with no user set and p_all false
-- gets nothing.
--
-- States, each memory in exactly one: deleted (soft-deleted, until the purge), expired
-- (expires_at passed, until the purge), archived, superseded, live (searchable). Breakdowns
-- (types, sources, tags, recall buckets) are over live memories; the per-day series over every
-- memory not deleted. archival_due counts what the next archival run would archive (its
-- predicate, job_archive_batch.sql, with the run's settings as parameters).
--
-- Read from memory_tallies (counted on write: migration 0050, memory_tallies_sync.sql), so the
-- cost follows the number of distinct keys, not of memories. Expiry is not counted on write
-- (time passes without one): the not-deleted memories whose expires_at has passed are found
-- through memories_expiry and moved from their keys to 'expired' here. archival_due depends on
-- the clock too and is counted from the rows of the archival job's index range. The user is a
-- literal in the statements (format %L) so the planner prunes memories to one partition.
DROP FUNCTION IF EXISTS memory_stats(text, integer, integer, real, integer, integer);

CREATE OR REPLACE FUNCTION memory_stats(
    p_all               boolean,
    p_archive_after_days integer,
    p_archive_max_access integer,
    p_keep_importance   real    DEFAULT NULL,
    p_top               integer DEFAULT 10,
    p_days              integer DEFAULT 90
)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
-- SSD-backed storage (RDS, Aurora): with the default 4 the planner reads the whole partition
-- for archival_due rather than the old rows' index range (45 ms against 10 ms at 50k memories)
SET random_page_cost = 1.1 AS $fn$
DECLARE
    v_user  text := CASE WHEN p_all THEN NULL ELSE NULLIF(current_setting('app.current_user_id', true), '') END;
    v_scope text;
    v_out   jsonb;
    v_due   bigint;
    v_quota jsonb;
BEGIN
    IF NOT p_all AND v_user IS NULL THEN
        RETURN NULL;
    END IF;
    v_scope := CASE WHEN p_all THEN 'true' ELSE format('m.user_id = %L', v_user) END;
    EXECUTE format($q$
        WITH expired AS (
            SELECT m.user_id, k.facet, k.key, count(*) AS n
            FROM public.memories m CROSS JOIN LATERAL public.memory_tally_keys_of_row(m) k
            WHERE %1$s AND NOT m.deleted AND public.memory_expired(m) AND k.facet <> 'day'
            GROUP BY 1, 2, 3
        ),
        counted AS (
            SELECT user_id, facet, key, sum(n) AS n
            FROM (SELECT m.user_id, m.facet, m.key, m.n FROM public.memory_tallies m WHERE %1$s AND m.n <> 0
                  UNION ALL
                  SELECT e.user_id, e.facet, e.key, -e.n FROM expired e
                  UNION ALL
                  SELECT e.user_id, 'state', 'expired', e.n FROM expired e WHERE e.facet = 'state') x
            GROUP BY 1, 2, 3 HAVING sum(n) > 0
        ),
        total AS (
            SELECT facet, key, sum(n)::bigint AS n FROM counted GROUP BY 1, 2
        )
        SELECT jsonb_build_object(
            'counts', (SELECT jsonb_build_object(
                           'live', coalesce(sum(n) FILTER (WHERE key = 'live'), 0),
                           'archived', coalesce(sum(n) FILTER (WHERE key = 'archived'), 0),
                           'superseded', coalesce(sum(n) FILTER (WHERE key = 'superseded'), 0),
                           'expired', coalesce(sum(n) FILTER (WHERE key = 'expired'), 0),
                           'deleted', coalesce(sum(n) FILTER (WHERE key = 'deleted'), 0))
                       FROM total WHERE facet = 'state'),
            'recall', (SELECT jsonb_build_object(
                           'never', coalesce(sum(n) FILTER (WHERE key = 'never'), 0),
                           'one_to_four', coalesce(sum(n) FILTER (WHERE key = 'one_to_four'), 0),
                           'five_plus', coalesce(sum(n) FILTER (WHERE key = 'five_plus'), 0))
                       FROM total WHERE facet = 'recall'),
            'content_types', (SELECT coalesce(jsonb_object_agg(key, n), '{}'::jsonb) FROM total
                              WHERE facet = 'content_type'),
            'source_types', (SELECT coalesce(jsonb_object_agg(key, n), '{}'::jsonb) FROM total
                             WHERE facet = 'source_type'),
            'top_tags', (SELECT coalesce(jsonb_agg(jsonb_build_object('tag', key, 'count', n) ORDER BY n DESC, key),
                                         '[]'::jsonb)
                         FROM (SELECT key, n FROM total WHERE facet = 'tag' ORDER BY n DESC, key LIMIT $1) x),
            'created_per_day', (SELECT coalesce(jsonb_agg(jsonb_build_object('day', key, 'count', n) ORDER BY key),
                                                '[]'::jsonb)
                                FROM total WHERE facet = 'day'
                                  AND key >= to_char((now() AT TIME ZONE 'UTC')::date - ($2 - 1), 'YYYY-MM-DD')))
            || CASE WHEN $3 THEN jsonb_build_object(
                   'users', (SELECT count(DISTINCT user_id) FROM counted WHERE facet = 'state'),
                   'busiest_users', (
                       SELECT coalesce(jsonb_agg(jsonb_build_object('user_id', l.user_id, 'live', l.n,
                                                                    'recalled', coalesce(r.n, 0))
                                                 ORDER BY l.n DESC, l.user_id), '[]'::jsonb)
                       FROM (SELECT user_id, n FROM counted WHERE facet = 'state' AND key = 'live'
                             ORDER BY n DESC, user_id LIMIT $1) l
                       LEFT JOIN (SELECT user_id, sum(n) AS n FROM counted
                                  WHERE facet = 'recall' AND key <> 'never' GROUP BY 1) r ON r.user_id = l.user_id))
               ELSE '{}'::jsonb END
    $q$, v_scope) INTO v_out USING p_top, p_days, p_all;

    -- the archival job's predicate (job_archive_batch.sql) with the run's settings
    EXECUTE format($q$
        SELECT count(*) FROM public.memories m
        WHERE %s AND NOT m.deleted AND NOT m.archived
          AND m.created_at < now() - make_interval(days => $1) AND m.access_count < $2
          AND ($3 IS NULL OR m.importance < $3)
    $q$, v_scope) INTO v_due USING p_archive_after_days, p_archive_max_access, p_keep_importance;
    v_out := v_out || jsonb_build_object('archival_due', v_due);

    IF NOT p_all THEN
        SELECT jsonb_build_object(
                   'memory_count', q.memory_count, 'max_memories', q.max_memories,
                   'daily_ingestions', CASE WHEN q.quota_day = (now() AT TIME ZONE 'UTC')::date
                                            THEN q.daily_ingestions ELSE 0 END,
                   'max_daily_ingestions', q.max_daily_ingestions)
        INTO v_quota FROM public.user_quotas q WHERE q.user_id = v_user;
        v_out := v_out || jsonb_build_object('quota', v_quota);
    END IF;
    RETURN v_out;
END
$fn$;

REVOKE ALL ON FUNCTION memory_stats(boolean, integer, integer, real, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory_stats(boolean, integer, integer, real, integer, integer) TO coda_app;
