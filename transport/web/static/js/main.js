// Parley's browser client: sign-in, then one Connection whose pushes feed a
// ChatState that the views render. Everything here is written against
// PROTOCOL.md only (see docs/client.md).

import { AuthError, clearSession, devAuthAvailable, devToken, loadSession, saveSession, tokenAccepted, tokenSubject } from './auth.js';
import { Connection, RequestError, nodeList } from './conn.js';
import { $, avatar, clockTime, dayLabel, fullTime, h, linkified, setChildren, shortTime } from './dom.js';
import { ChatState } from './state.js';

const TYPING_SEND_EVERY_MS = 3000;
const TYPING_SHOW_MS = 4000;
const HISTORY_PAGE = 50;
const GROUP_GAP_MS = 5 * 60 * 1000;
const USER_RE = /^[A-Za-z0-9_.-]{1,64}$/;
// Errors after which the same command may simply be sent again.
const RETRYABLE = new Set(['offline', 'timeout', 'unavailable', 'rate_limited', 'internal']);

const app = {
  me: '',
  token: '',
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
};

// ---------------------------------------------------------------- sign in --

async function boot() {
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
  app.conn = new Connection({ nodes: nodeList(location), token, onPush });
  app.conn.addEventListener('state', renderConn);
  app.conn.addEventListener('open', () => resume(app.conn));
  app.conn.addEventListener('lost', onLost);
  app.conn.start();
  renderConn();
  scheduleRender(true, true);
}

async function onLost(e) {
  // A socket that never opens, again and again, may mean our token expired.
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
      const r = await req('sync', { positions: state.positions(known) });
      if (gen !== app.resumeGen) return;
      for (const id of known) {
        if (!(id in (r.positions || {}))) dropConversation(id); // no longer a member
      }
    }
    const list = await req('conversation.list', {});
    if (gen !== app.resumeGen) return;
    const fresh = [];
    for (const c of list.conversations || []) {
      if (!known.includes(c.conversation_id)) fresh.push(c.conversation_id);
      adopt(c);
    }
    if (fresh.length) await req('sync', { positions: state.positions(fresh) });
    if (gen !== app.resumeGen) return;
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

