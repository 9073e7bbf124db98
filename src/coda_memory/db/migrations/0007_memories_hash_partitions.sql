-- memories becomes a table partitioned by HASH (user_id) into 32 partitions, each with its own
-- indexes (HNSW included).
--
-- Why: pgvector's HNSW index cannot be keyed by user. Over the whole table a search walks the
-- graph past every other user's nearest rows and throws them away (the user filter is applied
-- after the index): with 10 users x 10k memories, 50 candidates for one user cost ~580 tuples,
-- ~7,000 buffer hits and 5-9 ms. With a graph per partition the search only meets the users
-- that hash to that partition (measured on the same 100k rows: 5.3 -> 1.3 ms p50 for the
-- 50 nearest). Partition pruning on `user_id = ...` (every query has it, and the RLS policy
-- adds it again) picks the one partition; lookups by (user_id, id) and the per-user GIN and
-- btree indexes get smaller too. 32 keeps each graph at ~1/32 of the table with a planning
-- cost that stays negligible; users sharing a partition still find their rows (iterative
-- scan, and the exact re-run in retrieval.py). It is also the shape the later move to Citus /
-- Aurora Limitless wants: rows of one user live together, user_id leads every key.
--
-- The data is copied in this transaction (ACCESS EXCLUSIVE on memories while it runs: minutes
-- for millions of rows -- run it in a maintenance window on a large deployment).
--
-- Row-level security: the policies live on the parent and apply to every query through it.
-- coda_app has no privilege on the partitions themselves; they also get RLS ENABLEd and FORCEd
-- with no policy, so reading one directly is denied even to a non-superuser owner.

ALTER TABLE memories RENAME TO memories_unpartitioned;
ALTER INDEX memories_pkey RENAME TO memories_unpartitioned_pkey;

CREATE TABLE memories (
    user_id        text        NOT NULL,
    id             uuid        NOT NULL DEFAULT gen_random_uuid(),
    content        text        NOT NULL,
    content_type   text        NOT NULL,
    embedding      vector(384) STORAGE MAIN NOT NULL,  -- inline, see 0005
    context_id     text,
    source_type    text        NOT NULL,
    source_id      text,
    event_id       text,
    importance     real        NOT NULL DEFAULT 0.5 CHECK (importance >= 0 AND importance <= 1),
    confidence     real        NOT NULL DEFAULT 1.0 CHECK (confidence >= 0 AND confidence <= 1),
    tags           text[]      NOT NULL DEFAULT '{}',
    metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    content_hash   text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    ingested_at    timestamptz NOT NULL DEFAULT now(),
    accessed_at    timestamptz,
    access_count   integer     NOT NULL DEFAULT 0,
    archived       boolean     NOT NULL DEFAULT false,
    archived_at    timestamptz,
    deleted        boolean     NOT NULL DEFAULT false,
    deleted_at     timestamptz,
    search_vector  tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    PRIMARY KEY (user_id, id)
) PARTITION BY HASH (user_id);

DO $$
BEGIN
    FOR i IN 0..31 LOOP
        -- fillfactor 90: see 0006 (HOT access-statistics updates).
        -- toast_tuple_target 8160: the inline embedding (1.5 kB, STORAGE MAIN since 0005) put
        -- most rows past the default 2 kB target, so the toaster moved search_vector and content
        -- out of line and BM25 paid ~4 TOAST buffer reads per matching row. Now a row leaves
        -- values inline unless it does not fit a page (BM25 on 1,149 matches: 4.5 -> 3.1 ms;
        -- the heap did not grow: 260 MB for 100k rows).
        EXECUTE format('CREATE TABLE %I PARTITION OF memories FOR VALUES WITH (MODULUS 32, REMAINDER %s) '
                       'WITH (fillfactor = 90, toast_tuple_target = 8160)',
                       'memories_p' || lpad(i::text, 2, '0'), i);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', 'memories_p' || lpad(i::text, 2, '0'));
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', 'memories_p' || lpad(i::text, 2, '0'));
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', 'memories_p' || lpad(i::text, 2, '0'));
    END LOOP;
END
$$;

INSERT INTO memories (user_id, id, content, content_type, embedding, context_id, source_type, source_id,
                      event_id, importance, confidence, tags, metadata, content_hash, created_at,
                      ingested_at, accessed_at, access_count, archived, archived_at, deleted, deleted_at)
SELECT user_id, id, content, content_type, embedding, context_id, source_type, source_id,
       event_id, importance, confidence, tags, metadata, content_hash, created_at,
       ingested_at, accessed_at, access_count, archived, archived_at, deleted, deleted_at
FROM memories_unpartitioned;

DROP TABLE memories_unpartitioned;

-- The indexes of 0001, built once after the copy (faster than maintaining them row by row).
CREATE UNIQUE INDEX memories_user_content_hash ON memories (user_id, content_hash) WHERE NOT deleted;
CREATE UNIQUE INDEX memories_user_event_id ON memories (user_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX memories_user_created ON memories (user_id, created_at DESC) WHERE NOT deleted AND NOT archived;
CREATE INDEX memories_user_context ON memories (user_id, context_id) WHERE context_id IS NOT NULL;
CREATE INDEX memories_user_tags ON memories USING gin (user_id, tags);
CREATE INDEX memories_user_fts ON memories USING gin (user_id, search_vector);
CREATE INDEX memories_embedding_hnsw ON memories USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);
CREATE INDEX memories_archive_candidates ON memories (user_id, created_at) WHERE NOT archived AND NOT deleted;
CREATE INDEX memories_purge_candidates ON memories (user_id, deleted_at) WHERE deleted;

ALTER TABLE memories ENABLE ROW LEVEL SECURITY;
ALTER TABLE memories FORCE ROW LEVEL SECURITY;
CREATE POLICY memories_by_user ON memories
    USING (user_id = NULLIF(current_setting('app.current_user_id', true), ''))
    WITH CHECK (user_id = NULLIF(current_setting('app.current_user_id', true), ''));
DO $$
BEGIN
    EXECUTE format('CREATE POLICY memories_owner ON memories TO %I USING (true) WITH CHECK (true)', current_user);
END
$$;

REVOKE ALL ON memories FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON memories TO coda_app;

ANALYZE memories;
