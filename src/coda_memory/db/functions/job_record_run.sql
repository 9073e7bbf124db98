-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
-- A retention job step (see job_archive_batch.sql for how the jobs work).

-- One summary row per job run (user_id '' = the system), written by the job runner.
CREATE OR REPLACE FUNCTION job_record_run(p_job text, p_result text, p_request_id text, p_details jsonb)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT public.write_audit('', 'job:' || p_job, 'job_run', p_job, NULL, p_result, p_request_id,
                              p_details)
$$;

REVOKE ALL ON FUNCTION job_record_run(text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_record_run(text, text, text, jsonb) TO coda_app;
