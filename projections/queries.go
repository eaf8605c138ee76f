package projections

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/domain"
)

var messageCols = `conversation_id, message_id, seq, sender_id, client_msg_id, body, sent_at, edited_at, deleted, coalesce(reply_to, ''),
	` + reactionsOf("messages")

// reactionsOf is the reactions of each row of the messages table named t:
// {"emoji": [user_id...]} in the order users reacted, NULL for none. One
// primary-key range read of the (small) reactions table per message.
func reactionsOf(t string) string {
	return `(SELECT jsonb_object_agg(x.emoji, x.users) FROM (SELECT r.emoji, jsonb_agg(r.user_id ORDER BY r.change_seq) AS users
		FROM {s}.reactions r WHERE r.conversation_id = ` + t + `.conversation_id AND r.message_id = ` + t + `.message_id AND r.present
		GROUP BY r.emoji) x)`
}

func scanMessage(row pgx.Row) (domain.Message, error) {
	var m domain.Message
	err := row.Scan(&m.ConversationID, &m.MessageID, &m.Seq, &m.SenderID, &m.ClientMsgID, &m.Body, &m.SentAt, &m.EditedAt, &m.Deleted, &m.ReplyTo,
		&m.Reactions)
	m.SentAt = m.SentAt.UTC()
	if m.EditedAt != nil {
		t := m.EditedAt.UTC()
		m.EditedAt = &t
	}
	return m, err
}

// Page selects a page of messages: before BeforeSeq (newest first, returned
// ascending), or after AfterSeq (oldest first).
type Page struct {
	BeforeSeq *int64
	AfterSeq  *int64
	Limit     int
}

// Messages returns a page of a conversation's messages in ascending seq.
func (s *Store) Messages(ctx context.Context, conv string, p Page) ([]domain.Message, bool, error) {
	var rows pgx.Rows
	var err error
	switch {
	case p.AfterSeq != nil:
		rows, err = s.pool.Query(ctx, s.q(`SELECT `+messageCols+` FROM {s}.messages
			WHERE conversation_id=$1 AND seq>$2 ORDER BY seq LIMIT $3`), conv, *p.AfterSeq, p.Limit+1)
	case p.BeforeSeq != nil:
		rows, err = s.pool.Query(ctx, s.q(`SELECT `+messageCols+` FROM {s}.messages
			WHERE conversation_id=$1 AND seq<$2 ORDER BY seq DESC LIMIT $3`), conv, *p.BeforeSeq, p.Limit+1)
	default:
		rows, err = s.pool.Query(ctx, s.q(`SELECT `+messageCols+` FROM {s}.messages
			WHERE conversation_id=$1 ORDER BY seq DESC LIMIT $2`), conv, p.Limit+1)
	}
	if err != nil {
		return nil, false, unavailable("messages", err)
	}
	msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Message, error) { return scanMessage(r) })
	if err != nil {
		return nil, false, unavailable("messages", err)
	}
	more := len(msgs) > p.Limit
	if more {
		msgs = msgs[:p.Limit]
	}
	if n := pageFits(msgs); n < len(msgs) {
		msgs, more = msgs[:n], true
	}
	if p.AfterSeq == nil {
		for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
			msgs[i], msgs[j] = msgs[j], msgs[i]
		}
	}
	return msgs, more, nil
}

// MaxPageBytes bounds the bodies and reactions of one history page
// (messageBytes): 200 bodies of 8 KiB would make a 1.6 MB reply (more once
// JSON-escaped), and a client that asks for many and does not read would
// hold them all. A page over it is cut (at least one message stays) and
// reports more.
const MaxPageBytes = 512 << 10

// pageFits is how many of msgs (in the order the page is cut from) fit in
// MaxPageBytes.
func pageFits(msgs []domain.Message) int {
	total := 0
	for i, m := range msgs {
		total += messageBytes(m)
		if total > MaxPageBytes && i > 0 {
			return i
		}
	}
	return len(msgs)
}

// messageBytes is what a page counts of m: its body and its reactions
// (each emoji and each user id of them).
func messageBytes(m domain.Message) int {
	n := len(m.Body)
	for emoji, users := range m.Reactions {
		n += len(emoji)
		for _, u := range users {
			n += len(u) + 3 // quotes and comma
		}
	}
	return n
}