function onPush(frame) {
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
      const list = await req('conversation.list', {});
      const fresh = [];
      for (const c of list.conversations || []) {
        const known = app.state.convs.get(c.conversation_id);
        if (!known || known.placeholder) fresh.push(c.conversation_id);
        adopt(c);
      }
      if (fresh.length) await req('sync', { positions: app.state.positions(fresh) });
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
  req('message.send', { conversation_id: convId, client_msg_id: p.clientMsgId, body: p.body })
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
  if (!conv || document.visibilityState !== 'visible' || app.conn.state !== 'open' || !isAtBottom()) return;
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

function convTitle(conv) {
  if (conv.kind === 'direct') return conv.members.filter((u) => u !== app.me)[0] || conv.title || 'Direct message';
  if (conv.title) return conv.title;
  const others = conv.members.filter((u) => u !== app.me);
  return others.length ? others.join(', ') : conv.placeholder ? 'Loading…' : 'Group';
}

function convAvatar(conv) {
  const name = conv.kind === 'direct' ? convTitle(conv) : conv.title || convTitle(conv);
  return avatar(name, conv.kind === 'group' ? 'group' : '');
}

function preview(conv) {
  const m = conv.lastMessage;
  if (!m) return conv.placeholder ? '' : 'No messages yet';
  const who = m.sender_id === app.me ? 'You: ' : conv.kind === 'group' ? `${m.sender_id}: ` : '';
  return who + (m.deleted ? 'Message deleted' : m.body.replace(/\s+/g, ' '));
}

function renderList() {
  const ul = $('#conv-list');
  const convs = app.state.ordered();
  const items = convs.map((conv) => {
    const title = convTitle(conv);
    const unread = conv.unread > 0 ? conv.unread : 0;
    const label = `${conv.kind === 'direct' ? 'Direct message with' : 'Group'} ${title}${unread ? `, ${unread} unread` : ''}`;
    return h(
      'li',
      {},
      h(
        'button',
        {
          type: 'button',
          class: `conv-item${conv.id === app.activeId ? ' active' : ''}${unread ? ' has-unread' : ''}`,
          'data-conversation-id': conv.id,
          'aria-label': label,
          'aria-current': conv.id === app.activeId ? 'true' : null,
          onclick: () => selectConversation(conv.id),
        },
        convAvatar(conv),
        h(
          'span',
          { class: 'conv-text' },
          h('span', { class: 'conv-line' }, h('span', { class: 'conv-name', text: title }), h('time', { class: 'conv-time', text: shortTime(conv.activity()) })),
          h(
            'span',
            { class: 'conv-line' },
            h('span', { class: 'conv-preview', text: preview(conv) }),
            unread ? h('span', { class: 'badge', 'aria-hidden': 'true', text: unread > 99 ? '99+' : String(unread) }) : null,
          ),
        ),
      ),
    );
  });
  setChildren(ul, items);
  $('#conv-empty').hidden = convs.length > 0 || app.syncing || app.conn.state !== 'open';
  const total = convs.reduce((n, c) => n + (c.unread > 0 ? c.unread : 0), 0);
  document.title = total ? `(${total}) Parley` : 'Parley';
}

function selectConversation(id) {
  if (app.editing) cancelEdit();
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
  $('#conv-title').textContent = convTitle(conv);
  const others = conv.members.filter((u) => u !== app.me);
  $('#conv-sub').textContent =
    conv.kind === 'direct' ? 'Direct message' : `${conv.members.length} member${conv.members.length === 1 ? '' : 's'} · ${['you', ...others].join(', ')}`;
  setChildren($('#conv-avatar'), convAvatar(conv));
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
  const ol = $('#message-list');
  const msgs = conv.list();
  const lastOwn = [...msgs].reverse().find((m) => m.sender_id === app.me && !m.deleted);
  const seen = lastOwn ? conv.seenBy(lastOwn.seq, app.me) : [];
  const rows = [];
  let prev = null;
  let prevDay = '';
  const push = (key, sig, build) => rows.push({ key, sig, build });
  for (const m of msgs) {
    const day = new Date(m.sent_at).toDateString();
    if (day !== prevDay) {
      push(`d:${day}`, dayLabel(m.sent_at), () => h('li', { class: 'day', role: 'separator' }, h('span', { text: dayLabel(m.sent_at) })));
      prevDay = day;
      prev = null;
    }
    const cont = !!prev && prev.sender_id === m.sender_id && new Date(m.sent_at) - new Date(prev.sent_at) < GROUP_GAP_MS;
    const status = m === lastOwn ? receiptText(conv, seen) : '';
    push(`m:${m.message_id}`, [m.body, m.edited_at, m.deleted, cont, status].join('\u0000'), () => messageItem(conv, m, cont, status));
    prev = m;
  }
  for (const p of conv.pending.values()) {
    push(`p:${p.clientMsgId}`, [p.state, p.body, p.error].join('\u0000'), () => pendingItem(conv, p));
  }
  reconcile(ol, rows);
  if (atBottom) {
    box.scrollTop = box.scrollHeight;
    app.stickToBottom = false;
    $('#jump').hidden = true;
  }
}

function receiptText(conv, seen) {
  if (!seen.length) return 'Sent';
  if (conv.kind === 'direct') return 'Seen';
  return `Seen by ${seen.join(', ')}`;
}

function reconcile(parent, rows) {
  const existing = new Map();
  for (const el of parent.children) existing.set(el.dataset.key, el);
  let cursor = parent.firstElementChild;
  for (const row of rows) {
    let el = existing.get(row.key);
    if (el && el._sig !== row.sig) {
      const fresh = row.build();
      fresh.dataset.key = row.key;
      fresh._sig = row.sig;
      el.replaceWith(fresh);
      if (cursor === el) cursor = fresh;
      el = fresh;
    } else if (!el) {
      el = row.build();
      el.dataset.key = row.key;
      el._sig = row.sig;
    }
    existing.delete(row.key);
    if (el !== cursor) parent.insertBefore(el, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const el of existing.values()) el.remove();
}

function messageItem(conv, m, cont, status) {
  const own = m.sender_id === app.me;
  const body = m.deleted
    ? h('p', { class: 'body deleted', text: 'This message was deleted' })
    : h('p', { class: 'body' }, linkified(m.body));
  const actions =
    own && !m.deleted
      ? h(
          'div',
          { class: 'msg-actions' },
          h('button', { type: 'button', class: 'act', 'aria-label': 'Edit message', title: 'Edit', onclick: () => startEdit(conv, m) }, icon('edit')),
          h('button', { type: 'button', class: 'act', 'aria-label': 'Delete message', title: 'Delete', onclick: () => confirmDelete(conv, m) }, icon('trash')),
        )
      : null;
  return h(
    'li',
    {
      class: `msg${own ? ' own' : ''}${cont ? ' cont' : ''}${m.deleted ? ' is-deleted' : ''}`,
      'data-message-id': m.message_id,
      'data-seq': m.seq,
      'data-sender': m.sender_id,
    },
    own || cont ? null : avatar(m.sender_id),
    h(
      'div',
      { class: 'bubble-wrap' },
      own || cont ? null : h('div', { class: 'sender', text: m.sender_id }),
      h(
        'div',
        { class: 'bubble-row' },
        h(
          'div',
          { class: 'bubble' },
          body,
          h(
            'span',
            { class: 'meta' },
            m.edited_at && !m.deleted ? h('span', { class: 'edited', title: `Edited ${fullTime(m.edited_at)}`, text: 'edited' }) : null,
            h('time', { datetime: m.sent_at, title: fullTime(m.sent_at), text: clockTime(m.sent_at) }),
          ),
        ),
        actions,
      ),
      status ? h('div', { class: `receipt${status === 'Sent' ? '' : ' seen'}`, text: status }) : null,
    ),
  );
}

function pendingItem(conv, p) {
  const failed = p.state === 'failed';
  return h(
    'li',
    { class: `msg own pending${failed ? ' failed' : ''}`, 'data-client-msg-id': p.clientMsgId },
    h(
      'div',
      { class: 'bubble-wrap' },
      h('div', { class: 'bubble-row' }, h('div', { class: 'bubble' }, h('p', { class: 'body' }, linkified(p.body)))),
      failed
        ? h(
            'div',
            { class: 'receipt error' },
            h('span', { text: `Not sent: ${p.error || 'error'} ` }),
            h('button', { type: 'button', class: 'link-btn', 'aria-label': 'Retry sending', onclick: () => retryPending(conv, p) }, 'Retry'),
            ' · ',
            h('button', { type: 'button', class: 'link-btn', 'aria-label': 'Discard message', onclick: () => discardPending(conv, p) }, 'Discard'),
          )
        : h('div', { class: 'receipt' }, icon('clock'), h('span', { text: 'Sending…' })),
    ),
  );
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
  who.sort();
  let text = '';
  if (who.length === 1) text = `${who[0]} is typing…`;
  else if (who.length === 2) text = `${who[0]} and ${who[1]} are typing…`;
  else if (who.length > 2) text = 'Several people are typing…';
  el.textContent = text;
  el.classList.toggle('on', !!text);
  if (next !== Infinity) app.typingTimer = setTimeout(renderTyping, next - now + 20);
}

const ICONS = {
  edit: 'M4 20h4L19 9l-4-4L4 16zM14 6l4 4',
  trash: 'M5 7h14M10 11v6M14 11v6M7 7l1 13h8l1-13M9 7V4h6v3',
  clock: 'M12 7v5l3 2M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z',
};

function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
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
  const ok = await confirmDialog(`Leave “${convTitle(conv)}”?`, 'You will stop receiving its messages.', 'Leave');
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
