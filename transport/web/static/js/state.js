// The client's model of the user's conversations. It has no DOM and no
// network: it applies replies and pushes and says what changed, so the rules
// that keep messages exactly-once live in one place (and run under Node in
// tests/browser/state.test.js).

// How a conversation is resumed: `position` is the seq of the last durable
// push applied. Only pushes (live or replayed by sync) move it, never an ack:
// an ack can overtake earlier pushes of the same conversation.

export class ChatState {
  constructor(me) {
    this.me = me;
    /** @type {Map<string, Conv>} */
    this.convs = new Map();
  }

  // --- conversations -------------------------------------------------------

  /** Adds or refreshes a conversation from a server object. Returns [conv, isNew]. */
  upsert(c) {
    let conv = this.convs.get(c.conversation_id);
    const isNew = !conv;
    if (isNew) {
      conv = new Conv(c.conversation_id);
      conv.position = c.last_seq || 0;
      conv.unread = c.unread || 0;
      this.convs.set(conv.id, conv);
    }
    conv.kind = c.kind || conv.kind;
    conv.title = c.title ?? conv.title;
    if (Array.isArray(c.members)) conv.members = [...c.members];
    if (c.created_at) conv.createdAt = c.created_at;
    conv.lastSeq = Math.max(conv.lastSeq, c.last_seq || 0);
    conv.placeholder = false;
    if (c.last_message) this.#putMessage(conv, c.last_message, false);
    if (c.read_seqs) {
      // Read cursors (an extension of conversation.list): receipts at once.
      for (const [u, s] of Object.entries(c.read_seqs)) conv.noteRead(u, s);
      conv.myRead = Math.max(conv.myRead, c.read_seqs[this.me] ?? 0);
    }
    return [conv, isNew];
  }

  remove(id) {
    this.convs.delete(id);
  }

  /** Conversations, most recent activity first. */
  ordered() {
    return [...this.convs.values()].sort((a, b) => b.activity().localeCompare(a.activity()) || a.id.localeCompare(b.id));
  }

  /** Resume positions for `sync`. */
  positions(ids = [...this.convs.keys()]) {
    const p = {};
    for (const id of ids) {
      const c = this.convs.get(id);
      if (c) p[id] = c.position;
    }
    return p;
  }

  // --- pushes --------------------------------------------------------------

