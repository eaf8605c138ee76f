// Parley's browser client: sign-in, then one Connection whose pushes feed a
// ChatState that the views render. Everything here is written against
// PROTOCOL.md only (see docs/client.md).

import { AuthError, clearSession, devAuthAvailable, devToken, loadSession, saveSession, tokenAccepted, tokenSubject } from './auth.js';
import { Connection, RequestError, listedNodes, nodeList } from './conn.js';
import { $, avatar, h, setChildren } from './dom.js';
import { ChatState } from './state.js';
import { convAvatar, convItem, convTitle, messageRows, reconcile, typingText } from './views.js';

const TYPING_SEND_EVERY_MS = 3000;
const TYPING_SHOW_MS = 4000;
const HISTORY_PAGE = 50;
const USER_RE = /^[A-Za-z0-9_.-]{1,64}$/;
// Errors after which the same command may simply be sent again.
const RETRYABLE = new Set(['offline', 'timeout', 'unavailable', 'rate_limited', 'internal']);

const app = {
  me: '',
  token: '',
  listed: [], // the other nodes the server lets the page use (/config.json)
  state: null,
  conn: null,
  activeId: null,
  editing: null, // {convId, messageId, draft}
  lastTyping: new Map(), // conv → ms of the last typing sent
  readSent: new Map(), // conv → seq of the last read sent
  unknown: new Map(), // conv → pushes received before the conversation was known
  left: new Set(), // conversations we left: their last pushes are not "unknown"
  resumeGen: 0,
  everOpen: false,
  syncing: false,
  loadingOlder: false,
  renderQueued: false,
  dirtyList: false,
  dirtyActive: false,
  stickToBottom: true,
  typingTimer: null,
  bannerTimer: null,
  listRefresh: null,
  online: new Set(), // users of our conversations who are online (presence)
  replyTo: null, // {convId, message} while the composer writes a reply
};

// ---------------------------------------------------------------- sign in --

/** sync in parts: one sync names at most 1000 conversations. */
async function syncAll(positions) {
  const entries = Object.entries(positions);
  const merged = { positions: {} };
  for (let i = 0; i === 0 || i < entries.length; i += 1000) {
    // Every part but the last says more are coming: the connection keeps
    // the pushes of conversations not named yet held until the last part,
    // so none overtakes its part's replay (docs/protocol.md, "sync").
    const data = { positions: Object.fromEntries(entries.slice(i, i + 1000)) };
    if (i + 1000 < entries.length) data.more = true;
    const r = await req('sync', data);
    Object.assign(merged.positions, r.positions || {});
  }
  return merged;
}

/** Every conversation, page after page (conversation.list is paginated). */
async function listAll() {
  const conversations = [];
  let cursor = '';
  for (let page = 0; page < 1000; page++) {
    const r = await req('conversation.list', cursor ? { cursor } : {});
    conversations.push(...(r.conversations || []));
    if (!r.has_more || !r.next_cursor) break;
    cursor = r.next_cursor;
  }
  return { conversations };
}

async function boot() {
  app.listed = await listedNodes();
  const s = loadSession();
  if (s) {
    startChat(s.user, s.token);
    return;
  }
  const msg = sessionStorage.getItem('parley.signout') || '';
  sessionStorage.removeItem('parley.signout');
  showSignin(msg);
}

async function showSignin(message = '') {
  $('#chat').hidden = true;
  $('#signin').hidden = false;
  $('#signin-error').textContent = message;
  const dev = await devAuthAvailable();
  $('#signin-dev').hidden = !dev;
  $('#signin-token').hidden = dev;
  (dev ? $('#signin-user') : $('#signin-jwt')).focus();
}

$('#signin-dev').addEventListener('submit', async (e) => {
  e.preventDefault();
  const user = $('#signin-user').value.trim();
  const err = $('#signin-error');
  if (!USER_RE.test(user)) {
    err.textContent = 'A user name is 1-64 letters, digits, "_", "." or "-".';
    return;
  }
  err.textContent = '';
  const btn = e.submitter || $('#signin-dev button');
  btn.disabled = true;
  try {
    const token = await devToken(user);
    saveSession({ user, token });
    startChat(user, token);
  } catch (ex) {
    if (ex instanceof AuthError && ex.code === 'not_found') {
      // Dev auth is off on this node after all: ask for a token.
      $('#signin-dev').hidden = true;
      $('#signin-token').hidden = false;
      err.textContent = 'Development sign-in is disabled on this server. Paste an access token.';
    } else {
      err.textContent = ex.message || 'Sign-in failed.';
    }
  } finally {
    btn.disabled = false;
  }
});

