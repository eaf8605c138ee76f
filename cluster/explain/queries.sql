-- The read queries of projections/queries.go (and the projector's edit batch) over cluster/explain/setup.sql.
SET search_path = zz_explain;
\echo '### history, newest page'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT conversation_id, message_id, seq, sender_id, client_msg_id, body, sent_at, edited_at, deleted FROM messages
 WHERE conversation_id='c42' ORDER BY seq DESC LIMIT 51;
\echo '### history, before_seq'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT conversation_id, message_id, seq, sender_id, client_msg_id, body, sent_at, edited_at, deleted FROM messages
 WHERE conversation_id='c42' AND seq<200000 ORDER BY seq DESC LIMIT 51;
\echo '### history, after_seq'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT conversation_id, message_id, seq, sender_id, client_msg_id, body, sent_at, edited_at, deleted FROM messages
 WHERE conversation_id='c42' AND seq>200000 ORDER BY seq LIMIT 51;
\echo '### sync: EventsAfter'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT seq, event_id, type, actor, at, data FROM events
 WHERE conversation_id='c42' AND seq>300000 ORDER BY seq LIMIT 500;
\echo '### conversation list: ConversationsOf'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT c.conversation_id, c.kind, c.title, c.created_at, c.last_seq,
	(SELECT coalesce(array_agg(m2.user_id ORDER BY m2.user_id), '{}') FROM members m2
	  WHERE m2.conversation_id=c.conversation_id AND m2.is_member),
		(SELECT count(*) FROM messages x WHERE x.conversation_id=c.conversation_id
		   AND x.seq>me.read_seq AND x.sender_id<>me.user_id AND NOT x.deleted),
		lm.message_id, lm.seq, lm.sender_id, lm.client_msg_id, lm.body, lm.sent_at, lm.edited_at, lm.deleted,
		(SELECT jsonb_object_agg(r.user_id, r.read_seq) FROM members r
		   WHERE r.conversation_id=c.conversation_id AND r.is_member AND r.read_seq >= 0)
		FROM members me
		JOIN conversations c ON c.conversation_id=me.conversation_id
		LEFT JOIN LATERAL (SELECT * FROM messages x WHERE x.conversation_id=c.conversation_id
		   AND x.seq<=c.last_message_seq ORDER BY x.seq DESC LIMIT 1) lm ON true
		WHERE me.user_id='u294' AND me.is_member
		ORDER BY c.last_activity_at DESC, c.conversation_id;
\echo '### membership: Memberships'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT user_id, is_member, change_seq FROM members WHERE conversation_id='c42';
\echo '### sync positions: LastSeqs'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT c.conversation_id, c.last_seq FROM members me
		JOIN conversations c ON c.conversation_id=me.conversation_id WHERE me.user_id='u294' AND me.is_member;
\echo '### idempotent send fallback: SentMessage'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT conversation_id, message_id, seq, sender_id, client_msg_id, body, sent_at, edited_at, deleted FROM messages
		WHERE conversation_id='c42' AND message_id = ANY('{m6719,m6720}'::text[]) AND sender_id='u1' AND client_msg_id='k42' ORDER BY seq LIMIT 1;
\echo '### edit/delete target: Message'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT conversation_id, message_id, seq, sender_id, client_msg_id, body, sent_at, edited_at, deleted FROM messages
		WHERE conversation_id='c42' AND message_id='m6719';
\echo '### generic plan (a prepared statement after 5 runs): pruning at executor start'
SET plan_cache_mode = force_generic_plan;
PREPARE hist(text, bigint, int) AS SELECT conversation_id, message_id, seq, sender_id, client_msg_id, body, sent_at, edited_at, deleted FROM messages
 WHERE conversation_id=$1 AND seq<$2 ORDER BY seq DESC LIMIT $3;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) EXECUTE hist('c42', 200000, 51);
SET plan_cache_mode = force_custom_plan;
\echo '### projector: a batch of edits (write path, by conversation_id and message_id)'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) UPDATE messages m SET body=v.body, edited_at=v.at, version_seq=v.seq
		FROM (SELECT DISTINCT ON (c, id) * FROM unnest('{m6719,m100,m200}'::text[], '{a,b,c}'::text[], '{500001,500002,500003}'::bigint[],
		      ARRAY[now(),now(),now()]::timestamptz[], '{c42,c4382,c1975}'::text[]) v(id, body, seq, at, c)
		      ORDER BY c, id, seq DESC) v
		WHERE m.conversation_id=v.c AND m.message_id=v.id AND m.version_seq < v.seq AND NOT m.deleted;
ROLLBACK;
