-- coda-memory schema as of version 8: what migrations 0001-0008 built, in one file.
-- A new database starts here (the migrator records it as version 8); an existing one has 1-8
-- applied already and goes on with the numbered migrations after 8. SQL functions are not here:
-- each lives in db/functions/ and is applied after the migrations whenever its file changes.
--
-- Every per-user table leads its primary key, unique constraints and indexes with user_id, so
-- the schema can be distributed by user_id later (Citus / Aurora Limitless) without rewrites.
-- The HNSW index is the one exception: pgvector's HNSW indexes a single vector column.

CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS btree_gin;

-- The role the services connect as: not a superuser, not the table owner, no BYPASSRLS.
-- Passwords (for RDS/Aurora) are set out of band: ALTER ROLE coda_app PASSWORD '...'.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'coda_app') THEN
        CREATE ROLE coda_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
END
$$;

-- memories is partitioned by HASH (user_id) into 32 partitions, each with its own indexes
-- (HNSW included). pgvector's HNSW index cannot be keyed by user: over one table a search walks
-- the graph past every other user's nearest rows (with 10 users x 10k memories, 50 candidates
-- for one user cost ~580 tuples and 5-9 ms). With a graph per partition a search only meets
-- the users that hash to that partition (5.3 -> 1.3 ms p50 on the same 100k rows). Partition
-- pruning on `user_id = ...` (every query has it, and the RLS policy adds it again) picks the
-- one partition. Rows of one user live together, the shape a later move to Citus / Aurora
-- Limitless wants.
--
-- The embedding is STORAGE MAIN (inline): pgvector's default EXTERNAL moved it to TOAST once a
-- row passed ~2 kB, and every candidate's similarity cost a TOAST fetch (100 candidates by id:
-- 0.76 -> 0.54 ms).
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

-- Row-level security: the policies live on the parent and apply to every query through it.
-- coda_app has no privilege on the partitions themselves; they also get RLS ENABLEd and FORCEd
-- with no policy, so reading one directly is denied even to a non-superuser owner.
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

-- Per-user dedup: one live row per content hash (a soft-deleted memory may be stored again).
CREATE UNIQUE INDEX memories_user_content_hash ON memories (user_id, content_hash) WHERE NOT deleted;
-- Idempotency for the event path: one row per (user, event id), deleted or not.
CREATE UNIQUE INDEX memories_user_event_id ON memories (user_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX memories_user_created ON memories (user_id, created_at DESC) WHERE NOT deleted AND NOT archived;
CREATE INDEX memories_user_context ON memories (user_id, context_id) WHERE context_id IS NOT NULL;
CREATE INDEX memories_user_tags ON memories USING gin (user_id, tags);
CREATE INDEX memories_user_fts ON memories USING gin (user_id, search_vector);
CREATE INDEX memories_embedding_hnsw ON memories USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);
-- Retention jobs scan these.
CREATE INDEX memories_archive_candidates ON memories (user_id, created_at) WHERE NOT archived AND NOT deleted;
CREATE INDEX memories_purge_candidates ON memories (user_id, deleted_at) WHERE deleted;

CREATE TABLE memory_audit_log (
    user_id     text        NOT NULL,
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    resource    text,
    ip          text,
    result      text        NOT NULL,
    request_id  text,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (user_id, id)
);
CREATE INDEX memory_audit_log_user_at ON memory_audit_log (user_id, at DESC);

CREATE TABLE user_quotas (
    user_id              text        NOT NULL PRIMARY KEY,
    max_memories         integer     NOT NULL DEFAULT 50000 CHECK (max_memories >= 0),
    max_daily_ingestions integer     NOT NULL DEFAULT 1000 CHECK (max_daily_ingestions >= 0),
    memory_count         integer     NOT NULL DEFAULT 0 CHECK (memory_count >= 0),
    daily_ingestions     integer     NOT NULL DEFAULT 0 CHECK (daily_ingestions >= 0),
    quota_day            date        NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')::date,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 of the key (keys are 256-bit random, so a fast hash is
-- enough); a key bound to a user may only act for that user.
CREATE TABLE api_keys (
    key_hash    text        NOT NULL PRIMARY KEY,
    key_id      uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    user_id     text,
    name        text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Row-level security: the app sets app.current_user_id inside each transaction
-- (set_config(..., true)); outside one the setting reads '' — hence NULLIF.
ALTER TABLE memories ENABLE ROW LEVEL SECURITY;
ALTER TABLE memories FORCE ROW LEVEL SECURITY;
CREATE POLICY memories_by_user ON memories
    USING (user_id = NULLIF(current_setting('app.current_user_id', true), ''))
    WITH CHECK (user_id = NULLIF(current_setting('app.current_user_id', true), ''));

ALTER TABLE memory_audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_by_user ON memory_audit_log
    USING (user_id = NULLIF(current_setting('app.current_user_id', true), ''))
    WITH CHECK (user_id = NULLIF(current_setting('app.current_user_id', true), ''));

ALTER TABLE user_quotas ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_quotas FORCE ROW LEVEL SECURITY;
CREATE POLICY quotas_by_user ON user_quotas
    USING (user_id = NULLIF(current_setting('app.current_user_id', true), ''))
    WITH CHECK (user_id = NULLIF(current_setting('app.current_user_id', true), ''));

-- api_keys is never readable by the app role; it resolves a key through resolve_api_key().
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;

-- SECURITY DEFINER functions (key lookup, audit, retention jobs) run as the role that applied
-- this migration. Superusers bypass RLS anyway; a non-superuser owner (RDS/Aurora master user)
-- is subject to FORCE, so it gets its own unrestricted policy. It never applies to coda_app.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['memories', 'memory_audit_log', 'user_quotas', 'api_keys'] LOOP
        EXECUTE format('CREATE POLICY %I ON %I TO %I USING (true) WITH CHECK (true)',
                       t || '_owner', t, current_user);
    END LOOP;
END
$$;

REVOKE ALL ON memories, memory_audit_log, user_quotas, api_keys FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO coda_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON memories TO coda_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON user_quotas TO coda_app;
GRANT SELECT, INSERT ON memory_audit_log TO coda_app;
GRANT SELECT ON schema_migrations TO coda_app;

ANALYZE memories;