$('#signin-token').addEventListener('submit', async (e) => {
  e.preventDefault();
  const token = $('#signin-jwt').value.trim();
  const err = $('#signin-error');
  try {
    const user = tokenSubject(token);
    if (!(await tokenAccepted(token))) throw new AuthError('unauthorized', 'The server does not accept this token.');
    saveSession({ user, token });
    err.textContent = '';
    startChat(user, token);
  } catch (ex) {
    err.textContent = ex.message || 'That token does not work.';
  }
});

function signOut(message = '') {
  app.conn?.stop();
  clearSession();
  if (message) sessionStorage.setItem('parley.signout', message);
  location.reload();
}

// ------------------------------------------------------------ connection --

function startChat(user, token) {
  app.me = user;
  app.token = token;
  app.state = new ChatState(user);
  $('#signin').hidden = true;
  $('#chat').hidden = false;
  setChildren($('#me'), avatar(user, 'sm'), h('span', { text: user }));
  app.conn = new Connection({ nodes: nodeList(location, app.listed), token, onPush });
  app.conn.addEventListener('state', renderConn);
  app.conn.addEventListener('open', () => resume(app.conn));
  app.conn.addEventListener('lost', onLost);
  app.conn.start();
  renderConn();
  scheduleRender(true, true);
}

async function onLost(e) {
  // 4001: the server closed the connection because the token expired. A
  // socket that never opens, again and again, may mean the same.
  if (e.detail.code === 4001) {
    signOut('Your session has expired. Please sign in again.');
    return;
  }
  if (!e.detail.opened && e.detail.attempt % 3 === 0 && !(await tokenAccepted(app.token))) {
    signOut('Your session has expired. Please sign in again.');
  }
}

const req = (type, data) => app.conn.request(type, data);

// resume brings the state up to date after every (re)connection: first sync
// the conversations we know from their positions (the server replays what we
// missed, then lets live pushes through), then list to discover new ones and
// sync those from the position the list gives.
async function resume(conn) {
  const gen = ++app.resumeGen;
  app.syncing = true;
  renderConn();
  try {
    const state = app.state;
    const known = [...state.convs.values()].filter((c) => !c.placeholder).map((c) => c.id);
    if (known.length) {
      const r = await syncAll(state.positions(known));
      if (gen !== app.resumeGen) return;
      for (const id of known) {
        if (!(id in (r.positions || {}))) dropConversation(id); // no longer a member
      }
    }
    const list = await listAll();
    if (gen !== app.resumeGen) return;
    const fresh = [];
    for (const c of list.conversations || []) {
      if (!known.includes(c.conversation_id)) fresh.push(c.conversation_id);
      adopt(c);
    }
    if (fresh.length) await syncAll(state.positions(fresh));
    if (gen !== app.resumeGen) return;
    queryPresence();
    app.syncing = false;
    renderConn();
    scheduleRender(true, true);
    if (app.activeId) loadHistory(app.activeId);
    flushOutbox();
    maybeMarkRead();
  } catch (err) {
    if (gen !== app.resumeGen) return;
    app.syncing = false;
    renderConn();
    if (err.code === 'offline') return; // the next open resumes again
    toast(`Could not sync: ${err.message}. Retrying…`);
    setTimeout(() => {
      if (gen === app.resumeGen && conn.state === 'open') resume(conn);
    }, 2000);
  }
}

// adopt adds or refreshes a conversation from a server object, then applies
// the pushes that arrived for it before it was known.
function adopt(c) {
  const [conv] = app.state.upsert(c);
  const buffered = app.unknown.get(conv.id);
  if (buffered) {
    app.unknown.delete(conv.id);
    for (const f of buffered) onPush(f);
  }
  scheduleRender(true, conv.id === app.activeId);
  return conv;
}

function dropConversation(id) {
  app.state.remove(id);
  app.left.add(id);
  if (app.activeId === id) selectConversation(null);
  scheduleRender(true, false);
}

