-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- Exact BM25 of the given memories of the current user for p_query: IDF
-- ln(1 + (N - df + 0.5) / (df + 0.5)) with N = the user's live memories and df from
-- memory_lexicon, tf and length from memory_postings, avgdl = the user's mean length
-- (migration 0010). One index probe per (memory, query lexeme): the cost follows the ids given,
-- not the user's memory. Memories without a query lexeme are left out.
--
-- Scoped to the transaction's app.current_user_id (no user argument). SECURITY INVOKER: as
-- coda_app, row-level security applies on top; bm25_candidates calls it as the schema owner.
CREATE OR REPLACE FUNCTION bm25_scores(p_query text, p_ids uuid[], p_k1 float8 DEFAULT 1.2,
                                       p_b float8 DEFAULT 0.75)
RETURNS TABLE (id uuid, score float8)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, public AS $fn$
    WITH stats AS (
        SELECT t.user_id, t.docs::float8 AS n, t.total_length::float8 / t.docs AS avgdl
        FROM public.memory_lexicon_totals t
        WHERE t.user_id = NULLIF(current_setting('app.current_user_id', true), '') AND t.docs > 0
    ),
    terms AS (
        SELECT x.lexeme, ln(1 + (s.n - x.df + 0.5) / (x.df + 0.5)) AS idf
        FROM stats s JOIN public.memory_lexicon x ON x.user_id = s.user_id
        WHERE x.lexeme = ANY(tsvector_to_array(to_tsvector('english', coalesce(p_query, '')))) AND x.df > 0
    )
    SELECT p.id, sum(t.idf * public.bm25_weight(p.tf, p.dl, s.avgdl, p_k1, p_b))::float8
    FROM stats s CROSS JOIN terms t
    JOIN public.memory_postings p ON p.user_id = s.user_id AND p.lexeme = t.lexeme AND p.id = ANY(p_ids)
    GROUP BY p.id
$fn$;

REVOKE ALL ON FUNCTION bm25_scores(text, uuid[], float8, float8) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bm25_scores(text, uuid[], float8, float8) TO coda_app;
