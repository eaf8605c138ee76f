-- Partition messages and events by hash of conversation_id (16 partitions).
--
-- Every read of these tables names one conversation (history, sync, the
-- last message and unread count of a conversation list, lookups by
-- message_id or client_msg_id), so a hash of conversation_id prunes every
-- read to one partition, and a conversation's rows share one smaller index
-- whatever its age. Time partitions would suit retention (drop old months)
-- but a history or sync read would touch as many partitions as the
-- conversation has months, and every index lookup by id would visit all of
-- them. docs/scaling.md has the reasoning and the sizes.
--
-- A unique constraint of a partitioned table must contain the partition key:
-- UNIQUE (message_id) becomes UNIQUE (conversation_id, message_id). Message
-- ids are random and the projector matches edits and deletes by
-- (conversation_id, message_id), so nothing relied on the wider one.
--
-- The conversion keeps the live rows: it builds the partitioned table beside
-- the old one, copies the rows (writers wait on the lock, readers go on),
-- swaps the names, recreates every view over the table (unread_counts here,
-- the analytics views in their schema) so it reads the new one, and drops
-- the old table. It is one transaction: if any step fails nothing changes.
-- Grants on the tables themselves are not carried over (Parley grants none;
-- analysts read the analytics views, whose grants stay).

CREATE FUNCTION pg_temp.partition_by_conversation(t text, parts int, fill int, constraints text[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    staged text := t || '_p';
    old    text := t || '_unpartitioned';
    views  text[] := '{}';
    v      record;
    c      text;
    i      int;
BEGIN
    EXECUTE format('LOCK TABLE %I IN EXCLUSIVE MODE', t);
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS)
                    PARTITION BY HASH (conversation_id)', staged, t);
    FOR i IN 0 .. parts - 1 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS %s, REMAINDER %s) WITH (fillfactor = %s)',
                       staged || lpad(i::text, 2, '0'), staged, parts, i, fill);
    END LOOP;
    EXECUTE format('INSERT INTO %I SELECT * FROM %I', staged, t);
    EXECUTE format('COMMENT ON TABLE %I IS %L', staged, obj_description(t::regclass, 'pg_class'));

    -- The text of every view over the table, taken while it still names t.
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

SELECT pg_temp.partition_by_conversation('messages', 16, 85, ARRAY[
    'CONSTRAINT messages_pkey PRIMARY KEY (conversation_id, seq)',
    'CONSTRAINT messages_conversation_id_sender_id_client_msg_id_key UNIQUE (conversation_id, sender_id, client_msg_id)',
    'CONSTRAINT messages_conversation_id_message_id_key UNIQUE (conversation_id, message_id)']);

SELECT pg_temp.partition_by_conversation('events', 16, 100, ARRAY[
    'CONSTRAINT events_pkey PRIMARY KEY (conversation_id, seq)']);

DROP FUNCTION pg_temp.partition_by_conversation(text, int, int, text[]);

COMMENT ON COLUMN messages.message_id IS 'Server-assigned message id (unique; the constraint is on (conversation_id, message_id) because messages is partitioned by conversation).';
