-- messages_by_client_msg_id goes (issue 14). The idempotent send's
-- fallback (after Redis lost a send's record, or a node was presumed dead)
-- finds a send by its message id: commands derive it from the conversation,
-- the sender, the client_msg_id and the idempotency window the send was
-- claimed in (domain.SendMessageID), and read it through the
-- (conversation_id, message_id) key (projections.Store.SentMessage). The
-- index cost every message insert an entry, a fifth of its time in
-- BenchmarkProjector (docs/benchmarks.md, "Session 15").
--
-- Messages sent before this version have random ids: a retry of one of them
-- within the idempotency window (48 h) that finds no record in Redis (a
-- Redis data loss) can no longer find it, and is appended again, as when
-- the read model is down (docs/reliability.md). The runbook says when to
-- upgrade.
DROP INDEX messages_by_client_msg_id;
COMMENT ON COLUMN messages.client_msg_id IS 'Sender-chosen idempotency key: a resend within the idempotency window (at least 24 h) returns the first message. Not indexed: the send path finds a send by its message_id, derived from (conversation, sender, client_msg_id, window).';
