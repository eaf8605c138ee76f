DROP VIEW events;
ALTER INDEX event_log_pkey RENAME TO events_pkey;
ALTER TABLE event_log RENAME TO events;
INSERT INTO events (conversation_id, seq, event_id, type, actor, at, data)
SELECT conversation_id, seq, event_id, 'chat.message_sent.v1', sender_id, sent_at,
       jsonb_build_object('message_id', message_id, 'client_msg_id', client_msg_id, 'body', coalesce(sent_body, body))
       || CASE WHEN reply_to IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('reply_to', reply_to) END
  FROM messages
 WHERE event_id IS NOT NULL;
ALTER TABLE messages DROP COLUMN sent_body;
ALTER TABLE messages DROP COLUMN event_id;