/** Who of our conversations' members is online (at most 200 asked). */
async function queryPresence() {
  const users = new Set();
  for (const conv of app.state.ordered()) for (const u of conv.members || []) if (u !== app.me) users.add(u);
  if (!users.size) return;
  try {
    const r = await req('presence.query', { user_ids: [...users].slice(0, 200) });
    for (const p of r.presence || []) setOnline(p.user_id, p.status === 'online');
    scheduleRender(true, false);
  } catch {
    // Presence is a nicety: the dots stay as they were.
  }
}

function setOnline(user, online) {
  if (online) app.online.add(user);
  else app.online.delete(user);
}

function onPush(frame) {
  if (frame.type === 'presence' && frame.data?.user_id) {
    setOnline(frame.data.user_id, frame.data.status === 'online');
    scheduleRender(true, false);
    return;
  }
  const r = app.state.apply(frame);
  switch (r.type) {
    case 'unknown':
      if (app.left.has(r.id)) return;
      // Keep it until the conversation is listed (a list refresh is coming).
      if (!app.unknown.has(r.id)) app.unknown.set(r.id, []);
      app.unknown.get(r.id).push(frame);
      refreshListSoon();
      return;
    case 'dup':
    case 'ignored':
      return;
    case 'typing':
      r.conv.typing.set(r.user, Date.now() + TYPING_SHOW_MS);
      if (r.conv.id === app.activeId) renderTyping();
      return;
    case 'removed':
      app.left.add(r.conv.id);
      if (app.activeId === r.conv.id) selectConversation(null);
      scheduleRender(true, false);
      return;
    case 'conversation':
      app.left.delete(r.conv.id);
      scheduleRender(true, false);
      // New members: are they online? The read model that says they are
      // contacts may lag the push by a fetch wait: ask again shortly.
      queryPresence();
      setTimeout(queryPresence, 1500);
      return;
    case 'members':
      app.left.delete(r.conv.id);
      if (r.conv.placeholder) refreshListSoon();
      scheduleRender(true, r.conv.id === app.activeId);
      return;
    case 'message':
      if (r.conv.id === app.activeId && r.fresh && r.message?.sender_id !== app.me && !isAtBottom()) {
        $('#jump').hidden = false;
      }
      scheduleRender(true, r.conv.id === app.activeId);
      return;
    case 'read':
      scheduleRender(true, r.conv.id === app.activeId);
      return;
  }
}

// A push named a conversation we do not know (added to a group, or created
// while the list was loading): list again shortly.
function refreshListSoon(tries = 0) {
  if (app.listRefresh) return;
  if (tries >= 10) {
    app.unknown.clear(); // never listed: not ours after all
    return;
  }
  app.listRefresh = setTimeout(async () => {
    app.listRefresh = null;
    try {
      const list = await listAll();
      const fresh = [];
      for (const c of list.conversations || []) {
        const known = app.state.convs.get(c.conversation_id);
        if (!known || known.placeholder) fresh.push(c.conversation_id);
        adopt(c);
      }
      if (fresh.length) await syncAll(app.state.positions(fresh));
      if (app.unknown.size || [...app.state.convs.values()].some((c) => c.placeholder)) refreshListSoon(tries + 1);
    } catch {
      refreshListSoon(tries + 1);
    }
  }, 300 * (tries + 1));
}

// -------------------------------------------------------------- messages --

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Plain-http pages on a LAN address are not a secure context.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function sendMessage(conv, body) {
  const p = app.state.addPending(conv, body, uuid());
  if (app.replyTo?.convId === conv.id) p.replyTo = app.replyTo.message.message_id;
  cancelReply();
  // The message clears our typing indicator on the other side, so the next
  // keystroke may announce typing again at once.
  app.lastTyping.delete(conv.id);
  app.stickToBottom = true;
  scheduleRender(true, true);
  trySend(conv.id, p);
}

function trySend(convId, p) {
  if (p.inflight || p.state !== 'sending' || app.conn.state !== 'open' || app.syncing) return;
  p.inflight = true;
  req('message.send', { conversation_id: convId, client_msg_id: p.clientMsgId, body: p.body, ...(p.replyTo ? { reply_to: p.replyTo } : {}) })
    .then((d) => {
      p.inflight = false;
      const conv = app.state.convs.get(convId);
      if (conv && d.message) app.state.applyAck(conv, d.message);
      scheduleRender(true, convId === app.activeId);
      maybeMarkRead();
    })
    .catch((err) => {
      p.inflight = false;
      if (RETRYABLE.has(err.code)) {
        // Same client_msg_id: the server returns the first message if it got it.
        if (err.code !== 'offline') setTimeout(() => trySend(convId, p), 1500);
        return;
      }
      p.state = 'failed';
      p.error = err.message;
      const conv = app.state.convs.get(convId);
      if (conv) conv.version++;
      scheduleRender(false, convId === app.activeId);
    });
}

