-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- The ranking of a search (db/search.py documents the formula): the top p_top_k memories of the
-- current user by relevance, from the p_n nearest by cosine (memory_nearest) and the lexical
-- candidates the caller found (bm25_candidates: p_t_ids best first, their BM25 in p_t_scores).
--   v       the nearest, in rank order
--   t       the lexical candidates, in rank order
--   q       the query's lexemes with their IDF and the user's mean length (hybrid only)
--   v_nb    neighbouring evidence (p_nb_seeds > 0): the memories next to one of the best
--           p_nb_seeds of either list (the same context_id; or, for lines of conversation
--           (content_type) without one, not stored at the same instant, where a batch has no
--           order to read an exchange from; at most p_nb_span before and after
--           it in created_at order, within p_nb_window of it), v_seed the memory each is next to
--   c       their union, and those neighbours
--   scored  the candidates' rows, fetched by primary key, every filter and expiry applied again
--           in this snapshot (a lexical candidate may have changed since bm25_candidates ran);
--           a nearest memory that is not a lexical candidate gets its exact BM25 here, from the
--           row's own tsvector (hybrid only), so both lists are scored on both measures
--   normed  each measure divided by its best over the candidates
--   lifted  the relevance, a neighbour of one of the p_nb_seeds best lifted toward it (below)
-- p_match: 'vector' (cos), 'convex' (a * cos/max_cos + (1 - a) * bm25/max_bm25) or 'rrf'
-- (a/(k + vrank) + (1 - a)/(k + trank), divided by its best possible value 1/(k + 1)).
-- p_min_sim: leave out candidates below this cosine (after normalising; 0 or NULL: none).
-- Neighbouring evidence: a neighbour of one of the p_nb_seeds best candidates (by relevance)
-- gets p_w_sim * p_nb_weight * that hit's fused match added to its relevance, but never more
-- than just below the hit's: the memory that holds the answer often sits next to the one that
-- matches the question (the reply to it, the next line of the exchange) and shares no word with
-- the question; the best hit keeps its place. p_nb_seeds = 0: off. A long memory (length
-- factor < 1) is never lifted: a long text next to a hit (an assistant's essay after the
-- user's line) is not the evidence beside it, and lifting it crowded out other statements.
-- One exception to the cap (p_nb_reply_weight > 0): when the hit asks a question (its last
-- sentence ends with '?'), the memory right after it in its context is the reply, and a
-- question is not an answer: the reply gets p_w_sim * p_nb_reply_weight * the hit's match,
-- not capped, so it may pass the question.
-- The long-memory factor (p_long_lexemes > 0): a memory of more than p_long_lexemes distinct
-- words (its tsvector's length) has its match multiplied by (p_long_lexemes / that) ^ p_long_power,
-- never less than p_long_floor. A long text (an assistant's essay, a pasted page) is near many
-- questions by topic and shares many of their words, and it crowded out the short statement
-- that holds the fact (measured: docs/retrieval.md); a memory of a sentence or a paragraph is
-- untouched. length_factor is that factor (1 for most memories).
-- p_archived / p_superseded (include_archived / include_superseded): the p_n nearest of the
-- user's memories in those states join v, found by an exact scan of those rows (they are in no
-- search structure), and are ranked by the same formula; the caller adds their lexical
-- candidates to p_t_ids. Both false (every default search): that branch is never run.
--
-- Returns the ranked rows (memory: the row as read in scored, so the caller looks nothing up
-- again and its statement plans in no time) and their scores (the relevance and its parts: the
-- fused match (times the long-memory factor), the raw BM25, the importance, the recency term,
-- the neighbour lift and the long-memory factor, which POST /search shows with
-- explain: true). Its statements
-- are planned once per connection (force_generic_plan: planning the ranking per call cost more
-- than running it); each candidate is one primary-key lookup (LATERAL, both key columns equal,
-- so a generic plan cannot pick another index), in the user's partition only (the generic plan
-- prunes the other 31 when it starts: the user is known then).
-- SECURITY INVOKER: as coda_app row-level security applies on top.
DROP FUNCTION IF EXISTS memory_rank(text, halfvec, integer, search_filters, uuid[], float8[], text, float8, float8,
                                    float8, float8, float8, integer, float8, float8, integer, float8);
-- (the result columns changed: a replaced function cannot change them; neighbouring evidence
-- added four parameters: the old signature would stay as an overload)
DROP FUNCTION IF EXISTS memory_rank(text, halfvec, integer, search_filters, uuid[], float8[], text, float8, float8,
                                    float8, float8, float8, integer, float8, float8, integer, float8, boolean,
                                    boolean);
-- (and this signature too: its result columns change with the score parts it returns, which a
-- replaced function cannot do; nothing depends on it, the caller's statement names it by name)
DROP FUNCTION IF EXISTS memory_rank(text, halfvec, integer, search_filters, uuid[], float8[], text, float8, float8,
                                    float8, float8, float8, integer, float8, float8, integer, float8, boolean,
                                    boolean, integer, integer, interval, float8);
-- (and these: the long-memory factor added three parameters and a result column, replies one,
-- first a flag, then a weight)
DROP FUNCTION IF EXISTS memory_rank(text, halfvec, integer, search_filters, uuid[], float8[], text, float8, float8,
                                    float8, float8, float8, integer, float8, float8, integer, float8, boolean,
                                    boolean, integer, integer, interval, float8);
DROP FUNCTION IF EXISTS memory_rank(text, halfvec, integer, search_filters, uuid[], float8[], text, float8, float8,
                                    float8, float8, float8, integer, float8, float8, integer, float8, boolean,
                                    boolean, integer, integer, interval, float8, integer, float8, float8);
DROP FUNCTION IF EXISTS memory_rank(text, halfvec, integer, search_filters, uuid[], float8[], text, float8, float8,
                                    float8, float8, float8, integer, float8, float8, integer, float8, boolean,
                                    boolean, integer, integer, interval, float8, boolean, integer, float8, float8);

CREATE OR REPLACE FUNCTION memory_rank(
    p_query    text,
    p_vector   halfvec,
    p_n        integer,
    p_filters  search_filters,
    p_t_ids    uuid[],
    p_t_scores float8[],
    p_match    text,
    p_w_sim    float8,
    p_w_imp    float8,
    p_w_rec    float8,
    p_decay    float8,
    p_a        float8,
    p_rrf_k    integer,
    p_k1       float8,
    p_b        float8,
    p_top_k    integer,
    p_min_sim  float8 DEFAULT NULL,
    p_archived boolean DEFAULT false,
    p_superseded boolean DEFAULT false,
    -- neighbouring evidence; the defaults leave it off (the service passes its settings)
    p_nb_seeds integer DEFAULT 0,
    p_nb_span  integer DEFAULT 0,
    p_nb_window interval DEFAULT '0',
    p_nb_weight float8 DEFAULT 0,
    p_nb_reply_weight float8 DEFAULT 0,
    -- the long-memory factor; the defaults leave it off (the service passes its settings)
    p_long_lexemes integer DEFAULT 0,
    p_long_power float8 DEFAULT 1,
    p_long_floor float8 DEFAULT 0
)
RETURNS TABLE (id uuid, similarity float8, relevance float8, match float8, lexical float8, importance float8,
               recency float8, neighbour float8, length_factor float8, memory memories)
LANGUAGE plpgsql STABLE ROWS 10
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    v_user    text := NULLIF(current_setting('app.current_user_id', true), '');
    v_near    uuid[];
    v_seed    uuid[];
    v_nb      uuid[];
    v_reply   boolean[];
BEGIN
    -- the nearest, best first (with include_archived / include_superseded, also the p_n nearest
    -- of the user's memories in those states, by an exact scan: they are in no search structure)
    v_near := ARRAY(
        SELECT n.id FROM (
            SELECT n.id, n.distance FROM public.memory_nearest(p_vector, p_n, p_filters) n
            UNION ALL
            (SELECT m.id, (m.embedding <=> p_vector)::float8
             FROM public.memories m
             WHERE (p_archived OR p_superseded) AND m.user_id = v_user
               AND NOT public.memory_searchable(m) AND public.memory_shown(m, p_archived, p_superseded)
               AND public.memory_visible(m, p_filters)
             ORDER BY 2, 1 LIMIT p_n)
        ) n
        ORDER BY n.distance, n.id);
    IF p_nb_seeds > 0 THEN
        -- each side by the (user_id, created_at, id) index, from the hit outwards
        SELECT array_agg(l.seed), array_agg(l.nb), array_agg(l.reply) INTO v_seed, v_nb, v_reply
        FROM (
            -- reply: the memory right after a hit whose last sentence asks a question
            SELECT s.id AS seed, n.id AS nb,
                   p_nb_reply_weight > 0 AND n.next AND s.content ~ '\?[^.!]*$' AS reply
            FROM public.memories s
            CROSS JOIN LATERAL (
                (SELECT m.id, false AS next FROM public.memories m
                 WHERE m.user_id = v_user AND NOT m.deleted AND m.context_id IS NOT DISTINCT FROM s.context_id
                   AND m.created_at >= s.created_at - p_nb_window AND (m.created_at, m.id) < (s.created_at, s.id)
                   AND (s.context_id IS NOT NULL OR (m.created_at < s.created_at AND m.content_type = 'conversation'
                                                     AND s.content_type = 'conversation'))
                   AND public.memory_shown(m, p_archived, p_superseded) AND public.memory_visible(m, p_filters)
                 ORDER BY m.created_at DESC, m.id DESC LIMIT p_nb_span)
                UNION ALL
                (SELECT m.id, row_number() OVER (ORDER BY m.created_at, m.id) = 1 AS next FROM public.memories m
                 WHERE m.user_id = v_user AND NOT m.deleted AND m.context_id IS NOT DISTINCT FROM s.context_id
                   AND m.created_at <= s.created_at + p_nb_window AND (m.created_at, m.id) > (s.created_at, s.id)
                   AND (s.context_id IS NOT NULL OR (m.created_at > s.created_at AND m.content_type = 'conversation'
                                                     AND s.content_type = 'conversation'))
                   AND public.memory_shown(m, p_archived, p_superseded) AND public.memory_visible(m, p_filters)
                 ORDER BY m.created_at, m.id LIMIT p_nb_span)
            ) n
            WHERE s.user_id = v_user
              AND s.id = ANY(v_near[1:p_nb_seeds] || p_t_ids[1:p_nb_seeds])
        ) l;
    END IF;
    RETURN QUERY
    WITH v AS (
        SELECT x.id, x.rank FROM unnest(v_near) WITH ORDINALITY AS x(id, rank)
    ),
    t AS (
        SELECT x.id, x.bm25, x.rank
        FROM unnest(p_t_ids, p_t_scores) WITH ORDINALITY AS x(id, bm25, rank)
    ),
    q AS MATERIALIZED (
        SELECT * FROM public.bm25_query_terms(p_query) WHERE p_match <> 'vector'
    ),
    c AS MATERIALIZED (  -- a plain column to look rows up by (an expression over the full join is not a key)
        SELECT coalesce(v.id, t.id) AS id, v.rank AS vrank, t.rank AS trank, t.bm25
        FROM v FULL JOIN t ON v.id = t.id
        UNION ALL
        SELECT DISTINCT x.id, NULL::bigint, NULL::bigint, NULL::float8
        FROM unnest(v_nb) x(id)
        WHERE x.id <> ALL(v_near) AND x.id <> ALL(coalesce(p_t_ids, '{}'))
    ),
    scored AS (
        SELECT m.id, m.created_at, m.importance::float8 AS imp, c.vrank, c.trank, m::public.memories AS memory,
               CASE WHEN p_long_lexemes > 0 THEN
                   greatest(p_long_floor,
                            least(1, p_long_lexemes::float8 / greatest(length(m.search_vector), 1)) ^ p_long_power)
                    ELSE 1 END AS lenf,
               CASE WHEN c.trank IS NOT NULL THEN c.bm25
                    -- the sum of bm25_scores, on the row fetched here anyway
                    WHEN p_match <> 'vector' THEN
                        (SELECT sum(q.idf * public.bm25_weight(coalesce(cardinality(l.positions), 1),
                                                               length(m.search_vector), q.avgdl, p_k1, p_b))
                         -- the row's entries of the query's lexemes only: setweight marks them and
                         -- ts_filter keeps them, both in C (search_vector is unweighted, all D);
                         -- unnesting a long memory's whole tsvector cost ~0.1 ms a row
                         FROM unnest(ts_filter(setweight(m.search_vector, 'A', (SELECT array_agg(q.lexeme) FROM q)),
                                               '{a}')) AS l
                         JOIN q ON q.lexeme = l.lexeme)::float8
               END AS bm25,
               -- a long memory scores by its best piece (its opening or a later window,
               -- migration 0045); a zero vector has no direction: pgvector answers NaN,
               -- counted as no similarity
               coalesce(nullif(1 - least(m.embedding <=> p_vector,
                                         (SELECT min(p <=> p_vector) FROM unnest(m.embedding_pieces) p)),
                               'NaN'::float8), 0) AS sim
        -- OFFSET 0 keeps the lookup a subquery run per candidate: flattened into a join, the
        -- generic plan (which guesses one row per user) read every row of the user instead
        FROM c CROSS JOIN LATERAL (SELECT * FROM public.memories m WHERE m.user_id = v_user AND m.id = c.id OFFSET 0) m
        WHERE public.memory_shown(m, p_archived, p_superseded) AND public.memory_visible(m, p_filters)
    ),
    normed AS (
        SELECT s.*, greatest(s.sim, 0) AS cos,
               max(greatest(s.sim, 0)) OVER () AS top_cos, max(s.bm25) OVER () AS top_bm25
        FROM scored s
    ),
    parts AS (
        SELECT r.id, r.sim, r.imp, r.memory, coalesce(r.bm25, 0) AS lex, r.lenf,
               r.lenf * CASE p_match
                   WHEN 'vector' THEN r.cos
                   WHEN 'convex' THEN p_a * r.cos / coalesce(nullif(r.top_cos, 0), 1)
                                      + (1 - p_a) * coalesce(r.bm25, 0) / coalesce(nullif(r.top_bm25, 0), 1)
                   ELSE (p_a * coalesce(1.0::float8 / (p_rrf_k + r.vrank), 0)
                         + (1 - p_a) * coalesce(1.0::float8 / (p_rrf_k + r.trank), 0)) * (p_rrf_k + 1)
               END AS fused,
               1 / (1 + greatest(0, extract(epoch FROM now() - r.created_at)::float8 / 86400) * p_decay) AS rec
        FROM normed r
    ),
    ranked AS (
        SELECT r.*, p_w_sim * r.fused + p_w_imp * r.imp + p_w_rec * r.rec AS own
        FROM parts r
    ),
    -- neighbouring evidence: the best p_nb_seeds candidates lift their neighbours
    hits AS (
        SELECT r.id, r.fused, r.own FROM ranked r ORDER BY r.own DESC, r.sim DESC, r.id LIMIT p_nb_seeds
    ),
    lifts AS (
        SELECT l.nb, l.reply, h.fused, h.own FROM unnest(v_seed, v_nb, v_reply) l(seed, nb, reply) JOIN hits h ON h.id = l.seed
    ),
    lifted AS (
        SELECT r.*,
               CASE WHEN r.lenf < 1 THEN r.own  -- a long memory is not lifted as a neighbour
                    ELSE greatest(r.own, (SELECT max(CASE WHEN h.reply
                                                          THEN r.own + p_w_sim * p_nb_reply_weight * h.fused
                                                          ELSE least(r.own + p_w_sim * p_nb_weight * h.fused,
                                                                     h.own - 1e-9)
                                                     END)
                                          FROM lifts h WHERE h.nb = r.id))
               END AS rel
        FROM ranked r
    )
    SELECT r.id, r.sim, r.rel, r.fused, r.lex, r.imp, r.rec, r.rel - r.own, r.lenf, r.memory
    FROM lifted r
    WHERE coalesce(p_min_sim, 0) = 0 OR r.sim >= p_min_sim
    ORDER BY r.rel DESC, r.sim DESC, r.id
    LIMIT p_top_k;
END
$fn$;

REVOKE ALL ON FUNCTION memory_rank(text, halfvec, integer, search_filters, uuid[], float8[], text, float8, float8,
                                   float8, float8, float8, integer, float8, float8, integer, float8, boolean,
                                   boolean, integer, integer, interval, float8, float8, integer, float8, float8) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory_rank(text, halfvec, integer, search_filters, uuid[], float8[], text, float8, float8,
                                      float8, float8, float8, integer, float8, float8, integer, float8, boolean,
                                      boolean, integer, integer, interval, float8, float8, integer, float8, float8) TO coda_app;
