// Reactions, replies and threads over Socket.IO, across the two nodes
// (PROTOCOL.md "Extensions").
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { NODE1, NODE2, connect, group, uid } from "./lib.js";

const open = [];
after(() => open.forEach((c) => c.close()));

test("reactions, a reply and its thread over Socket.IO", async () => {
  const alice = await connect(NODE1, uid("alice"));
  const bob = await connect(NODE2, uid("bob"));
  open.push(alice, bob);
  const conv = await group(alice, bob);
  const id = conv.conversation_id;
  const { message: root } = await alice.call("message.send", { conversation_id: id, client_msg_id: "r0", body: "lunch?" });

  const { message: reacted } = await bob.call("message.react", { conversation_id: id, message_id: root.message_id, emoji: "🍕" });
  assert.deepEqual(reacted.reactions, { "🍕": [bob.user] });
  const added = await alice.until("reaction.added", (evs) => evs.find((e) => e.type === "reaction.added"));
  assert.equal(added.data.user_id, bob.user);
  assert.equal(added.data.emoji, "🍕");
  assert.ok(added.seq > root.seq, "the event's seq comes after the message's");

  const { message: reply } = await bob.call("message.send", {
    conversation_id: id, client_msg_id: "r1", body: "yes", reply_to: root.message_id,
  });
  assert.equal(reply.reply_to, root.message_id);
  const pushed = await alice.until("the reply", (evs) =>
    evs.find((e) => e.type === "message.new" && e.data.message_id === reply.message_id));
  assert.equal(pushed.data.reply_to, root.message_id);

  const thread = await alice.call("thread", { conversation_id: id, message_id: root.message_id });
  assert.equal(thread.root.message_id, root.message_id);
  assert.deepEqual(thread.messages.map((m) => m.message_id), [reply.message_id]);

  const bad = await bob.call("message.react", { conversation_id: id, message_id: root.message_id, emoji: "ab" }).catch((e) => e);
  assert.equal(bad.code, "bad_request");
});