function flushOutbox() {
  for (const conv of app.state.convs.values()) for (const p of conv.pending.values()) trySend(conv.id, p);
}

async function loadHistory(convId) {
  const conv = app.state.convs.get(convId);
  if (!conv || conv.historyLoaded || conv.placeholder || app.conn.state !== 'open') return;
  renderHistoryState('Loading messages…');
  try {
    const d = await req('history', { conversation_id: convId, limit: HISTORY_PAGE });
    app.state.mergeHistory(conv, d.messages || [], !!d.has_more);
    if (convId === app.activeId) {
      app.stickToBottom = true;
      renderActive();
      fillViewport();
    }
  } catch (err) {
    renderHistoryState(err.code === 'offline' ? '' : `Could not load messages: ${err.message}`);
  }
}

async function loadOlder() {
  const conv = app.state.convs.get(app.activeId);
  if (!conv || !conv.historyLoaded || !conv.hasMore || app.loadingOlder || conv.oldestLoaded === null) return;
  app.loadingOlder = true;
  renderHistoryState('Loading older messages…');
  try {
    const d = await req('history', { conversation_id: conv.id, before_seq: conv.oldestLoaded, limit: HISTORY_PAGE });
    const box = $('#messages');
    const prevHeight = box.scrollHeight;
    const prevTop = box.scrollTop;
    app.state.mergeHistory(conv, d.messages || [], !!d.has_more);
    if (conv.id === app.activeId) {
      renderActive();
      // Keep what the reader was looking at in place.
      box.scrollTop = prevTop + (box.scrollHeight - prevHeight);
    }
    app.loadingOlder = false;
    if (conv.id === app.activeId) historyState(conv);
  } catch (err) {
    app.loadingOlder = false;
    renderHistoryState(`Could not load older messages: ${err.message}`);
    return;
  }
  fillViewport();
}

// Loads older pages until the view can scroll (or the beginning is reached).
function fillViewport() {
  const box = $('#messages');
  const conv = app.state.convs.get(app.activeId);
  if (conv?.hasMore && box.scrollHeight <= box.clientHeight + 40) loadOlder();
}

function maybeMarkRead() {
  const conv = app.state?.convs.get(app.activeId);
  if (!conv || document.visibilityState !== 'visible' || app.conn.state !== 'open' || app.syncing || !isAtBottom()) return;
  const newest = conv.newestSeq();
  if (newest === null) return;
  if (newest <= conv.myRead || newest <= (app.readSent.get(conv.id) || 0)) {
    if (conv.unread && newest <= conv.myRead) {
      conv.unread = 0;
      scheduleRender(true, false);
    }
    return;
  }
  app.readSent.set(conv.id, newest);
  app.state.markRead(conv, newest);
  scheduleRender(true, false);
  req('read', { conversation_id: conv.id, seq: newest }).catch(() => app.readSent.delete(conv.id));
}

function sendTyping(conv) {
  const now = Date.now();
  if (now - (app.lastTyping.get(conv.id) || 0) < TYPING_SEND_EVERY_MS || app.conn.state !== 'open') return;
  app.lastTyping.set(conv.id, now);
  req('typing', { conversation_id: conv.id }).catch(() => {});
}

// ------------------------------------------------------------- rendering --

function scheduleRender(list, active) {
  app.dirtyList ||= list;
  app.dirtyActive ||= active;
  if (app.renderQueued) return;
  app.renderQueued = true;
  requestAnimationFrame(() => {
    app.renderQueued = false;
    if (app.dirtyList) renderList();
    if (app.dirtyActive) renderActive();
    app.dirtyList = app.dirtyActive = false;
  });
}

function renderList() {
  const convs = app.state.ordered();
  const items = convs.map((conv) => convItem(conv, { me: app.me, active: conv.id === app.activeId, onSelect: selectConversation, online: app.online }));
  setChildren($('#conv-list'), items);
  $('#conv-empty').hidden = convs.length > 0 || app.syncing || app.conn.state !== 'open';
  const total = convs.reduce((n, c) => n + (c.unread > 0 ? c.unread : 0), 0);
  document.title = total ? `(${total}) Parley` : 'Parley';
}

