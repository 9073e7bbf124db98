-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- Keeps memory_lexicon_totals, memory_lexicon and memory_postings (migration 0010) equal to the
-- searchable memories (memory_searchable.sql) of each user, in the transaction that writes
-- memories, whatever the statement: insert (ingest, batch, import), update (soft delete,
-- archive, restore, content edit), delete (hard delete, erase, purge). Statement-level
-- triggers with transition tables: a statement changing many rows (erase, a job batch) updates
-- each lexeme's df once, not once per row.
--
-- Concurrency: the user's user_quotas row is locked first (ingest holds it already; a delete
-- takes it here, before releasing quota), then rows are written in (user_id, lexeme) order, so
-- two writers of the same user queue instead of deadlocking on df rows.

-- The statistics change of one statement: +1 rows come live, -1 rows leave.
CREATE OR REPLACE FUNCTION memory_lexicon_apply(p_user text[], p_id uuid[], p_sv tsvector[], p_sign integer[])
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    IF coalesce(cardinality(p_id), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM 1 FROM public.user_quotas q
    WHERE q.user_id = ANY(p_user) ORDER BY q.user_id FOR UPDATE;

    INSERT INTO public.memory_lexicon_totals AS t (user_id, docs, total_length)
    SELECT c.user_id, sum(c.sign), sum(c.sign * length(c.sv))
    FROM unnest(p_user, p_sv, p_sign) AS c(user_id, sv, sign)
    GROUP BY c.user_id ORDER BY c.user_id
    ON CONFLICT (user_id) DO UPDATE
    SET docs = t.docs + excluded.docs, total_length = t.total_length + excluded.total_length;

    INSERT INTO public.memory_lexicon AS x (user_id, lexeme, df)
    SELECT c.user_id, l.lexeme, sum(c.sign)
    FROM unnest(p_user, p_sv, p_sign) AS c(user_id, sv, sign), unnest(c.sv) AS l
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (user_id, lexeme) DO UPDATE SET df = x.df + excluded.df;

    IF -1 = ANY(p_sign) THEN
        -- a posting's full index key, recomputed from the row that leaves (migration 0031)
        DELETE FROM public.memory_postings p
        USING unnest(p_user, p_id, p_sv, p_sign) AS c(user_id, id, sv, sign), unnest(c.sv) AS l
        WHERE c.sign < 0 AND p.user_id = c.user_id AND p.term = hashtext(l.lexeme)
          AND p.impact = public.bm25_impact(coalesce(cardinality(l.positions), 1), length(c.sv))
          AND p.memory_id = c.id;
        DELETE FROM public.memory_lexicon x
        USING (SELECT DISTINCT c.user_id, l.lexeme
               FROM unnest(p_user, p_sv, p_sign) AS c(user_id, sv, sign), unnest(c.sv) AS l
               WHERE c.sign < 0) AS g
        WHERE x.user_id = g.user_id AND x.lexeme = g.lexeme AND x.df <= 0;
    END IF;

    INSERT INTO public.memory_postings (user_id, term, impact, memory_id)
    SELECT c.user_id, hashtext(l.lexeme), public.bm25_impact(coalesce(cardinality(l.positions), 1), length(c.sv)), c.id
    FROM unnest(p_user, p_id, p_sv, p_sign) AS c(user_id, id, sv, sign)
    CROSS JOIN LATERAL unnest(c.sv) AS l
    WHERE c.sign > 0;
END
$fn$;

CREATE OR REPLACE FUNCTION memory_lexicon_on_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    PERFORM public.memory_lexicon_apply(array_agg(n.user_id), array_agg(n.id), array_agg(n.search_vector),
                                        array_agg(1))
    FROM new_rows n WHERE public.memory_searchable(n);
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION memory_lexicon_on_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    PERFORM public.memory_lexicon_apply(array_agg(o.user_id), array_agg(o.id), array_agg(o.search_vector),
                                        array_agg(-1))
    FROM old_rows o WHERE public.memory_searchable(o);
    RETURN NULL;
END
$fn$;

-- An update changes the statistics only when a row comes live, leaves, or changes its text
-- while live; access-statistics updates (every search) find nothing to do.
CREATE OR REPLACE FUNCTION memory_lexicon_on_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    PERFORM public.memory_lexicon_apply(array_agg(c.user_id), array_agg(c.id), array_agg(c.sv),
                                        array_agg(c.sign))
    FROM (
        SELECT o.user_id, o.id, o.search_vector AS sv, -1 AS sign
        FROM old_rows o JOIN new_rows n ON n.user_id = o.user_id AND n.id = o.id
        WHERE public.memory_searchable(o)
          AND (NOT public.memory_searchable(n) OR n.search_vector IS DISTINCT FROM o.search_vector)
        UNION ALL
        SELECT n.user_id, n.id, n.search_vector, 1
        FROM old_rows o JOIN new_rows n ON n.user_id = o.user_id AND n.id = o.id
        WHERE public.memory_searchable(n)
          AND (NOT public.memory_searchable(o) OR n.search_vector IS DISTINCT FROM o.search_vector)
    ) c;
    RETURN NULL;
END
$fn$;

REVOKE ALL ON FUNCTION memory_lexicon_apply(text[], uuid[], tsvector[], integer[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION memory_lexicon_on_insert() FROM PUBLIC;
REVOKE ALL ON FUNCTION memory_lexicon_on_delete() FROM PUBLIC;
REVOKE ALL ON FUNCTION memory_lexicon_on_update() FROM PUBLIC;

CREATE OR REPLACE TRIGGER memories_lexicon_insert AFTER INSERT ON memories
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION memory_lexicon_on_insert();
CREATE OR REPLACE TRIGGER memories_lexicon_delete AFTER DELETE ON memories
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION memory_lexicon_on_delete();
CREATE OR REPLACE TRIGGER memories_lexicon_update AFTER UPDATE ON memories
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memory_lexicon_on_update();
