// DOM builders of the conversation list and the message list. They read the
// state and take callbacks; main.js decides when to call them.

import { avatar, clockTime, dayLabel, fullTime, h, linkified, shortTime } from './dom.js';

const GROUP_GAP_MS = 5 * 60 * 1000; // consecutive messages closer than this share a header

export function convTitle(conv, me) {
  if (conv.kind === 'direct') return conv.members.filter((u) => u !== me)[0] || conv.title || 'Direct message';
  if (conv.title) return conv.title;
  const others = conv.members.filter((u) => u !== me);
  return others.length ? others.join(', ') : conv.placeholder ? 'Loading…' : 'Group';
}

export function convAvatar(conv, me) {
  const name = conv.kind === 'direct' ? convTitle(conv, me) : conv.title || convTitle(conv, me);
  return avatar(name, conv.kind === 'group' ? 'group' : '');
}

function preview(conv, me) {
  const m = conv.lastMessage;
  if (!m) return conv.placeholder ? '' : 'No messages yet';
  const who = m.sender_id === me ? 'You: ' : conv.kind === 'group' ? `${m.sender_id}: ` : '';
  return who + (m.deleted ? 'Message deleted' : m.body.replace(/\s+/g, ' '));
}

/** One entry of the conversation list. */
export function convItem(conv, { me, active, onSelect, online = new Set() }) {
  const title = convTitle(conv, me);
  const here = (conv.members || []).filter((u) => u !== me && online.has(u));
  const unread = conv.unread > 0 ? conv.unread : 0;
  const label = `${conv.kind === 'direct' ? 'Direct message with' : 'Group'} ${title}${unread ? `, ${unread} unread` : ''}${here.length ? ', online' : ''}`;
  return h(
    'li',
    {},
    h(
      'button',
      {
        type: 'button',
        class: `conv-item${active ? ' active' : ''}${unread ? ' has-unread' : ''}`,
        'data-conversation-id': conv.id,
        'aria-label': label,
        'aria-current': active ? 'true' : null,
        onclick: () => onSelect(conv.id),
      },
      h(
        'span',
        { class: 'avatar-wrap' },
        convAvatar(conv, me),
        here.length ? h('span', { class: 'presence-dot', title: `${here.join(', ')} online`, 'data-online': here.join(' ') }) : null,
      ),
      h(
        'span',
        { class: 'conv-text' },
        h('span', { class: 'conv-line' }, h('span', { class: 'conv-name', text: title }), h('time', { class: 'conv-time', text: shortTime(conv.activity()) })),
        h(
          'span',
          { class: 'conv-line' },
          h('span', { class: 'conv-preview', text: preview(conv, me) }),
          unread ? h('span', { class: 'badge', 'aria-hidden': 'true', text: unread > 99 ? '99+' : String(unread) }) : null,
        ),
      ),
    ),
  );
}

/**
 * The rows of a conversation's message list: day separators, messages (with
 * the receipt under my newest one) and pending sends, each with a key and a
 * signature that changes whenever its element must be rebuilt.
 * handlers: {onEdit(m), onDelete(m), onRetry(p), onDiscard(p), onReact(m, emoji),
 * onReply(m), onThread(m)}.
 */
export function messageRows(conv, me, handlers) {
  const msgs = conv.list();
  const lastOwn = [...msgs].reverse().find((m) => m.sender_id === me && !m.deleted);
  const status = lastOwn ? receiptText(conv, conv.seenBy(lastOwn.seq, me)) : '';
  const rows = [];
  let prev = null;
  let prevDay = '';
  for (const m of msgs) {
    const day = new Date(m.sent_at).toDateString();
    if (day !== prevDay) {
      const label = dayLabel(m.sent_at);
      rows.push({ key: `d:${day}`, sig: label, build: () => h('li', { class: 'day', role: 'separator' }, h('span', { text: label })) });
      prevDay = day;
      prev = null;
    }
    const cont = !!prev && prev.sender_id === m.sender_id && new Date(m.sent_at) - new Date(prev.sent_at) < GROUP_GAP_MS;
    const st = m === lastOwn ? status : '';
    const replies = msgs.filter((x) => x.reply_to === m.message_id).length;
    const parent = m.reply_to ? conv.messages.get(m.reply_to) : null;
    const quote = m.reply_to ? (parent ? `${parent.sender_id}: ${parent.deleted ? 'deleted message' : parent.body}` : 'an earlier message') : '';
    rows.push({
      key: `m:${m.message_id}`,
      sig: [m.body, m.edited_at, m.deleted, cont, st, JSON.stringify(m.reactions || {}), replies, quote].join('\u0000'),
      build: () => messageItem(m, { me, own: m.sender_id === me, cont, status: st, replies, quote, ...handlers }),
    });
    prev = m;
  }
  for (const p of conv.pending.values()) {
    rows.push({ key: `p:${p.clientMsgId}`, sig: [p.state, p.body, p.error].join('\u0000'), build: () => pendingItem(p, handlers) });
  }
  return rows;
}

