// After the server cuts its transport, the client reconnects by itself and
// gets what it missed through sync, once and in order.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { NODE1, NODE2, Proxy, connect, group, kill, uid } from "./lib.js";

const open = [];
const proxies = [];
after(async () => {
  open.forEach((c) => c.close());
  for (const p of proxies) await p.stop();
});

for (const transports of [["websocket"], ["polling"]]) {
  test(`reconnect and sync after the server kills the ${transports[0]} transport`, async () => {
    // bob reaches node 2 through a gate: closed, it refuses bob's reconnects
    // until the messages he must miss have been sent.
    const gate = await new Proxy([NODE2]).start();
    proxies.push(gate);
    const alice = await connect(NODE1, uid("alice"));
    const bob = await connect(gate.url, uid("bob"), { transports });
    const carol = await connect(NODE2, uid("carol")); // a witness on bob's node
    open.push(alice, bob, carol);


    const conv = await group(alice, bob, carol);
    const id = conv.conversation_id;
    const send = async (i) =>
      (await alice.call("message.send", { conversation_id: id, client_msg_id: `k${i}`, body: `n${i}` })).message;
    const before = [await send(0), await send(1)];
    await bob.until("the first messages", () => bob.of("message.new", id).length === 2);

    gate.open = false;
    const disconnected = new Promise((r) => bob.socket.once("disconnect", r));
    assert.ok((await kill(bob.user)) >= 1, "the node had bob's connection");
    const reason = await disconnected;
    assert.match(reason, /transport (close|error)/);

    const missed = [];
    for (let i = 2; i < 7; i++) missed.push(await send(i));
    // Node 2 has handed out the last one (to carol): it is in no live
    // delivery bob could still get; he can only get it through sync.
    await carol.until("the last missed message", () =>
      carol.of("message.new", id).find((e) => e.data.message_id === missed.at(-1).message_id),
    );
    gate.open = true;

    // sync waits for the read model to catch up with the log (and is
    // retried while it answers "unavailable"): allow for a loaded machine.
    await bob.until("the missed messages", () => bob.of("message.new", id).length >= 7, 60000);
    const after1 = await send(7); // and live delivery goes on
    const got = await bob.until("the live message", () => {
      const ms = bob.of("message.new", id);
      return ms.at(-1)?.data.message_id === after1.message_id && ms;
    });
    assert.deepEqual(
      got.map((e) => e.data.seq),
      [...before, ...missed, after1].map((m) => m.seq),
      "every message once, in seq order",
    );
    // bob's client syncs on every connection (lib.js): once at the start,
    // once after the reconnection.
    assert.equal(bob.syncs.length, 2, "bob reconnected once");
    const { positions } = await bob.syncs[1];
    assert.ok(positions[id] >= missed.at(-1).seq, "sync's positions cover what was missed");
    assert.ok(bob.socket.connected);
  });
}
