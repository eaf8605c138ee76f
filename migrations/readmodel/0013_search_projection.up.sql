-- Search gets its own table, written by the projector's second stage on
-- its own connection (docs/architecture.md "Search, its own projection"). The
-- GIN index over the messages' bodies cost every message insert a
-- to_tsvector and a GIN entry, and made every edit and delete a non-HOT
-- update of every messages index: a quarter of the projector's time
-- (docs/benchmarks.md, "Session 21"). Here the history projection writes
-- messages without it, and search follows on a second backend.
--
-- One row per message: tsv is to_tsvector(parley_search, body) of the
-- latest body, NULL once the message is deleted (a tombstone, so a
-- duplicate produce after the delete cannot bring the words back). Not
-- partitioned: a search across a user's conversations reads one GIN index
-- instead of sixteen.
CREATE TABLE message_search (
    conversation_id text NOT NULL,
    message_id      text NOT NULL,
    tsv             tsvector,
    PRIMARY KEY (conversation_id, message_id)
);
COMMENT ON TABLE message_search IS 'Full-text search over message bodies, one row per message: tsv is to_tsvector(parley_search, body) of its latest body, NULL once deleted. Written by the projector''s search stage, on its own connection: it may be a batch behind messages.';

-- The search stage's place in the log, as projector_offsets is the
-- projector's: committed with its rows.
CREATE TABLE search_offsets (
    topic       text   NOT NULL,
    partition   int    NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- Filled from the messages as they are, at the projector's offsets. A
-- projector of an older release may be writing: once this lock is held no
-- batch that writes messages is in flight, and none can commit before this
-- migration does (it waits here; readers go on). A batch that commits
-- meanwhile writes no message, so the offsets copied below, whether before
-- or after it, put nothing of search's between them and the copy. Locking
-- projector_offsets too would deadlock with a batch that inserted a
-- partition's first offsets row.
LOCK TABLE messages IN SHARE MODE;
INSERT INTO message_search
    SELECT conversation_id, message_id, CASE WHEN deleted THEN NULL ELSE to_tsvector('parley_search', body) END
      FROM messages;
INSERT INTO search_offsets SELECT topic, partition, next_offset FROM projector_offsets;
CREATE INDEX message_search_tsv ON message_search USING gin (tsv);

DROP INDEX messages_search;