function selectConversation(id) {
  if (app.editing) cancelEdit();
  if (app.replyTo && app.replyTo.convId !== id) cancelReply();
  const prev = app.activeId;
  app.activeId = id;
  document.body.classList.toggle('show-conv', !!id);
  $('#no-conv').hidden = !!id;
  $('#conv-view').hidden = !id;
  $('#jump').hidden = true;
  if (prev !== id) {
    $('#composer-input').value = '';
    autoSize();
    setChildren($('#message-list'));
  }
  app.stickToBottom = true;
  scheduleRender(true, true);
  if (id) {
    loadHistory(id);
    requestAnimationFrame(() => {
      if (window.matchMedia('(hover: hover)').matches) $('#composer-input').focus();
    });
  }
}

function renderActive() {
  const conv = app.state.convs.get(app.activeId);
  if (!conv) {
    if (app.activeId) selectConversation(null);
    return;
  }
  $('#conv-title').textContent = convTitle(conv, app.me);
  const others = conv.members.filter((u) => u !== app.me);
  $('#conv-sub').textContent =
    conv.kind === 'direct' ? 'Direct message' : `${conv.members.length} member${conv.members.length === 1 ? '' : 's'} · ${['you', ...others].join(', ')}`;
  setChildren($('#conv-avatar'), convAvatar(conv, app.me));
  $('#add-member').hidden = conv.kind !== 'group';
  renderMessages(conv);
  renderTyping();
  if (!app.loadingOlder) historyState(conv);
  maybeMarkRead();
}

function historyState(conv) {
  if (!conv.historyLoaded) renderHistoryState(app.conn.state === 'open' ? 'Loading messages…' : '');
  else if (!conv.hasMore) renderHistoryState(conv.messages.size ? 'This is the beginning of the conversation.' : 'No messages yet. Say hello!');
  else renderHistoryState('');
}

function renderHistoryState(text) {
  $('#history-state').textContent = text;
}

// renderMessages reconciles the list by key, so a new message, an edit or a
// receipt touches only its own element (and keeps scroll and selection).
function renderMessages(conv) {
  const box = $('#messages');
  const atBottom = app.stickToBottom || isAtBottom();
  reconcile(
    $('#message-list'),
    messageRows(conv, app.me, {
      onEdit: (m) => startEdit(conv, m),
      onDelete: (m) => confirmDelete(conv, m),
      onRetry: (p) => retryPending(conv, p),
      onDiscard: (p) => discardPending(conv, p),
      onReact: (m, emoji) => toggleReaction(conv, m, emoji),
      onReply: (m) => startReply(conv, m),
      onThread: (m) => openThread(conv, m),
    }),
  );
  if (atBottom) {
    box.scrollTop = box.scrollHeight;
    app.stickToBottom = false;
    $('#jump').hidden = true;
  }
}

function retryPending(conv, p) {
  p.state = 'sending';
  p.error = null;
  conv.version++;
  scheduleRender(false, true);
  trySend(conv.id, p);
}

function discardPending(conv, p) {
  conv.pending.delete(p.clientMsgId);
  scheduleRender(false, true);
}

function renderTyping() {
  const conv = app.state.convs.get(app.activeId);
  const el = $('#typing');
  clearTimeout(app.typingTimer);
  if (!conv) return;
  const now = Date.now();
  const who = [];
  let next = Infinity;
  for (const [u, until] of conv.typing) {
    if (until <= now) conv.typing.delete(u);
    else {
      who.push(u);
      next = Math.min(next, until);
    }
  }
  const text = typingText(who.sort());
  el.textContent = text;
  el.classList.toggle('on', !!text);
  if (next !== Infinity) app.typingTimer = setTimeout(renderTyping, next - now + 20);
}

function isAtBottom() {
  const box = $('#messages');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 48;
}

