-- Reactions (protocol "Extensions": message.react, message.unreact). One
-- row per (message, user, emoji) ever reacted; a removal keeps the row with
-- present = false, so that a later event decides by change_seq whatever
-- order batches arrive in (as members.is_member does).
CREATE TABLE reactions (
    conversation_id text        NOT NULL,
    message_id      text        NOT NULL,
    user_id         text        NOT NULL,
    emoji           text        NOT NULL,
    present         boolean     NOT NULL,
    change_seq      bigint      NOT NULL,
    changed_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, message_id, user_id, emoji)
) WITH (fillfactor = 80);
COMMENT ON TABLE reactions IS 'Emoji reactions: present = the user currently has this reaction on the message; change_seq = seq of the reaction_added/removed event that set it';
