-- Consolidation finds the memories to compare through a queue instead of memories.checked_at.
--
-- Why: checked_at was in the predicate of memories_consolidation_candidates, so stamping it
-- could never be a HOT update -- every compared memory got a new heap tuple and a new entry in
-- every index of its partition, the HNSW graph included (measured: stamping 50k rows ran for
-- minutes; each memory compared cost about one more HNSW insert). The queue holds (user, id)
-- pairs written by a trigger when a memory is stored or its content changes; the job deletes
-- them as it goes, and never rewrites memories it does not merge.
DROP INDEX memories_consolidation_candidates;
ALTER TABLE memories DROP COLUMN checked_at;

CREATE TABLE memory_consolidation_queue (
    user_id    text        NOT NULL,
    memory_id  uuid        NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, memory_id),
    FOREIGN KEY (user_id, memory_id) REFERENCES memories (user_id, id) ON DELETE CASCADE
);

-- Only the trigger function and the job (both SECURITY DEFINER) touch it: no grant to coda_app.
ALTER TABLE memory_consolidation_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_consolidation_queue FORCE ROW LEVEL SECURITY;
DO $$
BEGIN
    EXECUTE format('CREATE POLICY memory_consolidation_queue_owner ON memory_consolidation_queue TO %I '
                   'USING (true) WITH CHECK (true)', current_user);
END
$$;
REVOKE ALL ON memory_consolidation_queue FROM PUBLIC;

-- Every live memory of an existing database is compared once by the first run.
INSERT INTO memory_consolidation_queue (user_id, memory_id)
SELECT user_id, id FROM memories WHERE NOT deleted AND NOT archived;
