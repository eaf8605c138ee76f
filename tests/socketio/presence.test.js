// Presence over Socket.IO, across the two nodes: the `presence` event and
// presence.query (PROTOCOL.md "Extensions").
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { NODE1, NODE2, connect, group, uid } from "./lib.js";

const open = [];
after(() => open.forEach((c) => c.close()));

test("a contact's presence is pushed and queried across nodes", async () => {
  const alice = await connect(NODE1, uid("alice"));
  const bob = await connect(NODE2, uid("bob"));
  open.push(alice, bob);
  await group(alice, bob);
  // Contacts come from the read model: wait until it holds the group.
  for (let i = 0; i < 400; i++) {
    const { presence } = await bob.call("presence.query", { user_ids: [alice.user] });
    if (presence[0].status === "online") break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const stranger = uid("mallory");
  const { presence } = await bob.call("presence.query", { user_ids: [alice.user, stranger] });
  assert.deepEqual(presence.map((p) => [p.user_id, p.status]), [[alice.user, "online"], [stranger, "offline"]]);
  assert.equal(presence[1].last_seen, undefined, "a stranger's last_seen is not told");

  alice.close();
  const off = await bob.until("alice offline", (evs) =>
    evs.find((e) => e.type === "presence" && e.data.user_id === alice.user && e.data.status === "offline"),
  );
  assert.ok(Date.parse(off.data.last_seen) > 0, "offline carries last_seen");

  const again = await connect(NODE1, alice.user);
  open.push(again);
  await bob.until("alice online again", (evs) =>
    evs.find((e) => e.type === "presence" && e.data.user_id === alice.user && e.data.status === "online"),
  );
  const err = await bob.call("presence.query", { user_ids: [] }).catch((e) => e);
  assert.equal(err.code, "bad_request");
});
