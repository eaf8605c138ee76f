DROP TABLE IF EXISTS projector_offsets, events, messages, members, conversations;
