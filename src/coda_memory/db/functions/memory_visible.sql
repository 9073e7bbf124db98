-- Whether memory m is visible to a search with filters f: the one place that says what each
-- filter means. Used by the vector query (db/search.py, as coda_app under RLS) and by
-- bm25_candidates. A plain SQL expression, so the planner inlines it into the calling query
-- (no function call per row, and m.col stays a column reference). A NULL attribute, an empty
-- array, or a NULL f = no filter.
-- A new filter: an attribute of search_filters (a migration), the same-named SearchFilters
-- field (models.py), and one line here.
CREATE OR REPLACE FUNCTION memory_visible(m memories, f search_filters) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT NOT m.deleted AND NOT m.archived
       AND (f.content_types IS NULL OR cardinality(f.content_types) = 0 OR m.content_type = ANY(f.content_types))
       AND (f.tags IS NULL OR cardinality(f.tags) = 0 OR m.tags && f.tags)
       AND (f.min_importance IS NULL OR m.importance >= f.min_importance)
       AND (f.context_id IS NULL OR m.context_id = f.context_id)
       AND (f.created_after IS NULL OR m.created_at >= f.created_after)
       AND (f.created_before IS NULL OR m.created_at <= f.created_before)
$fn$;

GRANT EXECUTE ON FUNCTION memory_visible(memories, search_filters) TO coda_app;
