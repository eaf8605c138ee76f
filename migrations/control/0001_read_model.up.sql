-- The control schema, applied with search_path=parley (chatctl migrate).
--
-- read_model: which schema each deployment's readers and projectors use.
-- A deployment is named by its bootstrap schema (CHAT_DB_SCHEMA). The
-- projector reads the pointer inside every batch transaction under a shared
-- advisory lock; a replay flips it under the exclusive lock, so every batch
-- lands entirely before or entirely after the switch (docs/read-models.md).
CREATE TABLE read_model (
    name             text        PRIMARY KEY,
    active_schema    text        NOT NULL,
    analytics_schema text        NOT NULL UNIQUE,
    previous_schema  text,
    switched_at      timestamptz NOT NULL DEFAULT now()
);

-- point_analytics (re)creates the analytics views of schema dst over the
-- read models of schema src. CREATE OR REPLACE keeps objects that analysts
-- built on top of the views; it runs inside the switch transaction, so the
-- views move with the pointer.
CREATE FUNCTION point_analytics(dst text, src text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', dst);

    EXECUTE format('CREATE OR REPLACE VIEW %I.conversations AS SELECT * FROM %I.conversations', dst, src);
    EXECUTE format('CREATE OR REPLACE VIEW %I.members AS SELECT * FROM %I.members', dst, src);
    EXECUTE format('CREATE OR REPLACE VIEW %I.messages AS SELECT * FROM %I.messages', dst, src);
    EXECUTE format('CREATE OR REPLACE VIEW %I.events AS SELECT * FROM %I.events', dst, src);
    EXECUTE format('CREATE OR REPLACE VIEW %I.unread_counts AS SELECT * FROM %I.unread_counts', dst, src);
    EXECUTE format('CREATE OR REPLACE VIEW %I.read_cursors AS SELECT * FROM %I.read_cursors', dst, src);

    -- Every join and leave, including the members a conversation was created with.
    EXECUTE format($v$CREATE OR REPLACE VIEW %1$I.membership_changes AS
        SELECT e.conversation_id, u.user_id, e.seq, 'joined'::text AS change, e.at
          FROM %2$I.events e CROSS JOIN LATERAL jsonb_array_elements_text(e.data -> 'members') AS u(user_id)
         WHERE e.type = 'chat.conversation_created.v1'
        UNION ALL
        SELECT e.conversation_id, e.data ->> 'user_id', e.seq,
               CASE e.type WHEN 'chat.member_joined.v1' THEN 'joined' ELSE 'left' END, e.at
          FROM %2$I.events e
         WHERE e.type IN ('chat.member_joined.v1', 'chat.member_left.v1')$v$, dst, src);

    -- Messages sent per UTC day and conversation (deleted ones included and counted apart).
    EXECUTE format($v$CREATE OR REPLACE VIEW %1$I.messages_per_day AS
        SELECT (m.sent_at AT TIME ZONE 'UTC')::date AS day,
               m.conversation_id,
               count(*) AS messages,
               count(*) FILTER (WHERE m.deleted) AS deleted,
               count(DISTINCT m.sender_id) AS senders
          FROM %2$I.messages m
         GROUP BY 1, 2$v$, dst, src);

    -- Users who caused at least one durable event (sent, edited, deleted,
    -- read, created, joined, left) per UTC day; senders: who sent a message.
    EXECUTE format($v$CREATE OR REPLACE VIEW %1$I.active_users_per_day AS
        SELECT (e.at AT TIME ZONE 'UTC')::date AS day,
               count(DISTINCT e.actor) AS active_users,
               count(DISTINCT e.actor) FILTER (WHERE e.type = 'chat.message_sent.v1') AS senders
          FROM %2$I.events e
         GROUP BY 1$v$, dst, src);

    -- A reply is a message whose predecessor (by seq) in the conversation
    -- was sent by someone else; reply_seconds is the time between the two.
    EXECUTE format($v$CREATE OR REPLACE VIEW %1$I.replies AS
        SELECT x.conversation_id, x.seq, x.message_id, x.sender_id, x.sent_at,
               x.prev_seq AS replied_to_seq, x.prev_sender_id AS replied_to_sender_id,
               extract(epoch FROM x.sent_at - x.prev_sent_at)::double precision AS reply_seconds
          FROM (SELECT m.*,
                       lag(m.seq)       OVER w AS prev_seq,
                       lag(m.sender_id) OVER w AS prev_sender_id,
                       lag(m.sent_at)   OVER w AS prev_sent_at
                  FROM %2$I.messages m
                WINDOW w AS (PARTITION BY m.conversation_id ORDER BY m.seq)) x
         WHERE x.prev_sender_id IS NOT NULL AND x.prev_sender_id <> x.sender_id$v$, dst, src);

    EXECUTE format($v$CREATE OR REPLACE VIEW %1$I.reply_time_per_day AS
        SELECT (r.sent_at AT TIME ZONE 'UTC')::date AS day,
               count(*) AS replies,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY r.reply_seconds) AS median_reply_seconds,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY r.reply_seconds) AS p90_reply_seconds
          FROM %1$I.replies r
         GROUP BY 1$v$, dst);

    -- Conversations by messages sent (all time), with their current size.
    EXECUTE format($v$CREATE OR REPLACE VIEW %1$I.top_conversations AS
        SELECT c.conversation_id, c.kind, c.title,
               count(m.seq) AS messages,
               count(DISTINCT m.sender_id) AS senders,
               (SELECT count(*) FROM %2$I.members mb
                 WHERE mb.conversation_id = c.conversation_id AND mb.is_member) AS members,
               max(m.sent_at) AS last_message_at,
               rank() OVER (ORDER BY count(m.seq) DESC) AS rank
          FROM %2$I.conversations c
          LEFT JOIN %2$I.messages m ON m.conversation_id = c.conversation_id
         GROUP BY c.conversation_id$v$, dst, src);

    EXECUTE format('COMMENT ON SCHEMA %I IS %L', dst,
        'Analytics views over the active read-model schema ' || src || '; repointed by every replay switch.');
END
$fn$;
