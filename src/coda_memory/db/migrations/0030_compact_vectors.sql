-- A vector step whose cost follows the user's own searchable memories, not the number of users
-- sharing a partition, and half the bytes per vector.
--
-- Before: one HNSW graph per hash partition of memories (fp32, 2.1 kB per memory, every user of
-- the partition in it). A search walked the shared graph and threw away other users' rows:
-- ~0.45 ms per co-tenant user, and past ~13,000 users it hit hnsw.max_scan_tuples and re-ran
-- exactly (docs/capacity.md, section 3).
--
-- Now:
--   memory_vectors   one row per (user, memory, piece) of every SEARCHABLE memory (the one
--                    definition: functions/memory_searchable.sql), its embedding as halfvec(384)
--                    (768 B; ranking-equivalent for MiniLM cosine, checked by the retrieval
--                    benchmark). Kept by the statement triggers of functions/memory_vectors_sync.sql
--                    in the writing transaction. `piece` lets a long memory carry several vectors
--                    (scored by its best piece); today every memory has piece 0 = its embedding.
--                    Hash-partitioned by user_id like memories (32), so per-user indexes below stay
--                    few per partition.
--   per-user graphs  a user with many searchable vectors gets an HNSW index of its own: a
--                    partial index on its partition, WHERE user_id = '<user>'
--                    (functions/memory_vector_graphs.sql creates and drops them; the nightly job
--                    runs it). A search of that user walks only its own graph; a smaller user is
--                    scanned exactly (its rows by primary key), which costs ~1 us per vector.
-- The shared fp32 HNSW graphs of memories go. memories.embedding (the source the triggers copy,
-- used by consolidation, export and PATCH) becomes halfvec(384) as well: -768 B per row, and
-- with fillfactor 90 five rows fit a page instead of three. vector -> halfvec is an implicit
-- cast, so writers that send vector values are unchanged.

CREATE TABLE memory_vectors (
    user_id   text         NOT NULL,
    memory_id uuid         NOT NULL,
    piece     smallint     NOT NULL DEFAULT 0,
    embedding halfvec(384) NOT NULL,
    PRIMARY KEY (user_id, memory_id, piece)
) PARTITION BY HASH (user_id);

DO $$
BEGIN
    FOR i IN 0..31 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF memory_vectors FOR VALUES WITH (MODULUS 32, REMAINDER %s)',
                       'memory_vectors_p' || lpad(i::text, 2, '0'), i);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', 'memory_vectors_p' || lpad(i::text, 2, '0'));
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', 'memory_vectors_p' || lpad(i::text, 2, '0'));
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', 'memory_vectors_p' || lpad(i::text, 2, '0'));
    END LOOP;
END
$$;

-- Row-level security as on memories: coda_app reads its own user's rows and writes none (the
-- SECURITY DEFINER triggers write them); the schema owner gets its own unrestricted policy.
ALTER TABLE memory_vectors ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_vectors FORCE ROW LEVEL SECURITY;
CREATE POLICY memory_vectors_by_user ON memory_vectors
    USING (user_id = NULLIF(current_setting('app.current_user_id', true), ''));
DO $$
BEGIN
    EXECUTE format('CREATE POLICY memory_vectors_owner ON memory_vectors TO %I USING (true) WITH CHECK (true)',
                   current_user);
END
$$;
REVOKE ALL ON memory_vectors FROM PUBLIC;
GRANT SELECT ON memory_vectors TO coda_app;

-- Which users have a graph of their own (written by memory_vector_graphs_sync as the owner;
-- read by memory_nearest to choose the walk or the exact scan).
CREATE TABLE memory_vector_graphs (
    user_id    text        NOT NULL PRIMARY KEY,
    index_name text        NOT NULL UNIQUE,
    vectors    integer     NOT NULL,
    built_at   timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE memory_vector_graphs ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_vector_graphs FORCE ROW LEVEL SECURITY;
CREATE POLICY memory_vector_graphs_by_user ON memory_vector_graphs
    USING (user_id = NULLIF(current_setting('app.current_user_id', true), ''));
DO $$
BEGIN
    EXECUTE format('CREATE POLICY memory_vector_graphs_owner ON memory_vector_graphs TO %I USING (true) WITH CHECK (true)',
                   current_user);
END
$$;
REVOKE ALL ON memory_vector_graphs FROM PUBLIC;
GRANT SELECT ON memory_vector_graphs TO coda_app;

-- The shared graphs go first (they index the column whose type changes).
DROP INDEX memories_embedding_hnsw;
ALTER TABLE memories ALTER COLUMN embedding TYPE halfvec(384);

-- Backfill: the searchable memories of an existing database (NOT deleted AND NOT archived, the
-- definition at this version; the triggers use functions/memory_searchable.sql from here on).
INSERT INTO memory_vectors (user_id, memory_id, piece, embedding)
SELECT user_id, id, 0, embedding FROM memories WHERE NOT deleted AND NOT archived;

ANALYZE memory_vectors;
