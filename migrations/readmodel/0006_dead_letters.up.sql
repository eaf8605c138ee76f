-- Events a projector could not apply (data the read models cannot hold,
-- such as U+0000 in a text field, written before validation refused it):
-- set aside with where they are in the log and why, so that one event never
-- stops a projection (docs/reliability.md, "Set-aside events").
CREATE TABLE dead_letters (
    log_partition   integer     NOT NULL,
    log_offset      bigint      NOT NULL,
    conversation_id text        NOT NULL,
    event_id        text        NOT NULL,
    type            text        NOT NULL,
    payload         bytea       NOT NULL,
    error           text        NOT NULL,
    set_aside_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_partition, log_offset)
);
