-- Fills schema zz_explain with the read model behind the plans in docs/read-models.md
-- ("Partitioning and query plans"). Run from the repository root:
--   psql -X postgres://localhost:5432/chat -f cluster/explain/setup.sql && psql -X postgres://localhost:5432/chat -f cluster/explain/queries.sql
-- Drop it afterwards: DROP SCHEMA zz_explain CASCADE;
\set ON_ERROR_STOP 1
DROP SCHEMA IF EXISTS zz_explain CASCADE;
CREATE SCHEMA zz_explain;
SET search_path = zz_explain;
\i migrations/readmodel/0001_init.up.sql
\i migrations/readmodel/0002_unread_and_docs.up.sql
\i migrations/readmodel/0003_fillfactor.up.sql
\i migrations/readmodel/0004_partition_by_conversation.up.sql
-- 5000 group conversations of 4 members among 2000 users; 400k messages
-- sent in random conversations (interleaved, as a live log is), one event each.
INSERT INTO conversations SELECT 'c'||c, 'group', 'title '||c, 'u'||(c % 2000), now() - interval '30 days', c, c, NULL, now() - interval '30 days'
  FROM generate_series(1, 5000) c;
INSERT INTO members (conversation_id, user_id, is_member, joined_at, joined_seq, change_seq, read_seq)
  SELECT 'c'||c, 'u'||((c * 7 + k * 501) % 2000), true, now() - interval '30 days', c, c, 0
  FROM generate_series(1, 5000) c, generate_series(0, 3) k ON CONFLICT DO NOTHING;
CREATE TEMP TABLE gen AS
  SELECT i, 'c'||(1 + (hashint4(i) & 2147483647) % 5000) AS conv FROM generate_series(1, 400000) i;
INSERT INTO messages SELECT g.conv, 10000 + g.i, 'm'||g.i, 'u'||((hashint4(g.i * 3) & 2147483647) % 2000), 'k'||g.i,
  repeat('x', 60 + g.i % 120), now() - interval '30 days' + g.i * interval '6 seconds', NULL, false, NULL, 10000 + g.i FROM gen g;
INSERT INTO events SELECT g.conv, 10000 + g.i, 'e'||g.i, 'chat.message_sent.v1', 'u1', now() - interval '30 days' + g.i * interval '6 seconds',
  jsonb_build_object('message_id', 'm'||g.i, 'client_msg_id', 'k'||g.i, 'body', repeat('x', 60 + g.i % 120)) FROM gen g;
UPDATE conversations c SET last_seq = x.s, last_message_seq = x.s, last_activity_at = now() - (x.s % 1000) * interval '1 minute'
  FROM (SELECT conversation_id, max(seq) s FROM messages GROUP BY 1) x WHERE x.conversation_id = c.conversation_id;
UPDATE members m SET read_seq = x.s FROM (SELECT conversation_id, max(seq) - 20 s FROM messages GROUP BY 1) x WHERE x.conversation_id = m.conversation_id;
VACUUM ANALYZE conversations, members, messages, events;
SELECT 'messages', count(*) FROM messages UNION ALL SELECT 'events', count(*) FROM events UNION ALL SELECT 'members', count(*) FROM members;
