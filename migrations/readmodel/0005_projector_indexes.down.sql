-- Back to UNIQUE (conversation_id, sender_id, client_msg_id). Rows that
-- repeat a client_msg_id under another message id (kept since 0005) are
-- dropped first, keeping the first by seq, as the unique index did.
DELETE FROM messages m USING messages f
 WHERE f.conversation_id = m.conversation_id AND f.sender_id = m.sender_id
   AND f.client_msg_id = m.client_msg_id AND f.seq < m.seq;
DROP INDEX messages_by_client_msg_id;
ALTER TABLE messages ADD CONSTRAINT messages_conversation_id_sender_id_client_msg_id_key
    UNIQUE (conversation_id, sender_id, client_msg_id);
