// The peer of chatbench compare: a chat server in the seed design's usual
// form — socket.io 4, rooms, and @socket.io/redis-adapter so that two
// processes deliver to each other's sockets. It speaks the same Socket.IO
// commands and events as Parley's /socket.io/ endpoint for the commands the
// benchmark uses (sync, conversation.create, message.send), with the same
// JWT (HS256, sub = user) in the CONNECT auth. What it does not do, by
// design of the usual form: write anything durably, give a seq, or resume.
//
//   PORT=18380 REDIS_URL=redis://localhost:6379 JWT_SECRET=... node server.js
"use strict";
const http = require("node:http");
const crypto = require("node:crypto");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-adapter");

const port = Number(process.env.PORT || 18380);
const secret = process.env.JWT_SECRET || "parley-dev-secret-not-for-production";
const prefix = process.env.REDIS_PREFIX || "bench-peer";

// verify checks an HS256 JWT and returns its sub, or null.
function verify(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  const sig = crypto.createHmac("sha256", secret).update(parts[0] + "." + parts[1]).digest("base64url");
  const a = Buffer.from(sig), b = Buffer.from(parts[2]);
  if (a.length !== b.length || !crypto.timingSafeEqual(a, b)) return null;
  try {
    const head = JSON.parse(Buffer.from(parts[0], "base64url"));
    const claims = JSON.parse(Buffer.from(parts[1], "base64url"));
    if (head.alg !== "HS256" || typeof claims.exp !== "number" || claims.exp * 1000 < Date.now()) return null;
    return typeof claims.sub === "string" && /^[A-Za-z0-9_.-]{1,64}$/.test(claims.sub) ? claims.sub : null;
  } catch {
    return null;
  }
}

const fail = (code, message) => ({ ok: false, error: { code, message } });

async function main() {
  const pub = createClient({ url: process.env.REDIS_URL || "redis://localhost:6379" });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const server = http.createServer();
  const io = new Server(server, { transports: ["websocket", "polling"], serveClient: false });
  io.adapter(createAdapter(pub, sub, { key: prefix }));

  io.use((socket, next) => {
    const user = verify(socket.handshake.auth && socket.handshake.auth.token);
    if (!user) return next(new Error("unauthorized"));
    socket.data.user = user;
    next();
  });

  io.on("connection", (socket) => {
    const user = socket.data.user;
    socket.join("u:" + user);

    socket.on("sync", (_data, ack) => typeof ack === "function" && ack({ ok: true, data: { positions: {} } }));

    socket.on("conversation.create", (data, ack) => {
      if (typeof ack !== "function") return;
      if (!data || !Array.isArray(data.members) || (data.kind !== "group" && data.kind !== "direct")) {
        return ack(fail("bad_request", "kind and members are required"));
      }
      const members = [...new Set([user, ...data.members])].sort();
      const id = data.kind === "direct" ? "d_" + members.join("_") : "g_" + crypto.randomBytes(16).toString("hex");
      const conversation = { conversation_id: id, kind: data.kind, title: data.title || "", members,
        created_at: new Date().toISOString(), last_seq: 0, unread: 0 };
      // Every member's sockets, on any process, join the room (through the adapter).
      io.in(members.map((u) => "u:" + u)).socketsJoin(id);
      io.to(members.map((u) => "u:" + u)).emit("conversation.created", { conversation, seq: 0 });
      ack({ ok: true, data: { conversation } });
    });

    socket.on("message.send", (data, ack) => {
      if (typeof ack !== "function") return;
      if (!data || typeof data.conversation_id !== "string" || typeof data.body !== "string" || !data.body) {
        return ack(fail("bad_request", "conversation_id and body are required"));
      }
      if (!socket.rooms.has(data.conversation_id)) return ack(fail("not_found", "no such conversation"));
      const message = { conversation_id: data.conversation_id, message_id: "m_" + crypto.randomBytes(16).toString("hex"),
        seq: 0, sender_id: user, client_msg_id: data.client_msg_id || "", body: data.body,
        sent_at: new Date().toISOString(), deleted: false };
      io.to(data.conversation_id).emit("message.new", message);
      ack({ ok: true, data: { message } });
    });
  });

  server.listen(port, "127.0.0.1", () => console.log(`peer listening on 127.0.0.1:${port}`));
  const stop = () => { io.close(); pub.quit().catch(() => {}); sub.quit().catch(() => {}); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => { console.error(e); process.exit(1); });
