-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- Keeps memory_vectors (migration 0030) equal to the searchable memories (memory_searchable)
-- of each user, in the transaction that writes memories, whatever the statement: insert
-- (ingest, batch, import), update (soft delete, archive, restore, content edit, superseding),
-- delete (hard delete, erase, purge). Statement-level triggers with transition tables, like
-- the lexical statistics (memory_lexicon_sync.sql): one statement, one write per table.
--
-- A memory's vectors are piece 0 (its embedding) and pieces 1..n (embedding_pieces, the rest of
-- a long text; migration 0045): memory_vector_pieces. A memory that leaves the searchable set
-- loses all its pieces; a new embedding (content edit) replaces all of them.

CREATE OR REPLACE FUNCTION memory_vector_pieces(m memories)
RETURNS TABLE (piece smallint, embedding halfvec)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT 0::smallint, m.embedding
    UNION ALL
    SELECT p.n::smallint, p.e FROM unnest(m.embedding_pieces) WITH ORDINALITY AS p(e, n)
$fn$;

CREATE OR REPLACE FUNCTION memory_vectors_on_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    INSERT INTO public.memory_vectors (user_id, memory_id, piece, embedding)
    SELECT n.user_id, n.id, p.piece, p.embedding
    FROM new_rows n CROSS JOIN LATERAL public.memory_vector_pieces(n) p WHERE public.memory_searchable(n);
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION memory_vectors_on_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    DELETE FROM public.memory_vectors v
    USING old_rows o
    WHERE public.memory_searchable(o) AND v.user_id = o.user_id AND v.memory_id = o.id;
    RETURN NULL;
END
$fn$;

-- Access-statistics updates (every search) change neither the searchable state nor the
-- embedding: the joins find nothing to write.
CREATE OR REPLACE FUNCTION memory_vectors_on_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    -- left the searchable set: every piece goes
    DELETE FROM public.memory_vectors v
    USING old_rows o JOIN new_rows n ON n.user_id = o.user_id AND n.id = o.id
    WHERE public.memory_searchable(o) AND NOT public.memory_searchable(n)
      AND v.user_id = o.user_id AND v.memory_id = o.id;
    -- still searchable, new embedding (content edit): its pieces go, the new ones come below
    DELETE FROM public.memory_vectors v
    USING old_rows o JOIN new_rows n ON n.user_id = o.user_id AND n.id = o.id
    WHERE public.memory_searchable(o) AND public.memory_searchable(n)
      AND (n.embedding IS DISTINCT FROM o.embedding OR n.embedding_pieces IS DISTINCT FROM o.embedding_pieces)
      AND v.user_id = n.user_id AND v.memory_id = n.id;
    -- came (back) into the searchable set, or re-embedded
    INSERT INTO public.memory_vectors (user_id, memory_id, piece, embedding)
    SELECT n.user_id, n.id, p.piece, p.embedding
    FROM old_rows o JOIN new_rows n ON n.user_id = o.user_id AND n.id = o.id
    CROSS JOIN LATERAL public.memory_vector_pieces(n) p
    WHERE public.memory_searchable(n)
      AND (NOT public.memory_searchable(o) OR n.embedding IS DISTINCT FROM o.embedding
           OR n.embedding_pieces IS DISTINCT FROM o.embedding_pieces);
    RETURN NULL;
END
$fn$;

REVOKE ALL ON FUNCTION memory_vector_pieces(memories) FROM PUBLIC;
REVOKE ALL ON FUNCTION memory_vectors_on_insert() FROM PUBLIC;
REVOKE ALL ON FUNCTION memory_vectors_on_delete() FROM PUBLIC;
REVOKE ALL ON FUNCTION memory_vectors_on_update() FROM PUBLIC;

CREATE OR REPLACE TRIGGER memories_vectors_insert AFTER INSERT ON memories
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION memory_vectors_on_insert();
CREATE OR REPLACE TRIGGER memories_vectors_delete AFTER DELETE ON memories
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION memory_vectors_on_delete();
CREATE OR REPLACE TRIGGER memories_vectors_update AFTER UPDATE ON memories
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memory_vectors_on_update();
