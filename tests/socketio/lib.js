// Helpers shared by the Socket.IO client tests. The Go test
// e2e/socketio_test.go starts two Parley nodes and sets:
//   NODE1, NODE2  base URLs of the two gateway nodes (http://127.0.0.1:port)
//   CONTROL       a test-only endpoint: POST /kill?user=U makes the nodes cut
//                 U's Socket.IO transports
import http from "node:http";
import net from "node:net";
import { randomBytes } from "node:crypto";
import { io } from "socket.io-client";

export const NODE1 = need("NODE1");
export const NODE2 = need("NODE2");
export const CONTROL = need("CONTROL");

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through e2e/socketio_test.go`);
  return v;
}

// uid makes user ids unique per run, so tests never see each other's events.
export function uid(name) {
  return `${name}-${randomBytes(4).toString("hex")}`;
}

export async function token(user) {
  const res = await fetch(`${NODE1}/api/v1/dev/token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: user }),
  });
  if (!res.ok) throw new Error(`dev token: HTTP ${res.status}`);
  return (await res.json()).token;
}

// Client wraps a socket.io-client socket and records every chat event.
export class Client {
  constructor(socket, user) {
    this.socket = socket;
    this.user = user;
    this.events = []; // {type, data, seq}
    this.positions = {}; // conversation_id -> last seen seq
    this.waiters = [];
    // What the connection went through, for the message of a failed wait.
    this.trace = [];
    const note = (what) => (e) => this.trace.push(`${Date.now() % 100000} ${what}${e ? `: ${e.message ?? e}` : ""}`);
    for (const ev of ["reconnect_attempt", "reconnect_error", "reconnect", "error", "close"]) socket.io.on(ev, note(ev));
    for (const ev of ["connect", "connect_error", "disconnect"]) socket.on(ev, note(ev));
    // A client syncs from its last seen positions on every (re)connection:
    // that replays what it missed and ends the node's hold on live pushes.
    this.syncs = [];
    socket.on("connect", () => {
      const p = this.sync();
      p.catch(() => {}); // checked by the tests that care
      this.syncs.push(p);
    });
    socket.onAny((type, data, meta) => {
      const seq = meta?.seq ?? 0;
      this.events.push({ type, data, seq });
      const conv = data?.conversation_id ?? data?.conversation?.conversation_id;
      if (conv && seq > (this.positions[conv] ?? 0)) this.positions[conv] = seq;
      this.wake();
    });
  }

  wake() {
    for (const w of [...this.waiters]) w();
  }

  // call emits a command and resolves with the ack's data; it throws on an
  // {ok:false} ack with the error's code in err.code.
  async call(type, data = {}) {
    const ack = await this.socket.timeout(20000).emitWithAck(type, data);
    if (!ack.ok) {
      const err = new Error(`${type}: ${ack.error.code}: ${ack.error.message}`);
      err.code = ack.error.code;
      throw err;
    }
    return ack.data;
  }

  // sync replays what this client missed; "unavailable" (the read model is
  // catching up) is retried a few times, as a client should.
  async sync() {
    for (let i = 0; ; i++) {
      try {
        return await this.call("sync", { positions: { ...this.positions } });
      } catch (err) {
        if (err.code !== "unavailable" || i >= 5 || !this.socket.connected) throw err;
        this.trace.push(`${Date.now() % 100000} sync: ${err.message}`);
      }
    }
  }

  // until resolves when pred(events) is true, polling on every event.
  until(what, pred, ms = 20000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = pred(this.events);
        if (v) {
          done();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.user}: timed out after ${ms} ms waiting for ${what}; connection: ${this.trace.slice(-12).join(" | ")}`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
      };
      this.waiters.push(check);
      check();
    });
  }

  of(type, conv) {
    return this.events.filter(
      (e) => e.type === type && (!conv || e.data?.conversation_id === conv),
    );
  }

  close() {
    this.socket.disconnect();
  }
}

// connect opens a socket as user and resolves once it is connected.
export async function connect(url, user, opts = {}) {
  const socket = io(url, {
    auth: { token: await token(user) },
    forceNew: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    ...opts,
  });
  const client = new Client(socket, user);
  await new Promise((resolve, reject) => {
    // Only the first connection's outcome: later connect_errors are failed
    // reconnection attempts, which the client retries by itself.
    const onConnect = () => {
      socket.off("connect_error", onError);
      resolve();
    };
    const onError = (err) => {
      socket.off("connect", onConnect);
      socket.close();
      reject(err);
    };
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
  });
  return client;
}

// connectError resolves with the error of a connection that must fail.
export function connectError(url, opts) {
  const socket = io(url, { forceNew: true, reconnection: false, ...opts });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => {
      socket.close();
      reject(new Error("connected, expected connect_error"));
    });
    socket.once("connect_error", (err) => {
      socket.close();
      resolve(err);
    });
  });
}

export async function kill(user) {
  const res = await fetch(`${CONTROL}/kill?user=${encodeURIComponent(user)}`, { method: "POST" });
  return (await res.json()).killed;
}

// Proxy is a tiny HTTP proxy on a random loopback port. It sends each
// request (and each WebSocket upgrade) to the next upstream in turn, so a
// client behind it hits every node in rotation, as with a load balancer
// without sticky sessions. While closed it refuses everything.
export class Proxy {
  constructor(upstreams) {
    this.upstreams = upstreams.map((u) => new URL(u));
    this.next = 0;
    this.open = true;
    this.hits = new Map(); // upstream host -> requests carrying a sid
    this.sockets = new Set();
    this.server = http.createServer((req, res) => this.request(req, res));
    this.server.on("upgrade", (req, sock, head) => this.upgrade(req, sock, head));
    this.server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
  }

  async start() {
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  pick(req) {
    const up = this.upstreams[this.next++ % this.upstreams.length];
    if (req.url.includes("sid=")) this.hits.set(up.host, (this.hits.get(up.host) ?? 0) + 1);
    return up;
  }

  request(req, res) {
    if (!this.open) {
      res.writeHead(503).end();
      return;
    }
    const up = this.pick(req);
    const out = http.request(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers, agent: false },
      (upRes) => {
        res.writeHead(upRes.statusCode, upRes.headers);
        upRes.pipe(res);
      },
    );
    out.on("error", () => res.destroy());
    // A client that goes away must not leave the upstream poll open.
    res.on("close", () => out.destroy());
    req.pipe(out);
  }

  upgrade(req, sock, head) {
    if (!this.open) {
      sock.destroy();
      return;
    }
    const up = this.pick(req);
    const upSock = net.connect(Number(up.port), up.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upSock.write(lines.join("\r\n") + "\r\n\r\n");
      if (head?.length) upSock.write(head);
      upSock.pipe(sock);
      sock.pipe(upSock);
    });
    this.sockets.add(upSock);
    upSock.on("close", () => {
      this.sockets.delete(upSock);
      sock.destroy();
    });
    upSock.on("error", () => sock.destroy());
    sock.on("error", () => upSock.destroy());
    sock.on("close", () => upSock.destroy());
  }

  async stop() {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

// group creates a group conversation of owner with members and waits until
// every member's client has its conversation.created.
export async function group(owner, ...members) {
  const { conversation } = await owner.call("conversation.create", {
    kind: "group",
    title: "sio",
    members: members.map((m) => m.user),
  });
  for (const m of members) {
    await m.until("conversation.created", () =>
      m.of("conversation.created").find((e) => e.data.conversation.conversation_id === conversation.conversation_id),
    );
  }
  return conversation;
}
