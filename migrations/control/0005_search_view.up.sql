-- analytics.message_search: the search projection (read-model migration
-- 0013), for analysts' full-text queries (docs/read-models.md). Made only
-- over a schema that has the table.
ALTER FUNCTION point_analytics(text, text) RENAME TO point_analytics_presence;

CREATE FUNCTION point_analytics(dst text, src text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM parley.point_analytics_presence(dst, src);
    IF to_regclass(format('%I.message_search', src)) IS NOT NULL THEN
        EXECUTE format('CREATE OR REPLACE VIEW %I.message_search AS SELECT * FROM %I.message_search', dst, src);
    END IF;
END
$fn$;
