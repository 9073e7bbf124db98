-- Postings at less than half the bytes.
--
-- Before (0010): one row per (memory, lexeme) holding the user id, the lexeme's text, the memory
-- id, tf, document length and an impact, in a heap plus two btrees (primary key for deletes,
-- impact order for search): 4.7 kB per memory (17.6 postings of ~270 B).
--
-- Now: (user_id, term, impact, memory_id) in the heap and one btree in impact order.
--   term    hashtext(lexeme): an int4 instead of the text. Two lexemes of one user's vocabulary
--           that share a hash share a list: that only adds candidates, whose scores are exact
--           (bm25_scores reads the memory's own tsvector); df stays per lexeme in memory_lexicon.
--   impact  the BM25 term weight with a fixed mean length (bm25_impact): the order in which a
--           term's postings are read, and the partial score that picks the candidates to score
--           exactly. It depends on (tf, document length) only, so a delete recomputes it from
--           the old row and finds the posting by the index's full key: the primary key, tf and
--           length columns go.

CREATE TABLE memory_postings_compact (
    user_id   text NOT NULL,
    term      integer NOT NULL,
    impact    real NOT NULL,
    memory_id uuid NOT NULL
) WITH (fillfactor = 95);

-- the impact without the user's mean length: bm25_impact (functions/bm25_impact.sql, applied
-- after the migrations) written out in the same float8 arithmetic, so a delete recomputes the
-- same real
INSERT INTO memory_postings_compact (user_id, term, impact, memory_id)
SELECT user_id, hashtext(lexeme),
       (tf::float8 * (1.2::float8 + 1)
        / (tf::float8 + 1.2::float8 * (1 - 0.75::float8 + 0.75::float8 * dl::float8 / greatest(12::float8, 1))))::real,
       id
FROM memory_postings;

DROP TABLE memory_postings;
ALTER TABLE memory_postings_compact RENAME TO memory_postings;
-- the top M postings of a term, best first, read index-only; also the key a delete finds
CREATE INDEX memory_postings_impact ON memory_postings (user_id, term, impact DESC, memory_id) WITH (fillfactor = 95);

ALTER TABLE memory_postings ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_postings FORCE ROW LEVEL SECURITY;
CREATE POLICY memory_postings_by_user ON memory_postings
    USING (user_id = NULLIF(current_setting('app.current_user_id', true), ''));
DO $$
BEGIN
    EXECUTE format('CREATE POLICY memory_postings_owner ON memory_postings TO %I USING (true) WITH CHECK (true)',
                   current_user);
END
$$;
REVOKE ALL ON memory_postings FROM PUBLIC;
GRANT SELECT ON memory_postings TO coda_app;

ANALYZE memory_postings;
