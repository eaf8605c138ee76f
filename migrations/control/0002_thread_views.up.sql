-- Analytics of explicit replies (message.send's reply_to, read-model
-- migration 0008): the views of 0001 stay as they are, in
-- point_analytics_base, and point_analytics adds the thread views.
ALTER FUNCTION point_analytics(text, text) RENAME TO point_analytics_base;

CREATE FUNCTION point_analytics(dst text, src text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM parley.point_analytics_base(dst, src);

    -- Every explicit reply with the message it answers and how long after.
    EXECUTE format($v$CREATE OR REPLACE VIEW %1$I.thread_replies AS
        SELECT r.conversation_id, r.seq, r.message_id, r.sender_id, r.sent_at,
               p.message_id AS parent_id, p.seq AS parent_seq, p.sender_id AS parent_sender_id,
               extract(epoch FROM r.sent_at - p.sent_at)::double precision AS response_seconds
          FROM %2$I.messages r
          JOIN %2$I.messages p ON p.conversation_id = r.conversation_id AND p.message_id = r.reply_to
         WHERE r.reply_to IS NOT NULL$v$, dst, src);

    -- Per thread (a message that is not itself a reply, with at least one
    -- reply below it): replies at any depth, the deepest chain, the time to
    -- the first direct reply and the last reply.
    EXECUTE format($v$CREATE OR REPLACE VIEW %1$I.threads AS
        WITH RECURSIVE chain AS (
            SELECT m.conversation_id, m.message_id, m.message_id AS root_id, 0 AS depth, m.sent_at
              FROM %2$I.messages m
             WHERE m.reply_to IS NULL
               AND EXISTS (SELECT 1 FROM %2$I.messages x WHERE x.conversation_id = m.conversation_id AND x.reply_to = m.message_id)
            UNION ALL
            SELECT r.conversation_id, r.message_id, c.root_id, c.depth + 1, r.sent_at
              FROM %2$I.messages r
              JOIN chain c ON r.conversation_id = c.conversation_id AND r.reply_to = c.message_id
        )
        SELECT c.conversation_id, c.root_id,
               count(*) FILTER (WHERE c.depth > 0) AS replies,
               max(c.depth) AS max_depth,
               extract(epoch FROM min(c.sent_at) FILTER (WHERE c.depth = 1) - min(c.sent_at) FILTER (WHERE c.depth = 0))::double precision
                   AS first_reply_seconds,
               max(c.sent_at) AS last_reply_at
          FROM chain c
         GROUP BY c.conversation_id, c.root_id$v$, dst, src);

    -- Explicit replies per UTC day and how fast they came.
    EXECUTE format($v$CREATE OR REPLACE VIEW %1$I.thread_response_per_day AS
        SELECT (r.sent_at AT TIME ZONE 'UTC')::date AS day,
               count(*) AS replies,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY r.response_seconds) AS median_response_seconds,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY r.response_seconds) AS p90_response_seconds
          FROM %1$I.thread_replies r
         GROUP BY 1$v$, dst);
END
$fn$;
