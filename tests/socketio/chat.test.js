// Two official socket.io-client sockets on two different nodes chat.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { NODE1, NODE2, connect, connectError, group, uid } from "./lib.js";

const open = [];
after(() => open.forEach((c) => c.close()));

test("two clients on two nodes chat, and acks carry seqs", async () => {
  // Default transports: long-polling first, then the upgrade to WebSocket.
  const alice = await connect(NODE1, uid("alice"));
  const bob = await connect(NODE2, uid("bob"));
  open.push(alice, bob);

  const conv = await group(alice, bob);
  assert.ok(conv.last_seq > 0, "conversation.create's ack carries the conversation's seq");
  const created = bob.of("conversation.created")[0];
  assert.equal(created.seq, conv.last_seq, "the push's seq is the ack's");

  const acked = [];
  for (let i = 0; i < 10; i++) {
    const { message } = await alice.call("message.send", {
      conversation_id: conv.conversation_id,
      client_msg_id: `m${i}`,
      body: `hello ${i}`,
    });
    assert.equal(message.body, `hello ${i}`);
    if (acked.length) assert.ok(message.seq > acked.at(-1), "ack seqs increase");
    acked.push(message.seq);
  }
  const got = await bob.until("10 messages", (evs) => {
    const ms = evs.filter((e) => e.type === "message.new" && e.data.conversation_id === conv.conversation_id);
    return ms.length >= 10 && ms;
  });
  assert.deepEqual(
    got.map((e) => e.data.seq),
    acked,
    "bob gets every message once, in seq order, with the acked seqs",
  );
  assert.deepEqual(got.map((e) => e.seq), acked, "the second argument carries the event's seq");
  assert.equal(got[3].data.body, "hello 3");
  assert.equal(got[3].data.sender_id, alice.user);

  const { message: reply } = await bob.call("message.send", {
    conversation_id: conv.conversation_id,
    client_msg_id: "r1",
    body: "hi alice",
  });
  await alice.until("bob's reply", () => alice.of("message.new").find((e) => e.data.message_id === reply.message_id));

  // Both clients moved onto WebSocket while chatting.
  for (const c of [alice, bob]) {
    if (c.socket.io.engine.transport.name !== "websocket") {
      await new Promise((r) => c.socket.io.engine.once("upgrade", r));
    }
    assert.equal(c.socket.io.engine.transport.name, "websocket");
  }

  // history reads the Postgres read model, which the projector fills in
  // batches: poll (bounded) until it has caught up with the reply.
  let seqs = [];
  for (let i = 0; i < 400 && seqs.at(-1) !== reply.seq; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 50));
    seqs = (await bob.call("history", { conversation_id: conv.conversation_id })).messages.map((m) => m.seq);
  }
  assert.deepEqual(seqs, [...acked, reply.seq]);
});

test("commands answer errors in the ack", async () => {
  const carol = await connect(NODE1, uid("carol"));
  open.push(carol);
  await assert.rejects(carol.call("message.send", { conversation_id: "nope", client_msg_id: "x", body: "b" }), {
    code: "not_found",
  });
  await assert.rejects(carol.call("no.such.command", {}), { code: "bad_request" });
  await assert.rejects(carol.call("message.send", { conversation_id: 7 }), { code: "bad_request" });
  const { conversations } = await carol.call("conversation.list");
  assert.deepEqual(conversations, []);
});

test("a bad or missing token gets connect_error", async () => {
  const bad = await connectError(NODE1, { auth: { token: "not-a-jwt" } });
  assert.match(bad.message, /token/i);
  assert.equal(bad.data.code, "unauthorized");

  const missing = await connectError(NODE2, {});
  assert.equal(missing.data.code, "unauthorized");

  const ns = await connectError(`${NODE1}/nope`, { auth: { token: "x" } });
  assert.equal(ns.message, "Invalid namespace");
});
