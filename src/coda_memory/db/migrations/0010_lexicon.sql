-- A lexical index whose search cost follows the query, and search structures that hold live
-- memories only.
--
-- Before: bm25_candidates read every memory matching any query lexeme through the GIN index,
-- unnested its tsvector and counted document frequencies per search -- O(matching memories):
-- 172 ms p50 at 50k memories of conversation text, where names and everyday words match most
-- rows. Archived and deleted rows stayed in the HNSW graph and the GIN index, so archival made
-- search slower.
--
-- Now, per user and live memories only (NOT deleted AND NOT archived), kept by the statement
-- triggers of functions/memory_lexicon_sync.sql in the writing transaction, whatever the path
-- (ingest, batch, delete, erase, archive and purge jobs, any later update/import):
--   memory_lexicon_totals  live document count and total length (N and avgdl of BM25)
--   memory_lexicon         document frequency per lexeme (IDF without a scan)
--   memory_postings        one row per (memory, lexeme): tf, document length, and an impact
--                          (the BM25 term weight at write time) read in impact order through a
--                          btree, so a search reads at most M postings per query lexeme.
-- The HNSW index becomes partial (live rows only); the full-text GIN index goes (nothing reads
-- it any more: lexical search reads memory_postings).
--
-- The filters of a search get a composite type, search_filters, whose semantics live in one
-- SQL function (functions/memory_visible.sql) used by the vector query and the lexical function.

CREATE TABLE memory_lexicon_totals (
    user_id      text   NOT NULL PRIMARY KEY,
    docs         bigint NOT NULL,
    total_length bigint NOT NULL
);

CREATE TABLE memory_lexicon (
    user_id text    NOT NULL,
    lexeme  text    NOT NULL,
    df      integer NOT NULL,
    PRIMARY KEY (user_id, lexeme)
);

CREATE TABLE memory_postings (
    user_id text    NOT NULL,
    lexeme  text    NOT NULL,
    id      uuid    NOT NULL,
    tf      integer NOT NULL,
    dl      integer NOT NULL,
    impact  real    NOT NULL,
    -- probes of (lexeme, memory) pairs (index-only) and deletes by the triggers
    PRIMARY KEY (user_id, lexeme, id) INCLUDE (tf, dl)
) WITH (fillfactor = 90);
-- the top M postings of a lexeme, best first, without visiting the heap for tf and dl
CREATE INDEX memory_postings_impact ON memory_postings (user_id, lexeme, impact DESC, id) INCLUDE (tf, dl);

-- Row-level security as on memories: coda_app reads its own user's rows and writes none (the
-- SECURITY DEFINER triggers write them); the schema owner gets its own unrestricted policy.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['memory_lexicon_totals', 'memory_lexicon', 'memory_postings'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY %I ON %I USING (user_id = NULLIF(current_setting('app.current_user_id', true), ''))$p$,
                       t || '_by_user', t);
        EXECUTE format('CREATE POLICY %I ON %I TO %I USING (true) WITH CHECK (true)',
                       t || '_owner', t, current_user);
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', t);
        EXECUTE format('GRANT SELECT ON %I TO coda_app', t);
    END LOOP;
END
$$;

-- The filters a search may carry (NULL attribute = no filter). A new filter is one attribute
-- here (ALTER TYPE search_filters ADD ATTRIBUTE ...), the same-named field of SearchFilters in
-- models.py, and one line in functions/memory_visible.sql.
CREATE TYPE search_filters AS (
    content_types  text[],
    tags           text[],
    min_importance real,
    context_id     text,
    created_after  timestamptz,
    created_before timestamptz,
    metadata       jsonb,
    source_types   text[]
);
GRANT USAGE ON TYPE search_filters TO coda_app;

-- Backfill from the live memories (the triggers keep it from here on). The impact is
-- bm25_impact (functions/bm25_impact.sql, applied after the migrations) written out.
INSERT INTO memory_lexicon_totals (user_id, docs, total_length)
SELECT user_id, count(*), sum(length(search_vector))
FROM memories WHERE NOT deleted AND NOT archived
GROUP BY user_id;

INSERT INTO memory_lexicon (user_id, lexeme, df)
SELECT m.user_id, l.lexeme, count(*)
FROM memories m, unnest(m.search_vector) AS l
WHERE NOT m.deleted AND NOT m.archived
GROUP BY 1, 2;

INSERT INTO memory_postings (user_id, lexeme, id, tf, dl, impact)
SELECT m.user_id, l.lexeme, m.id, coalesce(cardinality(l.positions), 1), length(m.search_vector),
       2.2 * coalesce(cardinality(l.positions), 1)::real
       / (coalesce(cardinality(l.positions), 1)
          + 1.2 * (0.25 + 0.75 * length(m.search_vector) / greatest(t.total_length::float8 / t.docs, 1)))
FROM memories m
JOIN memory_lexicon_totals t ON t.user_id = m.user_id
CROSS JOIN LATERAL unnest(m.search_vector) AS l
WHERE NOT m.deleted AND NOT m.archived;

-- Live-only search structures: an archived or deleted memory is not in the graph at all, so
-- the filtered iterative scan no longer walks past it.
DROP INDEX memories_embedding_hnsw;
CREATE INDEX memories_embedding_hnsw ON memories USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64) WHERE NOT deleted AND NOT archived;
DROP INDEX memories_user_fts;

ANALYZE memory_lexicon_totals, memory_lexicon, memory_postings;
