-- A message_sent event is the messages row: storing it a second time in
-- events (a heap row, a jsonb copy of the payload and a primary-key entry)
-- was a sixth of the projector's Postgres time per message
-- (docs/benchmarks.md). The projector now writes a message's event id on
-- its row, keeps the body as sent when an edit or delete changes it, and
-- stores every other event in event_log. events, the view below, is the
-- whole log as before: same columns, same rows, same data, for sync and
-- for analysts.
--
-- Rows written before this migration keep their message_sent in event_log
-- and a NULL event_id, so nothing is copied and the view shows each event
-- once. A message_sent whose payload the projector cannot rebuild exactly
-- (another encoding, a field it does not know), and the second event of a
-- duplicate produce (no row of its own), stay in event_log too.
ALTER TABLE messages ADD COLUMN event_id text;
ALTER TABLE messages ADD COLUMN sent_body text;
ALTER TABLE events RENAME TO event_log;
ALTER INDEX events_pkey RENAME TO event_log_pkey;

CREATE VIEW events AS
SELECT conversation_id, seq, event_id, type, actor, at, data FROM event_log
UNION ALL
SELECT conversation_id, seq, event_id, 'chat.message_sent.v1'::text, sender_id, sent_at,
       jsonb_build_object('message_id', message_id, 'client_msg_id', client_msg_id, 'body', coalesce(sent_body, body))
       || CASE WHEN reply_to IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('reply_to', reply_to) END
  FROM messages
 WHERE event_id IS NOT NULL;

COMMENT ON TABLE event_log IS 'Every durable event except the message_sent events folded into messages (messages.event_id); read the events view for the whole log';
COMMENT ON VIEW events IS 'Every durable event in seq order per conversation: event_log plus the message_sent events of messages rows';
COMMENT ON COLUMN messages.event_id IS 'id of the message_sent event this row was projected from (NULL: that event is in event_log)';
COMMENT ON COLUMN messages.sent_body IS 'the body as sent, once an edit or delete changed body (NULL: body is as sent)';
COMMENT ON COLUMN events.event_id IS 'Event id, unique per produced event.';
COMMENT ON COLUMN events.type IS 'Versioned event type, e.g. chat.message_sent.v1.';
COMMENT ON COLUMN events.actor IS 'User who caused the event.';
COMMENT ON COLUMN events.at IS 'Time the server accepted the command (UTC).';
COMMENT ON COLUMN events.data IS 'The event payload as JSON.';