const STATE_LABEL = {
  idle: 'Offline',
  connecting: 'Connecting…',
  syncing: 'Syncing…',
  online: 'Online',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

function connState() {
  const s = app.conn?.state || 'idle';
  if (s === 'open') return app.syncing ? 'syncing' : 'online';
  if (s === 'closed') return 'offline';
  return s;
}

function renderConn() {
  const s = connState();
  if (s === 'online') app.everOpen = true;
  const pill = $('#conn-state');
  pill.dataset.state = s;
  const host = app.conn?.node ? new URL(app.conn.node.replace(/^ws/, 'http')).host : '';
  pill.dataset.node = host;
  pill.title = host ? `${STATE_LABEL[s]} · ${host}` : STATE_LABEL[s];
  $('#conn-label').textContent = STATE_LABEL[s];
  pill.setAttribute('aria-label', `Connection: ${STATE_LABEL[s]}${host ? ` (${host})` : ''}`);
  renderBanner();
}

function renderBanner() {
  clearTimeout(app.bannerTimer);
  const s = connState();
  const banner = $('#conn-banner');
  const show = s === 'reconnecting' || (s === 'connecting' && app.everOpen);
  banner.hidden = !show;
  if (!show) return;
  let text = 'Connection lost. Reconnecting…';
  if (s === 'reconnecting') {
    const secs = Math.ceil((app.conn.retryAt - Date.now()) / 1000);
    if (secs >= 1) text = `Connection lost. Reconnecting in ${secs} s…`;
    app.bannerTimer = setTimeout(renderBanner, 500);
  }
  $('#conn-banner-text').textContent = text;
  $('#conn-retry').hidden = s !== 'reconnecting';
}

let toastTimer = null;
function toast(text) {
  const t = $('#toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 4000);
}

// ------------------------------------------------------------ composing --

function autoSize() {
  const ta = $('#composer-input');
  ta.style.height = 'auto';
  ta.style.height = `${Math.min(ta.scrollHeight, 160)}px`;
}

function startEdit(conv, m) {
  const ta = $('#composer-input');
  if (!app.editing) app.editingDraft = ta.value;
  app.editing = { convId: conv.id, messageId: m.message_id, original: m.body };
  ta.value = m.body;
  $('#edit-banner').hidden = false;
  $('#composer').classList.add('editing');
  $('#send').setAttribute('aria-label', 'Save edit');
  autoSize();
  ta.focus();
  ta.setSelectionRange(ta.value.length, ta.value.length);
}

function cancelEdit() {
  if (!app.editing) return;
  app.editing = null;
  const ta = $('#composer-input');
  ta.value = app.editingDraft || '';
  app.editingDraft = '';
  $('#edit-banner').hidden = true;
  $('#composer').classList.remove('editing');
  $('#send').setAttribute('aria-label', 'Send message');
  autoSize();
}

async function submitComposer() {
  const conv = app.state.convs.get(app.activeId);
  if (!conv) return;
  const ta = $('#composer-input');
  const body = ta.value;
  if (app.editing) {
    const ed = app.editing;
    if (!body.trim() || body === ed.original) {
      cancelEdit();
      return;
    }
    cancelEdit();
    try {
      const d = await req('message.edit', { conversation_id: ed.convId, message_id: ed.messageId, body });
      const c = app.state.convs.get(ed.convId);
      if (c && d.message) app.state.applyAck(c, d.message);
      scheduleRender(true, ed.convId === app.activeId);
    } catch (err) {
      toast(`Could not edit: ${err.message}`);
    }
    return;
  }
  if (!body.trim()) return;
  if (new TextEncoder().encode(body).length > 8192) {
    toast('That message is too long (8192 bytes at most).');
    return;
  }
  ta.value = '';
  autoSize();
  sendMessage(conv, body);
}

// ---------------------------------------------------------------- dialogs --

function openDialog(dlg) {
  for (const e of dlg.querySelectorAll('.form-error')) e.textContent = '';
  dlg.showModal();
}

function confirmDialog(title, text, okLabel) {
  const dlg = $('#dlg-confirm');
  $('#dlg-confirm-title').textContent = title;
  $('#dlg-confirm-text').textContent = text;
  const ok = $('#dlg-confirm-ok');
  ok.textContent = okLabel;
  ok.setAttribute('aria-label', okLabel);
  dlg.returnValue = '';
  dlg.showModal();
  return new Promise((resolve) => dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true }));
}

