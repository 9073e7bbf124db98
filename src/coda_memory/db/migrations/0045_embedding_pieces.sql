-- Long memories embedded in pieces. The model reads the first 256 tokens of a text; a longer
-- memory (a pasted log, a long assistant answer) was found only by its opening. Now such a
-- memory also keeps the embeddings of the rest of its text, in overlapping 256-token windows
-- (embedding_pieces, at most MEMORY_EMBEDDING_PIECES - 1 of them; NULL for a memory the model
-- reads whole). The memory_vectors triggers copy them as pieces 1..n beside piece 0 (the
-- embedding), so the vector step finds a memory by its best piece and the ranking scores it so.
-- Kept on the memory row, like the embedding, so a memory that comes back into the searchable
-- set (restore) gets all its pieces back; memories stored before have none until their content
-- changes.
ALTER TABLE memories ADD COLUMN embedding_pieces halfvec(384)[];
