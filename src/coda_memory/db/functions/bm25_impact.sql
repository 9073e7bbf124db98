-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- The BM25 weight of one term in one memory without its IDF:
-- tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl)). Plain SQL, not STRICT: inlined into its callers
-- (a STRICT one is not, and costs a function call per posting).
CREATE OR REPLACE FUNCTION bm25_weight(p_tf float8, p_dl float8, p_avgdl float8, p_k1 float8, p_b float8)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT p_tf * (p_k1 + 1) / (p_tf + p_k1 * (1 - p_b + p_b * p_dl / greatest(p_avgdl, 1)))
$fn$;

-- The impact of a posting (migration 0031): the weight with k1 = 1.2, b = 0.75 and a fixed mean
-- length of 12 lexemes (about a conversation turn's). It orders a term's postings for
-- bm25_candidates and gives the partial score that picks the candidates it scores exactly
-- (with the user's current statistics); depending on (tf, length) only, it is recomputed from
-- the old row when a posting is deleted (memory_lexicon_sync.sql).
DROP FUNCTION IF EXISTS bm25_impact(integer, integer, float8);
CREATE OR REPLACE FUNCTION bm25_impact(p_tf integer, p_dl integer) RETURNS real
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT public.bm25_weight(p_tf, p_dl, 12, 1.2, 0.75)::real
$fn$;

GRANT EXECUTE ON FUNCTION bm25_weight(float8, float8, float8, float8, float8) TO coda_app;
