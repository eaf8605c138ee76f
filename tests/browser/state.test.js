// Unit tests of the client's state rules (transport/web/static/js/state.js):
// exactly-once application of pushes, pending sends, unread counts, receipts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatState } from '../../transport/web/static/js/state.js';

const conv = (over = {}) => ({
  conversation_id: 'c1', kind: 'group', title: 'T', members: ['alice', 'bob'],
  created_at: '2026-01-01T00:00:00Z', last_seq: 10, unread: 0, ...over,
});
const msg = (seq, over = {}) => ({
  conversation_id: 'c1', message_id: `m${seq}`, seq, sender_id: 'bob', client_msg_id: `k${seq}`,
  body: `hello ${seq}`, sent_at: `2026-01-01T00:00:${String(seq % 60).padStart(2, '0')}Z`, deleted: false, ...over,
});
const push = (type, seq, data) => ({ type, seq, data });

test('a durable push at or below the position is applied once', () => {
  const s = new ChatState('alice');
  const [c] = s.upsert(conv());
  assert.equal(s.apply(push('message.new', 12, msg(12))).type, 'message');
  assert.equal(s.apply(push('message.new', 12, msg(12))).type, 'dup');
  assert.equal(s.apply(push('message.new', 9, msg(9))).type, 'dup');
  assert.equal(c.position, 12);
  assert.equal(c.unread, 1);
  assert.deepEqual(c.list().map((m) => m.seq), [12]);
  assert.deepEqual(s.positions(), { c1: 12 });
});

test('history and pushes merge by message_id, in seq order', () => {
  const s = new ChatState('alice');
  const [c] = s.upsert(conv());
  s.apply(push('message.new', 14, msg(14)));
  s.mergeHistory(c, [msg(3), msg(7), msg(14)], true);
  assert.deepEqual(c.list().map((m) => m.seq), [3, 7, 14]);
  assert.equal(c.oldestLoaded, 3);
  assert.equal(c.hasMore, true);
  s.mergeHistory(c, [msg(1)], false);
  assert.deepEqual(c.list().map((m) => m.seq), [1, 3, 7, 14]);
  assert.equal(c.hasMore, false);
});

test('an ack does not move the position; its push still applies, once', () => {
  const s = new ChatState('alice');
  const [c] = s.upsert(conv());
  const p = s.addPending(c, 'hi', 'cm-1');
  assert.equal(p.state, 'sending');
  const mine = msg(20, { sender_id: 'alice', client_msg_id: 'cm-1', body: 'hi' });
  s.applyAck(c, mine);
  assert.equal(c.pending.size, 0);
  assert.equal(c.position, 10, 'an ack can overtake earlier pushes');
  s.apply(push('message.new', 15, msg(15)));
  s.apply(push('message.new', 20, mine));
  assert.deepEqual(c.list().map((m) => m.seq), [15, 20]);
  assert.equal(c.unread, 1, 'own messages are never unread');
});

test('a push of my message clears the pending send it matches', () => {
  const s = new ChatState('alice');
  const [c] = s.upsert(conv());
  s.addPending(c, 'yo', 'cm-2');
  s.apply(push('message.new', 11, msg(11, { sender_id: 'alice', client_msg_id: 'cm-2', body: 'yo' })));
  assert.equal(c.pending.size, 0);
  assert.equal(c.list().length, 1);
});

test('edits keep the newest body; deletes stick and uncount unread', () => {
  const s = new ChatState('alice');
  const [c] = s.upsert(conv());
  s.apply(push('message.new', 11, msg(11)));
  s.apply(push('message.new', 12, msg(12)));
  assert.equal(c.unread, 2);
  s.apply(push('message.edited', 13, msg(11, { body: 'v2', edited_at: '2026-01-01T00:01:00Z' })));
  s.mergeHistory(c, [msg(11, { body: 'v1', edited_at: '2026-01-01T00:00:30Z' })], false); // older copy
  assert.equal(c.messages.get('m11').body, 'v2');
  s.apply(push('message.deleted', 14, { conversation_id: 'c1', message_id: 'm12', seq: 14, message_seq: 12 }));
  assert.equal(c.messages.get('m12').deleted, true);
  assert.equal(c.unread, 1);
  s.mergeHistory(c, [msg(12)], false); // a stale page cannot undelete
  assert.equal(c.messages.get('m12').deleted, true);
});

test('read pushes drive receipts and my unread count', () => {
  const s = new ChatState('alice');
  const [c] = s.upsert(conv({ unread: 0 }));
  s.apply(push('message.new', 11, msg(11)));
  s.apply(push('message.new', 12, msg(12, { sender_id: 'alice' })));
  s.apply(push('read', 13, { conversation_id: 'c1', user_id: 'bob', up_to_seq: 12, seq: 13 }));
  assert.deepEqual(c.seenBy(12, 'alice'), ['bob']);
  assert.equal(c.unread, 1);
  s.apply(push('read', 14, { conversation_id: 'c1', user_id: 'alice', up_to_seq: 12, seq: 14 }));
  assert.equal(c.unread, 0);
});

test('typing is ephemeral; my own leave removes the conversation', () => {
  const s = new ChatState('alice');
  s.upsert(conv());
  const t = s.apply({ type: 'typing', data: { conversation_id: 'c1', user_id: 'bob' } });
  assert.equal(t.type, 'typing');
  assert.equal(s.convs.get('c1').position, 10);
  assert.equal(s.apply({ type: 'typing', data: { conversation_id: 'c1', user_id: 'alice' } }).type, 'ignored');
  assert.equal(s.apply(push('member.left', 15, { conversation_id: 'c1', user_id: 'alice', seq: 15 })).type, 'removed');
  assert.equal(s.convs.size, 0);
});

test('pushes of an unknown conversation are reported, not applied', () => {
  const s = new ChatState('alice');
  assert.equal(s.apply(push('message.new', 5, msg(5, { conversation_id: 'zz' }))).type, 'unknown');
  const r = s.apply(push('conversation.created', 7, { conversation: conv({ conversation_id: 'c9', last_seq: 7 }), seq: 7 }));
  assert.equal(r.type, 'conversation');
  assert.equal(s.convs.get('c9').position, 7);
  const j = s.apply(push('member.joined', 30, { conversation_id: 'c5', user_id: 'alice', seq: 30 }));
  assert.equal(j.type, 'members');
  assert.equal(s.convs.get('c5').placeholder, true);
  assert.equal(s.convs.get('c5').position, 30);
});

test('read cursors from conversation.list give receipts at once', () => {
  const s = new ChatState('alice');
  const [c] = s.upsert(conv({ members: ['alice', 'bob', 'carol'], read_seqs: { bob: 9, carol: 4, alice: 8 }, last_message: msg(9, { sender_id: 'alice' }) }));
  assert.deepEqual(c.seenBy(9, 'alice'), ['bob']);
  assert.deepEqual(c.seenBy(4, 'alice'), ['bob', 'carol']);
  assert.equal(c.myRead, 8);
});