  /**
   * Applies one push frame. Returns {type, conv, ...} describing the change,
   * or {type: 'dup'} for a durable push at or below the position (already
   * applied), or {type: 'unknown', id} for a conversation not known yet.
   */
  apply(frame) {
    const { type, data } = frame;
    if (!data || typeof data !== 'object') return { type: 'ignored' };
    if (type === 'typing') {
      const conv = this.convs.get(data.conversation_id);
      if (!conv || data.user_id === this.me) return { type: 'ignored' };
      return { type: 'typing', conv, user: data.user_id };
    }
    const seq = Number(frame.seq ?? data.seq ?? 0);
    const convId = type === 'conversation.created' ? data.conversation?.conversation_id : data.conversation_id;
    if (!convId) return { type: 'ignored' };
    let conv = this.convs.get(convId);
    if (type === 'conversation.created') {
      if (!conv) {
        [conv] = this.upsert({ ...data.conversation, last_seq: 0, unread: 0 });
      } else if (conv.placeholder) {
        this.upsert(data.conversation);
      }
    }
    if (!conv) {
      if (type === 'member.joined' && data.user_id === this.me) {
        // Added to a group: the details come with the next conversation.list.
        conv = new Conv(convId);
        conv.placeholder = true;
        conv.members = [this.me];
        this.convs.set(convId, conv);
      } else {
        return { type: 'unknown', id: convId, seq };
      }
    }
    if (seq > 0) {
      if (seq <= conv.position) return { type: 'dup', conv, seq };
      conv.position = seq;
      conv.lastSeq = Math.max(conv.lastSeq, seq);
    }
    switch (type) {
      case 'conversation.created':
        return { type: 'conversation', conv };
      case 'message.new': {
        const fresh = this.#putMessage(conv, data, true);
        conv.clearTyping(data.sender_id);
        // Each message.new push is applied once (position), so it counts once.
        if (data.sender_id !== this.me && !data.deleted) conv.unread++;
        return { type: 'message', conv, message: conv.messages.get(data.message_id), fresh };
      }
      case 'message.edited':
        this.#putMessage(conv, data, false);
        return { type: 'message', conv, message: conv.messages.get(data.message_id), fresh: false };
      case 'message.deleted':
        return { type: 'message', conv, message: this.#markDeleted(conv, data), fresh: false };
      case 'reaction.added':
      case 'reaction.removed': {
        const m = conv.messages.get(data.message_id);
        if (!m) return { type: 'ignored', conv };
        const users = (m.reactions?.[data.emoji] || []).filter((u) => u !== data.user_id);
        if (type === 'reaction.added') users.push(data.user_id);
        m.reactions = { ...(m.reactions || {}), [data.emoji]: users };
        if (!users.length) delete m.reactions[data.emoji];
        conv.version++;
        return { type: 'message', conv, message: m, fresh: false };
      }
      case 'member.joined':
        if (!conv.members.includes(data.user_id)) conv.members = [...conv.members, data.user_id].sort();
        return { type: 'members', conv };
      case 'member.left':
        conv.members = conv.members.filter((u) => u !== data.user_id);
        conv.reads.delete(data.user_id);
        if (data.user_id === this.me) {
          this.remove(conv.id);
          return { type: 'removed', conv };
        }
        return { type: 'members', conv };
      case 'read':
        conv.noteRead(data.user_id, data.up_to_seq);
        if (data.user_id === this.me) this.markRead(conv, data.up_to_seq);
        return { type: 'read', conv, user: data.user_id };
      default:
        return { type: 'ignored', conv };
    }
  }

  // --- messages ------------------------------------------------------------

  /** Merges a `history` page (ascending seq). */
  mergeHistory(conv, messages, hasMore) {
    for (const m of messages) {
      this.#putMessage(conv, m, false);
      this.setReactions(conv, m);
    }
    const oldest = messages.length ? messages[0].seq : null;
    if (oldest !== null && (conv.oldestLoaded === null || oldest < conv.oldestLoaded)) conv.oldestLoaded = oldest;
    conv.hasMore = hasMore && messages.length > 0;
    conv.historyLoaded = true;
  }

  /** Applies the message of an ok reply (send, edit, react). */
  applyAck(conv, m) {
    this.#putMessage(conv, m, false);
    this.setReactions(conv, m);
  }

  /** Takes a message's reactions as the server gave them (history, an ack). */
  setReactions(conv, m) {
    const old = conv.messages.get(m?.message_id);
    if (!old || JSON.stringify(old.reactions || {}) === JSON.stringify(m.reactions || {})) return;
    old.reactions = m.reactions ? { ...m.reactions } : undefined;
    conv.version++;
  }

  /** Records a read cursor of ours (from a push, or optimistically). */
  markRead(conv, seq) {
    if (seq <= conv.myRead) return;
    conv.myRead = seq;
    conv.noteRead(this.me, seq);
    const newest = conv.newestSeq();
    if (newest !== null && seq >= newest) {
      conv.unread = 0;
      return;
    }
    // Only what is loaded can be counted; the server's count is the same
    // whenever the loaded messages reach back to the cursor.
    let n = 0;
    for (const m of conv.messages.values()) if (m.seq > seq && m.sender_id !== this.me && !m.deleted) n++;
    conv.unread = Math.min(conv.unread, n);
  }

  /** Adds a pending send; returns it. */
  addPending(conv, body, clientMsgId) {
    const p = { clientMsgId, body, state: 'sending', error: null, at: new Date().toISOString() };
    conv.pending.set(clientMsgId, p);
    conv.version++;
    return p;
  }

  // Inserts or updates a message, keeping the newest version and never
  // undeleting. Returns true when the message was not known before.
  #putMessage(conv, m, live) {
    if (!m || !m.message_id) return false;
    if (m.sender_id === this.me && m.client_msg_id && conv.pending.delete(m.client_msg_id)) conv.version++;
    const old = conv.messages.get(m.message_id);
    if (!old) {
      conv.messages.set(m.message_id, { ...m });
      conv.sorted = null;
      conv.version++;
      if (!conv.lastMessage || m.seq >= conv.lastMessage.seq) conv.lastMessage = conv.messages.get(m.message_id);
      return live;
    }
    if (old.deleted) return false;
    if (m.deleted) {
      old.deleted = true;
      old.body = '';
      conv.version++;
      return false;
    }
    if (m.edited_at && (!old.edited_at || m.edited_at >= old.edited_at) && (m.body !== old.body || m.edited_at !== old.edited_at)) {
      old.body = m.body;
      old.edited_at = m.edited_at;
      conv.version++;
    }
    return false;
  }

  #markDeleted(conv, d) {
    const m = conv.messages.get(d.message_id);
    if (!m) return null;
    if (!m.deleted) {
      m.deleted = true;
      m.body = '';
      conv.version++;
      if (m.sender_id !== this.me && m.seq > conv.myRead && conv.unread > 0) conv.unread--;
    }
    return m;
  }
}

export class Conv {
  constructor(id) {
    this.id = id;
    this.kind = 'group';
    this.title = '';
    this.members = [];
    this.createdAt = '';
    this.lastSeq = 0;
    this.position = 0;
    this.unread = 0;
    this.myRead = 0;
    this.placeholder = false;
    /** @type {Map<string, object>} message_id → Message */
    this.messages = new Map();
    /** @type {Map<string, object>} client_msg_id → pending send */
    this.pending = new Map();
    /** @type {Map<string, number>} user → read cursor */
    this.reads = new Map();
    /** @type {Map<string, number>} user → typing until (ms) */
    this.typing = new Map();
    this.lastMessage = null;
    this.historyLoaded = false;
    this.oldestLoaded = null;
    this.hasMore = true;
    this.sorted = null;
    this.version = 0; // bumped on every change of messages or pending
  }

  noteRead(user, seq) {
    if (seq > (this.reads.get(user) ?? -1)) {
      this.reads.set(user, seq);
      this.version++;
    }
  }

  clearTyping(user) {
    this.typing.delete(user);
  }

  /** Messages in seq order. */
  list() {
    if (!this.sorted) this.sorted = [...this.messages.values()].sort((a, b) => a.seq - b.seq);
    return this.sorted;
  }

  newestSeq() {
    const l = this.list();
    return l.length ? l[l.length - 1].seq : null;
  }

  activity() {
    return this.lastMessage?.sent_at || this.createdAt || '';
  }

  /** Users other than me whose read cursor covers seq. */
  seenBy(seq, me) {
    const out = [];
    for (const [u, s] of this.reads) if (u !== me && s >= seq && this.members.includes(u)) out.push(u);
    return out.sort();
  }
}
