-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- Which of p_ids belong to a user other than the current transaction's user
-- (app.current_user_id). The import keeps the ids it is given; memory ids are uuids meant to be
-- unique across users, and the service role only sees its user's rows, so this check runs as
-- the owner. It answers only "taken or not" for ids the caller already holds -- no user, no
-- content -- and the import turns a taken id into a neutral per-line rejection. Uses the
-- memories_id index (migration 0020).
CREATE OR REPLACE FUNCTION memory_ids_taken(p_ids uuid[])
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT DISTINCT m.id FROM public.memories m
    WHERE m.id = ANY(p_ids)
      AND m.user_id IS DISTINCT FROM NULLIF(current_setting('app.current_user_id', true), '')
$$;

REVOKE ALL ON FUNCTION memory_ids_taken(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory_ids_taken(uuid[]) TO coda_app;
