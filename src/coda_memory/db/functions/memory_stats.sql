-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- What the current user's memory holds (the transaction's app.current_user_id, as under
-- row-level security), or with p_all every user's, as one JSON document for
-- GET /users/{user_id}/stats and GET /stats. SECURITY DEFINER because the totals over all users
-- cross row-level security: the function returns aggregates only (counts, and the ids of the
-- busiest users with their counts), never a memory; the API lets only the service key ask for
-- them. A session with no user set and p_all false gets nothing.
--
-- States, each memory in exactly one: deleted (soft-deleted, until the purge), expired
-- (expires_at passed, until the purge), archived, superseded, live (searchable). Breakdowns
-- (types, sources, tags, recall buckets) are over live memories; the per-day series over every
-- memory not deleted. archival_due counts what the next archival run would archive (its
-- predicate, job_archive_batch.sql, with the run's settings as parameters).
--
-- One statement per breakdown over the user's rows (index on user_id; at 50k memories each is
-- a few ms). The user is a literal in the statement (format %L) so the planner prunes to one
-- partition, as memory_nearest does.
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
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
DECLARE
    p_user  text := CASE WHEN p_all THEN NULL ELSE NULLIF(current_setting('app.current_user_id', true), '') END;
    v_scope text := CASE WHEN p_all THEN 'true' ELSE format('m.user_id = %L', p_user) END;
    v_state text := 'CASE WHEN m.deleted THEN ''deleted''
                          WHEN public.memory_expired(m) THEN ''expired''
                          WHEN m.archived THEN ''archived''
                          WHEN m.superseded_by IS NOT NULL THEN ''superseded''
                          ELSE ''live'' END';
    v_live  text := 'public.memory_searchable(m) AND NOT public.memory_expired(m)';
    v_out   jsonb := '{}'::jsonb;
    v_part  jsonb;
BEGIN
    IF NOT p_all AND p_user IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format(
        'SELECT jsonb_build_object(
                    ''live'', count(*) FILTER (WHERE s = ''live''),
                    ''archived'', count(*) FILTER (WHERE s = ''archived''),
                    ''superseded'', count(*) FILTER (WHERE s = ''superseded''),
                    ''expired'', count(*) FILTER (WHERE s = ''expired''),
                    ''deleted'', count(*) FILTER (WHERE s = ''deleted'')) ||
                jsonb_build_object(''recall'', jsonb_build_object(
                    ''never'', count(*) FILTER (WHERE s = ''live'' AND access_count = 0),
                    ''one_to_four'', count(*) FILTER (WHERE s = ''live'' AND access_count BETWEEN 1 AND 4),
                    ''five_plus'', count(*) FILTER (WHERE s = ''live'' AND access_count >= 5)),
                    ''archival_due'', count(*) FILTER (
                        WHERE NOT deleted AND NOT archived
                          AND created_at < now() - make_interval(days => $1) AND access_count < $2
                          AND ($3 IS NULL OR importance < $3)))
         FROM (SELECT %s AS s, m.deleted, m.archived, m.access_count, m.created_at, m.importance
               FROM public.memories m WHERE %s) x', v_state, v_scope)
    INTO v_part USING p_archive_after_days, p_archive_max_access, p_keep_importance;
    v_out := v_out || jsonb_build_object('counts', v_part - 'recall' - 'archival_due',
                                         'recall', v_part -> 'recall', 'archival_due', v_part -> 'archival_due');

    EXECUTE format(
        'SELECT coalesce(jsonb_object_agg(content_type, n), ''{}''::jsonb) FROM (
             SELECT m.content_type, count(*) AS n FROM public.memories m WHERE %s AND %s GROUP BY 1) x',
        v_scope, v_live) INTO v_part;
    v_out := v_out || jsonb_build_object('content_types', v_part);

    EXECUTE format(
        'SELECT coalesce(jsonb_object_agg(source_type, n), ''{}''::jsonb) FROM (
             SELECT m.source_type, count(*) AS n FROM public.memories m WHERE %s AND %s GROUP BY 1) x',
        v_scope, v_live) INTO v_part;
    v_out := v_out || jsonb_build_object('source_types', v_part);

    EXECUTE format(
        'SELECT coalesce(jsonb_agg(jsonb_build_object(''tag'', tag, ''count'', n) ORDER BY n DESC, tag), ''[]''::jsonb)
         FROM (SELECT t AS tag, count(*) AS n FROM public.memories m, unnest(m.tags) t
               WHERE %s AND %s GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $1) x',
        v_scope, v_live) INTO v_part USING p_top;
    v_out := v_out || jsonb_build_object('top_tags', v_part);

    EXECUTE format(
        'SELECT coalesce(jsonb_agg(jsonb_build_object(''day'', d, ''count'', n) ORDER BY d), ''[]''::jsonb)
         FROM (SELECT (m.created_at AT TIME ZONE ''UTC'')::date AS d, count(*) AS n FROM public.memories m
               WHERE %s AND NOT m.deleted AND m.created_at >= (now() AT TIME ZONE ''UTC'')::date - ($1 - 1)
               GROUP BY 1) x',
        v_scope) INTO v_part USING p_days;
    v_out := v_out || jsonb_build_object('created_per_day', v_part);

    IF p_all THEN
        SELECT count(DISTINCT m.user_id) INTO v_part FROM public.memories m;
        v_out := v_out || jsonb_build_object('users', v_part);
        EXECUTE format(
            'SELECT coalesce(jsonb_agg(jsonb_build_object(''user_id'', user_id, ''live'', n, ''accesses'', a)
                                       ORDER BY n DESC, user_id), ''[]''::jsonb)
             FROM (SELECT m.user_id, count(*) AS n, sum(m.access_count) AS a FROM public.memories m
                   WHERE %s GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $1) x', v_live)
        INTO v_part USING p_top;
        v_out := v_out || jsonb_build_object('busiest_users', v_part);
    ELSE
        SELECT jsonb_build_object(
                   'memory_count', q.memory_count, 'max_memories', q.max_memories,
                   'daily_ingestions', CASE WHEN q.quota_day = (now() AT TIME ZONE 'UTC')::date
                                            THEN q.daily_ingestions ELSE 0 END,
                   'max_daily_ingestions', q.max_daily_ingestions)
        INTO v_part FROM public.user_quotas q WHERE q.user_id = p_user;
        v_out := v_out || jsonb_build_object('quota', v_part);
    END IF;
    RETURN v_out;
END
$fn$;

REVOKE ALL ON FUNCTION memory_stats(boolean, integer, integer, real, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory_stats(boolean, integer, integer, real, integer, integer) TO coda_app;
