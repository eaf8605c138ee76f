-- Replies (protocol "Extensions": message.send's reply_to, the thread
-- command). A reply names a message of its own conversation; the thread of
-- a message is read newest first by (conversation_id, reply_to, seq), so
-- the index holds only replies.
ALTER TABLE messages ADD COLUMN reply_to text;
CREATE INDEX messages_replies ON messages (conversation_id, reply_to, seq) WHERE reply_to IS NOT NULL;
COMMENT ON COLUMN messages.reply_to IS 'message_id of the message this one replies to (same conversation), or NULL';
