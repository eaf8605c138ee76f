-- Analytics of reactions (read-model migration 0009): the views so far stay
-- in point_analytics_threads, and point_analytics adds the reaction views.
ALTER FUNCTION point_analytics(text, text) RENAME TO point_analytics_threads;

CREATE FUNCTION point_analytics(dst text, src text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM parley.point_analytics_threads(dst, src);

    EXECUTE format('CREATE OR REPLACE VIEW %I.reactions AS SELECT * FROM %I.reactions', dst, src);

    -- Reactions added and removed per UTC day (from the log, so a reaction
    -- removed since still counts on its day), and who reacted.
    EXECUTE format($v$CREATE OR REPLACE VIEW %1$I.reactions_per_day AS
        SELECT (e.at AT TIME ZONE 'UTC')::date AS day,
               count(*) FILTER (WHERE e.type = 'chat.reaction_added.v1') AS added,
               count(*) FILTER (WHERE e.type = 'chat.reaction_removed.v1') AS removed,
               count(DISTINCT e.actor) FILTER (WHERE e.type = 'chat.reaction_added.v1') AS reactors
          FROM %2$I.events e
         WHERE e.type IN ('chat.reaction_added.v1', 'chat.reaction_removed.v1')
         GROUP BY 1$v$, dst, src);

    -- Messages by the reactions they hold now, most first.
    EXECUTE format($v$CREATE OR REPLACE VIEW %1$I.most_reacted_messages AS
        SELECT r.conversation_id, r.message_id, m.sender_id, m.sent_at,
               count(*) AS reactions, count(DISTINCT r.user_id) AS reactors,
               rank() OVER (ORDER BY count(*) DESC) AS rank
          FROM %2$I.reactions r
          JOIN %2$I.messages m ON m.conversation_id = r.conversation_id AND m.message_id = r.message_id
         WHERE r.present
         GROUP BY r.conversation_id, r.message_id, m.sender_id, m.sent_at$v$, dst, src);
END
$fn$;
