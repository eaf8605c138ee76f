// One native-protocol connection (/ws) that survives the loss of a node: it
// reconnects with jittered exponential backoff, cycling through the nodes
// (the page's own origin first, then those the server lists), and tells its
// owner each time it is open again so that the owner can resume with `sync`.

export class RequestError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

const REQUEST_TIMEOUT_MS = 20000;
// A socket still not open after this is given up for the next node: a host
// that drops packets, or a connection the browser refused without a close
// event, must not hold the page in "connecting".
const CONNECT_TIMEOUT_MS = 15000;
const BACKOFF_BASE_MS = 400;
const BACKOFF_MAX_MS = 15000;
// A connection counts as working once it has stayed open this long: only
// then does the backoff start again from a quick retry. A node that
// upgrades and closes at once (1013: full, or Redis away) must not be
// hammered four times a second by every tab.
const STABLE_MS = 10000;
// 1013 says "try again later": never sooner than this.
const TRY_AGAIN_MIN_MS = 2000;

/**
 * The delay before reconnect attempt `attempt` (1: the first after a
 * working connection, which is quick) after close code `code`: "equal
 * jitter", half the exponential cap plus a random half, so a node's
 * clients do not all come back at once.
 */
export function backoffDelay(attempt, code, random = Math.random) {
  const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
  let delay = attempt === 1 ? 50 + random() * 250 : cap / 2 + random() * (cap / 2);
  if (code === 1013) delay = Math.max(delay, TRY_AGAIN_MIN_MS + random() * TRY_AGAIN_MIN_MS);
  return delay;
}

/** Normalises "host:port", "http://host:port" or "ws://host:port/ws" to a ws(s) URL of /ws. */
export function wsURL(node, pageProtocol = 'http:') {
  let s = String(node).trim();
  let secure = pageProtocol === 'https:';
  const m = /^(https?|wss?):\/\//i.exec(s);
  if (m) {
    secure = /^(https|wss)$/i.test(m[1]);
    s = s.slice(m[0].length);
  }
  const host = s.split('/')[0];
  return `${secure ? 'wss' : 'ws'}://${host}/ws`;
}

/**
 * The nodes to try: the page's own first, then those the server lists
 * (`listed`, from /config.json). `?nodes=a,b` may only narrow and order the
 * listed ones (matched by host); a host the server does not list is ignored,
 * so a crafted link cannot make the page send its token elsewhere.
 */
export function nodeList(location, listed = []) {
  const own = wsURL(location.host, location.protocol);
  const allowed = [...new Set(listed.map((n) => wsURL(n, location.protocol)))];
  const hostOf = (u) => {
    try {
      return new URL(u).host;
    } catch {
      return null; // not a URL: matches nothing
    }
  };
  const param = new URLSearchParams(location.search).get('nodes');
  let extra = allowed;
  if (param !== null) {
    extra = param
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .map((s) => hostOf(wsURL(s, location.protocol)))
      .map((h) => h && allowed.find((a) => hostOf(a) === h))
      .filter(Boolean);
  }
  return [...new Set([own, ...extra])];
}

/** The WebSocket URLs of the other nodes the server allows (GET /config.json); none if it cannot say. */
export async function listedNodes() {
  try {
    const r = await fetch('/config.json', { cache: 'no-store' });
    if (!r.ok) return [];
    const body = await r.json();
    return Array.isArray(body?.nodes) ? body.nodes.filter((n) => typeof n === 'string') : [];
  } catch {
    return [];
  }
}

export class Connection extends EventTarget {
  /**
   * @param {{nodes: string[], token: string, onPush: (frame: object) => void}} opts
   */
  constructor({ nodes, token, onPush }) {
    super();
    this.nodes = nodes;
    this.token = token;
    this.onPush = onPush;
    this.ws = null;
    this.nextID = 1;
    this.pending = new Map();
    this.nodeIndex = 0;
    this.attempt = 0;
    this.timer = null;
    this.connectTimer = null;
    this.stopped = true;
    this.state = 'idle'; // connecting | open | reconnecting | closed
    this.node = null;
    this.retryAt = 0;
  }