/** Adds our emoji to m, or takes it away if we have it. */
async function toggleReaction(conv, m, emoji) {
  const mine = (m.reactions?.[emoji] || []).includes(app.me);
  try {
    const d = await req(mine ? 'message.unreact' : 'message.react', { conversation_id: conv.id, message_id: m.message_id, emoji });
    if (d.message) app.state.applyAck(conv, d.message);
    scheduleRender(false, conv.id === app.activeId);
  } catch (err) {
    toast(`Could not react: ${err.message}`);
  }
}

function startReply(conv, m) {
  if (app.editing) cancelEdit();
  app.replyTo = { convId: conv.id, message: m };
  $('#reply-text').textContent = `Replying to ${m.sender_id}: ${m.body.slice(0, 80)}`;
  $('#reply-banner').hidden = false;
  $('#composer-input').focus();
}

function cancelReply() {
  app.replyTo = null;
  $('#reply-banner').hidden = true;
}

/** Runs the search command and lists the matches; a click opens the conversation. */
async function runSearch(query) {
  query = query.trim();
  if (!query) return;
  try {
    const d = await req('search', { query, limit: 20 });
    const hits = d.messages || [];
    $('#search-summary').textContent = hits.length ? `Messages with “${query}”, newest first` : `Nothing found for “${query}”.`;
    setChildren(
      $('#search-list'),
      hits.map((m) => {
        const conv = app.state.convs.get(m.conversation_id);
        return h(
          'li',
          {
            class: 'search-hit',
            'data-message-id': m.message_id,
            onclick: () => {
              $('#dlg-search').close();
              if (conv) selectConversation(conv.id);
            },
          },
          h('span', { class: 'conv', text: conv ? convTitle(conv, app.me) : m.conversation_id }),
          h('span', { class: 'who', text: m.sender_id }),
          h('span', { text: m.body }),
        );
      }),
    );
    $('#dlg-search').showModal();
  } catch (err) {
    toast(`Could not search: ${err.message}`);
  }
}

/** Shows m and its replies (the thread command) in a dialog. */
async function openThread(conv, m) {
  try {
    const d = await req('thread', { conversation_id: conv.id, message_id: m.message_id, limit: 200 });
    $('#thread-root').textContent = `${d.root.sender_id}: ${d.root.deleted ? 'This message was deleted' : d.root.body}`;
    setChildren(
      $('#thread-list'),
      (d.messages || []).map((r) =>
        h('li', { 'data-message-id': r.message_id }, h('span', { class: 'who', text: r.sender_id }), h('span', { text: r.deleted ? 'deleted' : r.body })),
      ),
    );
    $('#dlg-thread').showModal();
  } catch (err) {
    toast(`Could not open the thread: ${err.message}`);
  }
}

async function confirmDelete(conv, m) {
  if (!(await confirmDialog('Delete message?', 'It will be removed for everyone in this conversation.', 'Delete'))) return;
  try {
    await req('message.delete', { conversation_id: conv.id, message_id: m.message_id });
    app.state.apply({ type: 'message.deleted', data: { conversation_id: conv.id, message_id: m.message_id } });
    scheduleRender(true, conv.id === app.activeId);
  } catch (err) {
    toast(`Could not delete: ${err.message}`);
  }
}

function parseUsers(s) {
  return [...new Set(s.split(/[\s,;]+/).map((x) => x.trim().replace(/^@/, '')).filter(Boolean))];
}

async function createConversation(e) {
  e.preventDefault();
  const err = $('#new-error');
  const kind = $('#kind-group').checked ? 'group' : 'direct';
  let data;
  if (kind === 'direct') {
    const peer = $('#new-peer').value.trim().replace(/^@/, '');
    if (!USER_RE.test(peer)) return void (err.textContent = 'Enter the user name of the person to message.');
    if (peer === app.me) return void (err.textContent = 'Pick someone other than yourself.');
    data = { kind, members: [peer] };
  } else {
    const members = parseUsers($('#new-members').value).filter((u) => u !== app.me);
    const bad = members.find((u) => !USER_RE.test(u));
    if (bad) return void (err.textContent = `"${bad}" is not a valid user name.`);
    data = { kind, title: $('#new-title').value.trim(), members };
  }
  const btn = $('#form-new button[type=submit]');
  btn.disabled = true;
  try {
    const d = await req('conversation.create', data);
    const isNew = !app.state.convs.has(d.conversation.conversation_id);
    const conv = adopt(d.conversation);
    // Resume it from its creation (the ack may overtake the push).
    if (isNew) req('sync', { positions: app.state.positions([conv.id]) }).catch(() => {});
    $('#dlg-new').close();
    $('#form-new').reset();
    syncKind();
    selectConversation(conv.id);
  } catch (ex) {
    err.textContent = ex instanceof RequestError ? ex.message : String(ex);
  } finally {
    btn.disabled = false;
  }
}

