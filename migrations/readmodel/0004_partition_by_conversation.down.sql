-- Back to plain tables (see the up migration), keeping the rows and every
-- view over them.

CREATE FUNCTION pg_temp.unpartition(t text, fill int, constraints text[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    staged text := t || '_plain';
    old    text := t || '_partitioned';
    views  text[] := '{}';
    v      record;
    c      text;
BEGIN
    EXECUTE format('LOCK TABLE %I IN EXCLUSIVE MODE', t);
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS)
                    WITH (fillfactor = %s)', staged, t, fill);
    EXECUTE format('INSERT INTO %I SELECT * FROM %I', staged, t);
    EXECUTE format('COMMENT ON TABLE %I IS %L', staged, obj_description(t::regclass, 'pg_class'));
    FOR v IN
        SELECT DISTINCT ev.oid::regclass AS name, pg_get_viewdef(ev.oid) AS def
          FROM pg_depend d
          JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
          JOIN pg_class ev ON ev.oid = r.ev_class
         WHERE d.refobjid = t::regclass AND ev.oid <> t::regclass AND ev.relkind = 'v'
    LOOP
        views := views || format('CREATE OR REPLACE VIEW %s AS %s', v.name, rtrim(v.def, ';'));
    END LOOP;
    EXECUTE format('ALTER TABLE %I RENAME TO %I', t, old);
    EXECUTE format('ALTER TABLE %I RENAME TO %I', staged, t);
    FOREACH c IN ARRAY views LOOP
        EXECUTE c;
    END LOOP;
    EXECUTE format('DROP TABLE %I', old);
    FOREACH c IN ARRAY constraints LOOP
        EXECUTE format('ALTER TABLE %I ADD %s', t, c);
    END LOOP;
END
$fn$;

SELECT pg_temp.unpartition('messages', 85, ARRAY[
    'CONSTRAINT messages_pkey PRIMARY KEY (conversation_id, seq)',
    'CONSTRAINT messages_message_id_key UNIQUE (message_id)',
    'CONSTRAINT messages_conversation_id_sender_id_client_msg_id_key UNIQUE (conversation_id, sender_id, client_msg_id)']);

SELECT pg_temp.unpartition('events', 100, ARRAY[
    'CONSTRAINT events_pkey PRIMARY KEY (conversation_id, seq)']);

DROP FUNCTION pg_temp.unpartition(text, int, text[]);

COMMENT ON COLUMN messages.message_id IS 'Server-assigned message id.';
