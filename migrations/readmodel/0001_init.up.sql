-- Read models, written only by the projector. seq is the event's offset in
-- its Kafka partition: one order per conversation, the same everywhere.

CREATE TABLE conversations (
    conversation_id  text        PRIMARY KEY,
    kind             text        NOT NULL CHECK (kind IN ('direct', 'group')),
    title            text        NOT NULL DEFAULT '',
    created_by       text        NOT NULL,
    created_at       timestamptz NOT NULL,
    created_seq      bigint      NOT NULL,
    last_seq         bigint      NOT NULL,
    last_message_seq bigint,
    last_activity_at timestamptz NOT NULL
);

CREATE TABLE members (
    conversation_id text        NOT NULL,
    user_id         text        NOT NULL,
    is_member       boolean     NOT NULL,
    joined_at       timestamptz,
    joined_seq      bigint,
    left_at         timestamptz,
    left_seq        bigint,
    change_seq      bigint      NOT NULL,
    read_seq        bigint      NOT NULL DEFAULT -1,
    read_at         timestamptz,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id, conversation_id) WHERE is_member;

CREATE TABLE messages (
    conversation_id text        NOT NULL,
    seq             bigint      NOT NULL,
    message_id      text        NOT NULL UNIQUE,
    sender_id       text        NOT NULL,
    client_msg_id   text        NOT NULL,
    body            text        NOT NULL,
    sent_at         timestamptz NOT NULL,
    edited_at       timestamptz,
    deleted         boolean     NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    version_seq     bigint      NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, client_msg_id)
);

-- Every durable event, so sync can replay what a client missed.
CREATE TABLE events (
    conversation_id text        NOT NULL,
    seq             bigint      NOT NULL,
    event_id        text        NOT NULL,
    type            text        NOT NULL,
    actor           text        NOT NULL,
    at              timestamptz NOT NULL,
    data            jsonb       NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

-- Where the projector is in each partition; written in the same transaction
-- as the rows, so a redelivered event is recognised and skipped.
CREATE TABLE projector_offsets (
    topic       text   NOT NULL,
    partition   int    NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