// Message returns one message by id.
func (s *Store) Message(ctx context.Context, conv, messageID string) (domain.Message, error) {
	m, err := scanMessage(s.pool.QueryRow(ctx, s.q(`SELECT `+messageCols+` FROM {s}.messages
		WHERE conversation_id=$1 AND message_id=$2`), conv, messageID))
	if errors.Is(err, pgx.ErrNoRows) {
		return m, fmt.Errorf("%w: message %s", domain.ErrNotFound, messageID)
	}
	if err != nil {
		return m, unavailable("message", err)
	}
	return m, nil
}

// sentMessageSQL reads the (conversation_id, message_id) key, one probe an
// id.
var sentMessageSQL = `SELECT ` + messageCols + ` FROM {s}.messages
		WHERE conversation_id=$1 AND message_id = ANY($2::text[]) AND sender_id=$3 AND client_msg_id=$4 ORDER BY seq DESC LIMIT 1`

// SentMessage finds a send by its message id: the latest in the log of
// sender's messages with clientMsgID among ids (the idempotent send's
// fallback: commands derive a send's id from it, domain.SendMessageID; of
// the ids of consecutive windows, the latest send is the one a retry can
// be of).
func (s *Store) SentMessage(ctx context.Context, conv, sender, clientMsgID string, ids []string) (domain.Message, bool, error) {
	m, err := scanMessage(s.pool.QueryRow(ctx, s.q(sentMessageSQL), conv, ids, sender, clientMsgID))
	if errors.Is(err, pgx.ErrNoRows) {
		return m, false, nil
	}
	if err != nil {
		return m, false, unavailable("sent message", err)
	}
	return m, true, nil
}

// StoredEvent is an event with its seq, as the read model keeps it.
type StoredEvent struct {
	Event domain.Event
	Seq   int64
}

// eventsAfterSQL reads the events view: event_log's and messages' primary
// keys, one partition each, merged by seq.
const eventsAfterSQL = `SELECT seq, event_id, type, actor, at, data FROM {s}.events
		WHERE conversation_id=$1 AND seq>$2 ORDER BY seq LIMIT $3`

// EventsAfter returns up to limit events of conv with seq > after, and
// fewer once they hold maxBytes of data (at least one event); more says
// the page ended at either bound, not at the conversation's end. A slow
// client's replay keeps its page until it read it, and an event's data can
// be about 50 kB (a body of control characters escapes to six times its
// size): the bytes, not the count, bound what a connection holds.
func (s *Store) EventsAfter(ctx context.Context, conv string, after int64, limit, maxBytes int) (evs []StoredEvent, more bool, err error) {
	rows, err := s.pool.Query(ctx, s.q(eventsAfterSQL), conv, after, limit)
	if err != nil {
		return nil, false, unavailable("events", err)
	}
	defer rows.Close()
	size := 0
	for rows.Next() {
		if size >= maxBytes {
			more = true // Close reads past the rest without keeping it
			break
		}
		e := StoredEvent{Event: domain.Event{ConversationID: conv}}
		if err := rows.Scan(&e.Seq, &e.Event.ID, &e.Event.Type, &e.Event.Actor, &e.Event.At, &e.Event.Data); err != nil {
			return nil, false, unavailable("events", err)
		}
		e.Event.At = e.Event.At.UTC()
		evs = append(evs, e)
		size += len(e.Event.Data)
	}
	if err := rows.Err(); err != nil {
		return nil, false, unavailable("events", err)
	}
	return evs, more || len(evs) == limit, nil
}

// LeftAt is the seq of user's leave of conv; ok is false unless user's
// latest membership change there is a leave.
func (s *Store) LeftAt(ctx context.Context, conv, user string) (seq int64, ok bool, err error) {
	err = s.pool.QueryRow(ctx, s.q(`SELECT change_seq FROM {s}.members
		WHERE conversation_id=$1 AND user_id=$2 AND NOT is_member`), conv, user).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, unavailable("members", err)
	}
	return seq, true, nil
}

