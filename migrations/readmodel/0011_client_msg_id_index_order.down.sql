DROP INDEX messages_by_client_msg_id;
CREATE INDEX messages_by_client_msg_id ON messages (conversation_id, sender_id, client_msg_id);
