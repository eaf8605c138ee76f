-- Unread counts as a view (not a maintained column): a read cursor, an edit
-- or a delete then changes no counter, so every event stays a cheap,
-- idempotent row write and a replay needs no extra pass. The count is what
-- conversation lists show: messages above the member's read cursor, sent by
-- someone else, not deleted.
CREATE VIEW unread_counts AS
SELECT mb.conversation_id,
       mb.user_id,
       mb.read_seq,
       (SELECT count(*) FROM messages x
         WHERE x.conversation_id = mb.conversation_id
           AND x.seq > mb.read_seq
           AND x.sender_id <> mb.user_id
           AND NOT x.deleted) AS unread
FROM members mb
WHERE mb.is_member;

-- Read cursors per member, for analysts who look for them by that name.
CREATE VIEW read_cursors AS
SELECT conversation_id, user_id, read_seq, read_at
FROM members
WHERE read_seq >= 0;

COMMENT ON TABLE conversations IS 'One row per conversation, from chat.conversation_created.v1; last_* follow every event of the conversation.';
COMMENT ON COLUMN conversations.conversation_id IS 'Conversation id (direct conversations: derived from the sorted member pair).';
COMMENT ON COLUMN conversations.kind IS 'direct or group.';
COMMENT ON COLUMN conversations.title IS 'Title given at creation; empty for direct conversations.';
COMMENT ON COLUMN conversations.created_by IS 'User who created the conversation.';
COMMENT ON COLUMN conversations.created_at IS 'Time of the creation event (UTC).';
COMMENT ON COLUMN conversations.created_seq IS 'Seq of the creation event.';
COMMENT ON COLUMN conversations.last_seq IS 'Seq of the newest durable event of the conversation (any type).';
COMMENT ON COLUMN conversations.last_message_seq IS 'Seq of the newest message (it may since have been deleted); NULL when none.';
COMMENT ON COLUMN conversations.last_activity_at IS 'Time of the event at last_seq.';

COMMENT ON TABLE members IS 'One row per (conversation, user) ever a member: the latest join and leave, and the read cursor.';
COMMENT ON COLUMN members.is_member IS 'True when the latest membership change is a join.';
COMMENT ON COLUMN members.joined_at IS 'Time of the latest join (creation counts as a join); NULL if never joined.';
COMMENT ON COLUMN members.joined_seq IS 'Seq of the latest join.';
COMMENT ON COLUMN members.left_at IS 'Time of the latest leave; NULL if never left.';
COMMENT ON COLUMN members.left_seq IS 'Seq of the latest leave.';
COMMENT ON COLUMN members.change_seq IS 'Seq of the latest membership change (join or leave).';
COMMENT ON COLUMN members.read_seq IS 'Read cursor: everything up to this seq is read; -1 when the user never marked anything read.';
COMMENT ON COLUMN members.read_at IS 'Time of the read event that set read_seq.';

COMMENT ON TABLE messages IS 'One row per message sent; edits overwrite body, deletes leave a tombstone (deleted, empty body).';
COMMENT ON COLUMN messages.seq IS 'Seq of the message_sent event: the message''s place in the conversation.';
COMMENT ON COLUMN messages.message_id IS 'Server-assigned message id.';
COMMENT ON COLUMN messages.sender_id IS 'User who sent it.';
COMMENT ON COLUMN messages.client_msg_id IS 'Sender-chosen idempotency key, unique per (conversation, sender).';
COMMENT ON COLUMN messages.body IS 'Current body (after the latest edit); empty once deleted.';
COMMENT ON COLUMN messages.sent_at IS 'Time the message was sent (UTC).';
COMMENT ON COLUMN messages.edited_at IS 'Time of the latest edit; NULL if never edited.';
COMMENT ON COLUMN messages.deleted IS 'True once deleted (tombstone).';
COMMENT ON COLUMN messages.deleted_at IS 'Time of the delete.';
COMMENT ON COLUMN messages.version_seq IS 'Seq of the event that last changed the row (sent, edited or deleted).';

COMMENT ON TABLE events IS 'Every durable event as logged, keyed by (conversation, seq); sync replays from here.';
COMMENT ON COLUMN events.event_id IS 'Event id, unique per produced event.';
COMMENT ON COLUMN events.type IS 'Versioned event type, e.g. chat.message_sent.v1.';
COMMENT ON COLUMN events.actor IS 'User who caused the event.';
COMMENT ON COLUMN events.at IS 'Time the server accepted the command (UTC).';
COMMENT ON COLUMN events.data IS 'The event payload as JSON.';

COMMENT ON TABLE projector_offsets IS 'Bookkeeping: next Kafka offset to apply per partition, written with the rows.';
COMMENT ON VIEW unread_counts IS 'Unread messages per current member: above read_seq, from others, not deleted.';
COMMENT ON VIEW read_cursors IS 'Read cursor of every member who marked something read.';
