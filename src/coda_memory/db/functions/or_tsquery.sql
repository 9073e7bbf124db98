-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
-- OR of the query's English lexemes: websearch_to_tsquery/plainto_tsquery AND every word, so a
-- natural-language question would match almost nothing. Quotes and backslashes are doubled
-- as the tsquery input syntax requires. NULL when the text has no lexemes (only stop words).
CREATE OR REPLACE FUNCTION or_tsquery(q text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
    SELECT string_agg(quote_lexeme, ' | ')::tsquery
    FROM (SELECT '''' || replace(replace(l, '\', '\\'), '''', '''''') || '''' AS quote_lexeme
          FROM unnest(tsvector_to_array(to_tsvector('english', q))) AS l) AS quoted
$fn$;

GRANT EXECUTE ON FUNCTION or_tsquery(text) TO coda_app;
