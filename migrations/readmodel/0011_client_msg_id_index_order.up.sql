-- messages_by_client_msg_id no longer leads with conversation_id (issue
-- 14). The projector's statements are prepared once per connection with
-- generic plans (projections/replay_active.go), and on a fresh schema the
-- planner prices every index that starts with conversation_id alike: the
-- edit and delete statements, which join on (conversation_id, message_id),
-- were planned on this index, matched conversation_id only and filtered
-- the whole conversation's messages for each edit, for as long as the
-- connection lived (53 µs an edit in BenchmarkProjector, and O(messages of
-- the conversation) at scale). Led by sender_id, the index serves only the
-- lookup it exists for (MessageByClientID: a partition's rows of one
-- sender's client_msg_id); the partition is already pruned by
-- conversation_id.
--
-- On a large read model this rebuilds the index of every partition while
-- the projector waits (CREATE INDEX locks out writes, not reads).
DROP INDEX messages_by_client_msg_id;
CREATE INDEX messages_by_client_msg_id ON messages (sender_id, client_msg_id, conversation_id);
