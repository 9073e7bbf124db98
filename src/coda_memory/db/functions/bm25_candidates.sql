-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- Lexical candidates of a search: the p_limit best memories of the current user by BM25
-- (k1, b; IDF ln(1 + (N - df + 0.5) / (df + 0.5)), N = the user's live memories, avgdl their
-- mean length), read from the statistics and impact-ordered postings of migration 0010.
--
-- Cost bounded by the query, not by the user's memory: per query lexeme one df lookup and at
-- most p_per_term postings read in impact order, index-only, from the btree of migration 0031
-- (a lexeme in fewer memories is read in full); the best 1.5 * p_limit candidates by
-- sum(idf * impact) are then scored exactly (all query lexemes, the user's current statistics,
-- tf and length from the memory's tsvector, as bm25_scores), so every returned score is the
-- exact BM25 of that memory.
-- A common lexeme (the user's and the assistant's names, everyday words) costs at most
-- p_per_term postings like any other; skipping lexemes in more than half of the memories was
-- tried and dropped: it saved ~0.1 ms per such lexeme and lost memories made only of common
-- words on small users. A memory outside the top p_per_term of every lexeme it contains can be
-- missed; the vector stage covers those.
--
-- Scoping: the user comes from the current transaction's app.current_user_id, never from an
-- argument; no user set, no rows. With filters (a NULL or all-NULL p_filters is none), a
-- posting counts only if its memory passes memory_visible(m, p_filters) (read in impact order
-- until p_per_term pass). Without filters expiry is not checked here: the ranking query
-- applies every filter and expiry to all candidates again.
DROP FUNCTION IF EXISTS bm25_candidates(text, integer, text[], text[], real, text, timestamptz, timestamptz,
                                        float8, float8);

CREATE OR REPLACE FUNCTION bm25_candidates(
    p_query    text,
    p_limit    integer,
    p_filters  search_filters DEFAULT NULL,
    p_k1       float8         DEFAULT 1.2,
    p_b        float8         DEFAULT 0.75,
    p_per_term integer        DEFAULT 200
)
RETURNS TABLE (id uuid, score float8)
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL SAFE SET search_path = pg_catalog, public
-- planned once per connection: the plan does not depend on the user (it prunes to the user's
-- partition when it starts)
SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
    v_user    text   := NULLIF(current_setting('app.current_user_id', true), '');
    v_lexemes text[] := tsvector_to_array(to_tsvector('english', coalesce(p_query, '')));
    v_n       float8;
    v_avgdl   float8;
BEGIN
    IF v_user IS NULL OR cardinality(v_lexemes) = 0 OR coalesce(p_limit, 0) < 1 THEN
        RETURN;  -- no user, only stop words, or nothing asked for
    END IF;
    SELECT t.docs, t.total_length::float8 / t.docs INTO v_n, v_avgdl
    FROM public.memory_lexicon_totals t WHERE t.user_id = v_user AND t.docs > 0;
    IF coalesce(v_n, 0) < 1 THEN
        RETURN;
    END IF;
    p_per_term := greatest(coalesce(p_per_term, 200), p_limit);

    RETURN QUERY
    WITH terms AS (
        SELECT x.lexeme, x.df, ln(1 + (v_n - x.df + 0.5) / (x.df + 0.5)) AS idf
        FROM public.memory_lexicon x
        WHERE x.user_id = v_user AND x.lexeme = ANY(v_lexemes) AND x.df > 0
    ),
    hits AS (  -- the top postings of each lexeme (its term: hashtext, migration 0031)
        SELECT p.memory_id AS id, t.idf * p.impact AS partial
        FROM terms t CROSS JOIN LATERAL (
            SELECT p.memory_id, p.impact FROM public.memory_postings p
            WHERE p.user_id = v_user AND p.term = hashtext(t.lexeme)
              AND (p_filters IS NULL OR EXISTS (
                      SELECT 1 FROM public.memories m
                      WHERE m.user_id = v_user AND m.id = p.memory_id AND public.memory_visible(m, p_filters)))
            ORDER BY p.impact DESC, p.memory_id
            LIMIT p_per_term
        ) p
    ),
    partial AS MATERIALIZED (  -- the best candidates by the lexemes read so far
        SELECT h.id
        FROM hits h GROUP BY h.id
        ORDER BY sum(h.partial) DESC, h.id
        LIMIT p_limit + p_limit / 2
    )
    -- their exact BM25, as bm25_scores computes it, each row looked up by primary key in the
    -- same statement (OFFSET 0: a subquery per candidate; flattened into a join, the generic
    -- plan, which guesses one row per user, read every row of the user instead)
    SELECT c.id,
           (SELECT sum(t.idf * public.bm25_weight(coalesce(cardinality(l.positions), 1), length(m.search_vector),
                                                  v_avgdl, p_k1, p_b))
            -- only the row's entries of the query's lexemes (marked by setweight, kept by
            -- ts_filter, both in C; search_vector is unweighted), as memory_rank scores
            FROM unnest(ts_filter(setweight(m.search_vector, 'A', v_lexemes), '{a}')) AS l
            JOIN terms t ON t.lexeme = l.lexeme)::float8 AS score
    FROM partial c
    CROSS JOIN LATERAL (SELECT m.search_vector FROM public.memories m
                        WHERE m.user_id = v_user AND m.id = c.id AND NOT m.deleted OFFSET 0) m
    ORDER BY 2 DESC, 1
    LIMIT p_limit;
END
$fn$;

REVOKE ALL ON FUNCTION bm25_candidates(text, integer, search_filters, float8, float8, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bm25_candidates(text, integer, search_filters, float8, float8, integer) TO coda_app;
