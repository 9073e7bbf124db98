-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
-- Audit rows for requests that never got a user (401, or 403 for someone else's user) are
-- written through this function, so the app role cannot read or forge other users' logs.
CREATE OR REPLACE FUNCTION write_audit(p_user_id text, p_actor text, p_action text, p_resource text,
                            p_ip text, p_result text, p_request_id text, p_details jsonb)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    INSERT INTO public.memory_audit_log (user_id, actor, action, resource, ip, result, request_id, details)
    VALUES (coalesce(p_user_id, ''), p_actor, p_action, p_resource, p_ip, p_result, p_request_id,
            coalesce(p_details, '{}'::jsonb))
$$;

REVOKE ALL ON FUNCTION write_audit(text, text, text, text, text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION write_audit(text, text, text, text, text, text, text, jsonb) TO coda_app;
