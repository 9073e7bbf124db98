-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- Queue a memory for consolidation when it is stored or its content changes (trigger on
-- memories, every write path: ingest, batch, events, import, PATCH). SECURITY DEFINER: the
-- service role has no privilege on the queue.
CREATE OR REPLACE FUNCTION queue_for_consolidation()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF NOT NEW.deleted AND NOT NEW.archived THEN
        INSERT INTO public.memory_consolidation_queue (user_id, memory_id)
        VALUES (NEW.user_id, NEW.id)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION queue_for_consolidation() FROM PUBLIC;

DROP TRIGGER IF EXISTS memories_queue_consolidation_insert ON memories;
CREATE TRIGGER memories_queue_consolidation_insert AFTER INSERT ON memories
    FOR EACH ROW EXECUTE FUNCTION queue_for_consolidation();
DROP TRIGGER IF EXISTS memories_queue_consolidation_update ON memories;
CREATE TRIGGER memories_queue_consolidation_update AFTER UPDATE OF content ON memories
    FOR EACH ROW WHEN (OLD.content IS DISTINCT FROM NEW.content) EXECUTE FUNCTION queue_for_consolidation();
