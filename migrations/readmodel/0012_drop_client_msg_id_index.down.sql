CREATE INDEX messages_by_client_msg_id ON messages (sender_id, client_msg_id, conversation_id);
