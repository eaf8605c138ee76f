CREATE INDEX messages_search ON messages USING gin (to_tsvector('parley_search'::regconfig, body));
DROP TABLE search_offsets;
DROP TABLE message_search;