// Memberships returns every user's latest membership change in conv.
func (s *Store) Memberships(ctx context.Context, conv string) (map[string]domain.Membership, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT user_id, is_member, change_seq FROM {s}.members WHERE conversation_id=$1`), conv)
	if err != nil {
		return nil, unavailable("members", err)
	}
	out := map[string]domain.Membership{}
	var u string
	var m domain.Membership
	_, err = pgx.ForEachRow(rows, []any{&u, &m.Member, &m.Seq}, func() error { out[u] = m; return nil })
	if err != nil {
		return nil, unavailable("members", err)
	}
	return out, nil
}

const convCols = `c.conversation_id, c.kind, c.title, c.created_at, c.last_seq,
	(SELECT coalesce(array_agg(m2.user_id ORDER BY m2.user_id), '{}') FROM {s}.members m2
	  WHERE m2.conversation_id=c.conversation_id AND m2.is_member)`

func scanConv(row pgx.Row, extra ...any) (domain.Conversation, error) {
	var c domain.Conversation
	dest := append([]any{&c.ConversationID, &c.Kind, &c.Title, &c.CreatedAt, &c.LastSeq, &c.Members}, extra...)
	err := row.Scan(dest...)
	c.CreatedAt = c.CreatedAt.UTC()
	return c, err
}

// Conversation returns one conversation with its members.
func (s *Store) Conversation(ctx context.Context, conv string) (domain.Conversation, error) {
	c, err := scanConv(s.pool.QueryRow(ctx, s.q(`SELECT `+convCols+` FROM {s}.conversations c WHERE c.conversation_id=$1`), conv))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("%w: conversation %s", domain.ErrNotFound, conv)
	}
	if err != nil {
		return c, unavailable("conversation", err)
	}
	return c, nil
}

// ConversationPage is one page of a user's conversations, most recent
// activity first; Next is the cursor of the following page ("" at the end).
type ConversationPage struct {
	Conversations []domain.Conversation
	HasMore       bool
	Next          string
}

// Conversation list bounds: a page holds at most MaxConversationsPage
// conversations (DefaultConversationsPage unless asked) and about
// MaxConversationsPageBytes of them (each carries its members, read cursors
// and last message; a page over the bound is cut, one conversation always
// stays, and reports more).
const (
	DefaultConversationsPage  = 100
	MaxConversationsPage      = 200
	MaxConversationsPageBytes = 1 << 20
)

// ConversationsOf lists a page of the conversations user is a member of,
// most recent activity first, with unread counts and the last message,
// starting after cursor ("" for the first page). A conversation whose
// activity changes while a client pages moves to the top: it may be listed
// twice or on a page the client already read, and its push tells the client
// anyway.
func (s *Store) ConversationsOf(ctx context.Context, user, cursor string, limit int) (ConversationPage, error) {
	after, err := decodeConvCursor(cursor)
	if err != nil {
		return ConversationPage{}, err
	}
	if limit < 1 || limit > MaxConversationsPage {
		limit = DefaultConversationsPage
	}
	var at *time.Time
	if after.id != "" {
		at = &after.at
	}
	rows, err := s.pool.Query(ctx, s.q(`SELECT `+convCols+`,
		(SELECT count(*) FROM {s}.messages x WHERE x.conversation_id=c.conversation_id
		   AND x.seq>me.read_seq AND x.sender_id<>me.user_id AND NOT x.deleted),
		lm.message_id, lm.seq, lm.sender_id, lm.client_msg_id, lm.body, lm.sent_at, lm.edited_at, lm.deleted,
		(SELECT jsonb_object_agg(r.user_id, r.read_seq) FROM {s}.members r
		   WHERE r.conversation_id=c.conversation_id AND r.is_member AND r.read_seq >= 0),
		c.last_activity_at
		FROM {s}.members me
		JOIN {s}.conversations c ON c.conversation_id=me.conversation_id
		LEFT JOIN LATERAL (SELECT * FROM {s}.messages x WHERE x.conversation_id=c.conversation_id
		   AND x.seq<=c.last_message_seq ORDER BY x.seq DESC LIMIT 1) lm ON true
		WHERE me.user_id=$1 AND me.is_member
		  AND ($2::timestamptz IS NULL OR (c.last_activity_at, c.conversation_id) < ($2, $3))
		ORDER BY c.last_activity_at DESC, c.conversation_id DESC
		LIMIT $4`), user, at, after.id, limit+1)
	if err != nil {
		return ConversationPage{}, unavailable("conversations", err)
	}
	defer rows.Close()
	page := ConversationPage{Conversations: []domain.Conversation{}}
	size := 0
	var last convCursor
	for rows.Next() {
		c, activity, err := scanListed(rows)
		if err != nil {
			return ConversationPage{}, unavailable("conversations", err)
		}
		size += convSize(c)
		if len(page.Conversations) == limit || len(page.Conversations) > 0 && size > MaxConversationsPageBytes {
			page.HasMore = true
			break
		}
		page.Conversations = append(page.Conversations, c)
		last = convCursor{at: activity, id: c.ConversationID}
	}
	if err := rows.Err(); err != nil {
		return ConversationPage{}, unavailable("conversations", err)
	}
	if page.HasMore {
		page.Next = last.encode()
	}
	return page, nil
}

// scanListed reads one row of the conversation list.
func scanListed(rows pgx.Rows) (domain.Conversation, time.Time, error) {
	var lm struct {
		id, sender, cmid, body *string
		seq                    *int64
		sent, edited           *time.Time
		deleted                *bool
	}
	var unread int64
	var reads map[string]int64
	var activity time.Time
	c, err := scanConv(rows, &unread, &lm.id, &lm.seq, &lm.sender, &lm.cmid, &lm.body, &lm.sent, &lm.edited, &lm.deleted, &reads, &activity)
	if err != nil {
		return c, activity, err
	}
	c.Unread = unread
	c.ReadSeqs = reads
	if lm.id != nil {
		m := &domain.Message{ConversationID: c.ConversationID, MessageID: *lm.id, Seq: *lm.seq, SenderID: *lm.sender,
			ClientMsgID: *lm.cmid, Body: *lm.body, SentAt: lm.sent.UTC(), Deleted: *lm.deleted}
		if lm.edited != nil {
			t := lm.edited.UTC()
			m.EditedAt = &t
		}
		c.LastMessage = m
	}
	return c, activity, nil
}

// convSize estimates a listed conversation's encoded size.
func convSize(c domain.Conversation) int {
	n := 256 + len(c.Title) + 32*len(c.ReadSeqs)
	for _, m := range c.Members {
		n += len(m) + 3
	}
	if c.LastMessage != nil {
		n += 256 + len(c.LastMessage.Body) + len(c.LastMessage.ClientMsgID)
	}
	return n
}

// convCursor is where a conversation page ends: the last conversation's
// activity time and id, the list's sort key.
type convCursor struct {
	at time.Time
	id string
}

func (c convCursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.at.UnixMicro(), 10) + "." + c.id))
}

func decodeConvCursor(s string) (convCursor, error) {
	if s == "" {
		return convCursor{}, nil
	}
	bad := fmt.Errorf("%w: cursor: not a cursor this server returned", domain.ErrBadRequest)
	if len(s) > 256 {
		return convCursor{}, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return convCursor{}, bad
	}
	us, id, ok := strings.Cut(string(raw), ".")
	micros, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || domain.ValidateID("cursor", id) != nil {
		return convCursor{}, bad
	}
	return convCursor{at: time.UnixMicro(micros), id: id}, nil
}

// LastSeqs returns the last seq of each conversation the user is a member of.
func (s *Store) LastSeqs(ctx context.Context, user string) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT c.conversation_id, c.last_seq FROM {s}.members me
		JOIN {s}.conversations c ON c.conversation_id=me.conversation_id WHERE me.user_id=$1 AND me.is_member`), user)
	if err != nil {
		return nil, unavailable("last seqs", err)
	}
	out := map[string]int64{}
	var id string
	var seq int64
	_, err = pgx.ForEachRow(rows, []any{&id, &seq}, func() error { out[id] = seq; return nil })
	if err != nil {
		return nil, unavailable("last seqs", err)
	}
	return out, nil
}
