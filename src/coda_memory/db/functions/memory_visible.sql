-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- Whether memory m passes the filters f of a search or a listing, and has not expired
-- (memory_expired): the one place that says what each filter means. Used by every WHERE clause
-- built by db/filters.py (search's vector query, its ranking, listing; as coda_app under RLS) and
-- by bm25_candidates.
-- Deleted and archived are not tested here: callers say NOT deleted / NOT archived themselves
-- (they are the predicates of the live-only indexes, and a listing may include archived rows).
--
-- A plain SQL expression, so the planner inlines it (m.col stays a column; with f a bound
-- constant the clauses of unset filters fold away). A NULL attribute, an empty array, or a NULL
-- f = no filter. A new filter: an attribute of search_filters (a migration), the same-named
-- SearchFilters field (models.py), and one line here.
CREATE OR REPLACE FUNCTION memory_visible(m memories, f search_filters) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT NOT memory_expired(m)
       AND (f.content_types IS NULL OR cardinality(f.content_types) = 0 OR m.content_type = ANY(f.content_types))
       AND (f.tags IS NULL OR cardinality(f.tags) = 0 OR m.tags && f.tags)
       AND (f.min_importance IS NULL OR m.importance >= f.min_importance)
       AND (f.context_id IS NULL OR m.context_id = f.context_id)
       AND (f.created_after IS NULL OR m.created_at >= f.created_after)
       AND (f.created_before IS NULL OR m.created_at <= f.created_before)
       AND (f.metadata IS NULL OR m.metadata @> f.metadata)
       AND (f.source_types IS NULL OR cardinality(f.source_types) = 0 OR m.source_type = ANY(f.source_types))
$fn$;

GRANT EXECUTE ON FUNCTION memory_visible(memories, search_filters) TO coda_app;