function receiptText(conv, seen) {
  if (!seen.length) return 'Sent';
  if (conv.kind === 'direct') return 'Seen';
  return `Seen by ${seen.join(', ')}`;
}

/** Makes parent's children the rows' elements, reusing those whose key and signature match. */
export function reconcile(parent, rows) {
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

/** The emoji the picker offers. */
export const PICKER = ['👍', '❤️', '😂', '🎉', '😮', '😢'];

function messageItem(m, { me, own, cont, status, replies, quote, onEdit, onDelete, onReact, onReply, onThread }) {
  const body = m.deleted
    ? h('p', { class: 'body deleted', text: 'This message was deleted' })
    : h('p', { class: 'body' }, linkified(m.body));
  const picker = h(
    'div',
    { class: 'picker', hidden: true, role: 'group', 'aria-label': 'Pick a reaction' },
    ...PICKER.map((e) => h('button', { type: 'button', 'aria-label': `React ${e}`, 'data-emoji': e, text: e, onclick: () => onReact?.(m, e) })),
  );
  const actions = m.deleted
    ? null
    : h(
        'div',
        { class: 'msg-actions' },
        h('button', { type: 'button', class: 'act', 'aria-label': 'React to message', title: 'React', text: '☺',
          onclick: () => { picker.hidden = !picker.hidden; } }),
        h('button', { type: 'button', class: 'act', 'aria-label': 'Reply to message', title: 'Reply', text: '↩', onclick: () => onReply?.(m) }),
        own ? h('button', { type: 'button', class: 'act', 'aria-label': 'Edit message', title: 'Edit', onclick: () => onEdit(m) }, icon('edit')) : null,
        own ? h('button', { type: 'button', class: 'act', 'aria-label': 'Delete message', title: 'Delete', onclick: () => onDelete(m) }, icon('trash')) : null,
        picker,
      );
  const reactions = Object.entries(m.reactions || {}).filter(([, users]) => users.length);
  const chips = reactions.length
    ? h(
        'div',
        { class: 'reactions' },
        ...reactions.map(([e, users]) =>
          h('button', {
            type: 'button',
            class: `reaction${users.includes(me) ? ' mine' : ''}`,
            'data-emoji': e,
            title: users.join(', '),
            'aria-label': `${e} ${users.length}: ${users.join(', ')}`,
            text: `${e} ${users.length}`,
            onclick: () => onReact?.(m, e),
          }),
        ),
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
          quote ? h('div', { class: 'quote', text: `↪ ${quote}` }) : null,
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
      chips,
      replies ? h('button', { type: 'button', class: 'link-btn thread-link', 'aria-label': `Open thread: ${replies} replies`,
        text: `${replies} ${replies === 1 ? 'reply' : 'replies'}`, onclick: () => onThread?.(m) }) : null,
      status ? h('div', { class: `receipt${status === 'Sent' ? '' : ' seen'}`, text: status }) : null,
    ),
  );
}

function pendingItem(p, { onRetry, onDiscard }) {
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
            h('button', { type: 'button', class: 'link-btn', 'aria-label': 'Retry sending', onclick: () => onRetry(p) }, 'Retry'),
            ' · ',
            h('button', { type: 'button', class: 'link-btn', 'aria-label': 'Discard message', onclick: () => onDiscard(p) }, 'Discard'),
          )
        : h('div', { class: 'receipt' }, icon('clock'), h('span', { text: 'Sending…' })),
    ),
  );
}

/** "bob is typing…" for the users typing now. */
export function typingText(users) {
  if (users.length === 1) return `${users[0]} is typing…`;
  if (users.length === 2) return `${users[0]} and ${users[1]} are typing…`;
  if (users.length > 2) return 'Several people are typing…';
  return '';
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