function syncKind() {
  const group = $('#kind-group').checked;
  $('#new-group').hidden = !group;
  $('#new-direct').hidden = group;
}

async function addMember(e) {
  e.preventDefault();
  const err = $('#add-error');
  const user = $('#add-user').value.trim().replace(/^@/, '');
  if (!USER_RE.test(user)) return void (err.textContent = 'Enter a valid user name.');
  const conv = app.state.convs.get(app.activeId);
  if (!conv) return;
  try {
    await req('conversation.add_member', { conversation_id: conv.id, user_id: user });
    $('#dlg-add').close();
    $('#form-add').reset();
  } catch (ex) {
    err.textContent = ex.message;
  }
}

async function leaveConversation() {
  const conv = app.state.convs.get(app.activeId);
  if (!conv) return;
  const ok = await confirmDialog(`Leave “${convTitle(conv, app.me)}”?`, 'You will stop receiving its messages.', 'Leave');
  if (!ok) return;
  try {
    await req('conversation.leave', { conversation_id: conv.id });
    dropConversation(conv.id);
  } catch (err) {
    toast(`Could not leave: ${err.message}`);
  }
}

// ------------------------------------------------------------------ wiring --

function wire() {
  const ta = $('#composer-input');
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      submitComposer();
    } else if (e.key === 'Escape' && app.editing) {
      e.preventDefault();
      cancelEdit();
    } else if (e.key === 'ArrowUp' && !ta.value && !app.editing) {
      // Like Slack: ↑ in an empty composer edits your last message.
      const conv = app.state.convs.get(app.activeId);
      const last = conv && [...conv.list()].reverse().find((m) => m.sender_id === app.me && !m.deleted);
      if (last) {
        e.preventDefault();
        startEdit(conv, last);
      }
    }
  });
  ta.addEventListener('input', () => {
    autoSize();
    const conv = app.state.convs.get(app.activeId);
    if (conv && ta.value.trim() && !app.editing) sendTyping(conv);
  });
  $('#composer').addEventListener('submit', (e) => {
    e.preventDefault();
    submitComposer();
  });
  $('#search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    runSearch($('#search-input').value);
  });
  $('#reply-cancel').addEventListener('click', () => {
    cancelReply();
    ta.focus();
  });
  $('#edit-cancel').addEventListener('click', () => {
    cancelEdit();
    ta.focus();
  });
  const box = $('#messages');
  box.addEventListener('scroll', () => {
    if (box.scrollTop < 150) loadOlder();
    if (isAtBottom()) {
      $('#jump').hidden = true;
      maybeMarkRead();
    }
  });
  $('#jump').addEventListener('click', () => {
    box.scrollTop = box.scrollHeight;
    $('#jump').hidden = true;
    maybeMarkRead();
  });
  $('#back').addEventListener('click', () => selectConversation(null));
  $('#new-conv').addEventListener('click', () => {
    openDialog($('#dlg-new'));
    syncKind();
    ($('#kind-group').checked ? $('#new-title') : $('#new-peer')).focus();
  });
  $('#kind-direct').addEventListener('change', syncKind);
  $('#kind-group').addEventListener('change', syncKind);
  $('#form-new').addEventListener('submit', createConversation);
  $('#add-member').addEventListener('click', () => {
    openDialog($('#dlg-add'));
    $('#add-user').focus();
  });
  $('#form-add').addEventListener('submit', addMember);
  $('#leave').addEventListener('click', leaveConversation);
  for (const b of document.querySelectorAll('dialog [data-close]')) b.addEventListener('click', () => b.closest('dialog').close());
  $('#sign-out').addEventListener('click', () => signOut());
  $('#conn-retry').addEventListener('click', () => app.conn?.retryNow());
  window.addEventListener('online', () => app.conn?.retryNow());
  document.addEventListener('visibilitychange', maybeMarkRead);
  window.addEventListener('focus', maybeMarkRead);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && app.editing && document.activeElement !== ta) cancelEdit();
  });
}

wire();
boot();
