CREATE INDEX messages_by_client_msg_id ON messages (sender_id, client_msg_id, conversation_id);
COMMENT ON COLUMN messages.client_msg_id IS 'Sender-chosen idempotency key, unique per (conversation, sender).';
