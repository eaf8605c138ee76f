// Transports: WebSocket only, long-polling only, and clients behind a proxy
// that sends every request to the other node (no sticky sessions).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { NODE1, NODE2, Proxy, connect, group, uid } from "./lib.js";

const open = [];
const proxies = [];
after(async () => {
  open.forEach((c) => c.close());
  for (const p of proxies) await p.stop();
});

// chat sends n messages from a to b and checks b gets them in order.
async function chat(a, b, n) {
  const conv = await group(a, b);
  const acked = [];
  for (let i = 0; i < n; i++) {
    const { message } = await a.call("message.send", {
      conversation_id: conv.conversation_id,
      client_msg_id: `c${i}`,
      body: `msg ${i}`,
    });
    acked.push(message.seq);
  }
  const got = await b.until(`${n} messages`, () => {
    const ms = b.of("message.new", conv.conversation_id);
    return ms.length >= n && ms;
  });
  assert.deepEqual(got.map((e) => e.data.seq), acked);
  const { message } = await b.call("message.send", {
    conversation_id: conv.conversation_id,
    client_msg_id: "back",
    body: "back",
  });
  await a.until("the answer", () => a.of("message.new").find((e) => e.data.message_id === message.message_id));
}

test("websocket-only clients chat", async () => {
  const a = await connect(NODE1, uid("wsa"), { transports: ["websocket"] });
  const b = await connect(NODE2, uid("wsb"), { transports: ["websocket"] });
  open.push(a, b);
  assert.equal(a.socket.io.engine.transport.name, "websocket");
  await chat(a, b, 5);
});

test("polling-only clients chat", async () => {
  const a = await connect(NODE2, uid("pa"), { transports: ["polling"] });
  const b = await connect(NODE1, uid("pb"), { transports: ["polling"] });
  open.push(a, b);
  await chat(a, b, 5);
  assert.equal(a.socket.io.engine.transport.name, "polling");
});

test("a polling client whose requests alternate between the nodes works", async () => {
  const proxy = await new Proxy([NODE1, NODE2]).start();
  proxies.push(proxy);
  const a = await connect(proxy.url, uid("alt"), { transports: ["polling"], upgrade: false });
  const b = await connect(NODE2, uid("altb"));
  open.push(a, b);
  await chat(a, b, 10); // a sends and receives through both nodes
  await chat(b, a, 3);
  // Requests of a's session reached both nodes: one of them forwarded to
  // the other, which holds the session.
  assert.equal(proxy.hits.size, 2, `session requests per node: ${JSON.stringify([...proxy.hits])}`);
  for (const n of proxy.hits.values()) assert.ok(n >= 5, `few requests through one node: ${n}`);
  assert.equal(a.socket.io.engine.transport.name, "polling");
});

test("default transports through the alternating proxy: polling, then the upgrade on either node", async () => {
  const proxy = await new Proxy([NODE2, NODE1]).start();
  proxies.push(proxy);
  const a = await connect(proxy.url, uid("upg"));
  const b = await connect(NODE1, uid("upgb"));
  open.push(a, b);
  if (a.socket.io.engine.transport.name !== "websocket") {
    await new Promise((r) => a.socket.io.engine.once("upgrade", r));
  }
  assert.equal(a.socket.io.engine.transport.name, "websocket");
  await chat(a, b, 5);
});
