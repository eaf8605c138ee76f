-- The projector's write path (issue 14): one unique index per fact that
-- needs one.
--
-- messages kept UNIQUE (conversation_id, sender_id, client_msg_id). The
-- projector's ON CONFLICT DO NOTHING then checked all three unique indexes
-- of every message before inserting it (and again while inserting), and
-- the uniqueness itself guarded nothing the log needs: the idempotent send
-- (commands/) gives a client_msg_id one message id while its record lives,
-- and a duplicate produce of that message repeats the message id, which
-- UNIQUE (conversation_id, message_id) collapses. Where the log does hold
-- two message ids for one client_msg_id (a resend after the 24 h
-- idempotency window, or after Redis lost the record while the read model
-- was down), both were acked and pushed live: the unique index silently
-- dropped the second from history while sync still replayed its event.
-- A plain index keeps the lookup (MessageByClientID, the first by seq).
ALTER TABLE messages DROP CONSTRAINT messages_conversation_id_sender_id_client_msg_id_key;
CREATE INDEX messages_by_client_msg_id ON messages (conversation_id, sender_id, client_msg_id);
