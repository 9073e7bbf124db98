-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
-- api_keys is never readable by the app role; it resolves a key through this function.
CREATE OR REPLACE FUNCTION resolve_api_key(p_key_hash text)
RETURNS TABLE (key_id uuid, user_id text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT k.key_id, k.user_id FROM public.api_keys k
    WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL
$$;

REVOKE ALL ON FUNCTION resolve_api_key(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION resolve_api_key(text) TO coda_app;