  start() {
    this.stopped = false;
    this.#connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.connectTimer);
    clearTimeout(this.stableTimer);
    if (this.ws) this.ws.close(1000, 'signed out');
    this.#setState('closed');
  }

  /** Reconnects at once (the user pressed "retry", or the browser is online again). */
  retryNow() {
    if (this.stopped || this.state === 'open' || this.state === 'connecting') return;
    clearTimeout(this.timer);
    this.#connect();
  }

  /** Sends a command; resolves with the ok data, rejects with a RequestError. */
  request(type, data = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.state !== 'open') {
      return Promise.reject(new RequestError('offline', 'not connected'));
    }
    const id = this.nextID++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestError('timeout', `${type}: no reply`));
        // A connection that stopped answering is as good as lost.
        if (this.ws === ws) ws.close(4000, 'request timed out');
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, ws });
      ws.send(JSON.stringify({ id, type, data }));
    });
  }

  #connect() {
    clearTimeout(this.timer);
    const url = this.nodes[this.nodeIndex % this.nodes.length];
    this.node = url;
    this.#setState('connecting');
    let ws;
    try {
      // The token rides in Sec-WebSocket-Protocol, never in the URL; the
      // server selects "parley" (docs/protocol.md, "Connecting").
      ws = new WebSocket(url, ['parley', `bearer.${this.token}`]);
    } catch {
      this.#lost(false, 0);
      return;
    }
    this.ws = ws;
    let opened = false;
    clearTimeout(this.connectTimer);
    this.connectTimer = setTimeout(() => {
      if (this.ws !== ws || opened) return;
      this.ws = null;
      ws.close();
      this.#lost(false, 0);
    }, CONNECT_TIMEOUT_MS);
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      clearTimeout(this.connectTimer);
      opened = true;
      clearTimeout(this.stableTimer);
      this.stableTimer = setTimeout(() => {
        if (this.ws === ws) this.attempt = 0;
      }, STABLE_MS);
      this.#setState('open');
      this.dispatchEvent(new Event('open'));
    });
    ws.addEventListener('message', (e) => {
      if (this.ws === ws) this.#frame(e.data);
    });
    ws.addEventListener('close', (e) => {
      if (this.ws !== ws) return;
      clearTimeout(this.connectTimer);
      clearTimeout(this.stableTimer);
      this.ws = null;
      this.#failPending(ws);
      this.#lost(opened, e.code);
    });
  }

  #frame(text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if (!f || typeof f !== 'object') return;
    if ((f.type === 'ok' || f.type === 'error') && typeof f.id === 'number') {
      const p = this.pending.get(f.id);
      if (!p) return;
      this.pending.delete(f.id);
      clearTimeout(p.timer);
      if (f.type === 'ok') p.resolve(f.data || {});
      else p.reject(new RequestError(f.error?.code || 'internal', f.error?.message));
      return;
    }
    try {
      this.onPush(f);
    } catch (err) {
      console.error('push handler', f.type, err);
    }
  }

  #failPending(ws) {
    for (const [id, p] of this.pending) {
      if (p.ws !== ws) continue;
      clearTimeout(p.timer);
      p.reject(new RequestError('offline', 'connection lost'));
      this.pending.delete(id);
    }
  }

  // Decides where and when to try next. A node that could not be reached, or
  // that said it is going away (1001, 1012), is skipped for the next one.
  #lost(opened, code) {
    if (this.stopped) return;
    if (!opened || code === 1001 || code === 1012 || code === 1013) this.nodeIndex++;
    this.attempt++;
    const delay = backoffDelay(this.attempt, code);
    this.retryAt = Date.now() + delay;
    this.#setState('reconnecting');
    this.dispatchEvent(new CustomEvent('lost', { detail: { opened, code, attempt: this.attempt } }));
    this.timer = setTimeout(() => this.#connect(), delay);
  }

  #setState(s) {
    this.state = s;
    this.dispatchEvent(new CustomEvent('state', { detail: { state: s, node: this.node, attempt: this.attempt, retryAt: this.retryAt } }));
  }
}
