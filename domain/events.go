package domain

import (
	"bytes"
	"fmt"
	"time"

	json "github.com/segmentio/encoding/json"
)

// Event names are stable and versioned: renaming one breaks replay.
const (
	EvConversationCreated = "chat.conversation_created.v1"
	EvMemberJoined        = "chat.member_joined.v1"
	EvMemberLeft          = "chat.member_left.v1"
	EvMessageSent         = "chat.message_sent.v1"
	EvMessageEdited       = "chat.message_edited.v1"
	EvMessageDeleted      = "chat.message_deleted.v1"
	EvReadMarked          = "chat.read_marked.v1"
	EvReactionAdded       = "chat.reaction_added.v1"
	EvReactionRemoved     = "chat.reaction_removed.v1"
)

// Event is the envelope written to the log, keyed by ConversationID. Its seq
// is not in the payload: it is the offset the log gives it.
type Event struct {
	ID             string          `json:"id"`
	Type           string          `json:"type"`
	ConversationID string          `json:"conversation_id"`
	Actor          string          `json:"actor"`
	At             time.Time       `json:"at"`
	Data           json.RawMessage `json:"data"`
}

// ConversationCreated starts a conversation with its initial members.
type ConversationCreated struct {
	Kind    string   `json:"kind"`
	Title   string   `json:"title,omitempty"`
	Members []string `json:"members"`
}

// MemberChanged is the payload of MemberJoined and MemberLeft.
type MemberChanged struct {
	UserID string `json:"user_id"`
}

// MessageSent carries a new message.
type MessageSent struct {
	MessageID   string `json:"message_id"`
	ClientMsgID string `json:"client_msg_id"`
	Body        string `json:"body"`
	// ReplyTo is the message_id of a message of the same conversation
	// (PROTOCOL.md "Extensions"); empty for a message that replies to none.
	ReplyTo string `json:"reply_to,omitempty"`
}

// MessageEdited carries the new body and, so pushes need no lookup, the
// message's identity as first sent.
type MessageEdited struct {
	MessageID   string    `json:"message_id"`
	MessageSeq  int64     `json:"message_seq"`
	ClientMsgID string    `json:"client_msg_id"`
	SentAt      time.Time `json:"sent_at"`
	Body        string    `json:"body"`
	// ReplyTo is the message's own reply_to, so the pushed message is
	// whole (absent in edits logged before session 19).
	ReplyTo string `json:"reply_to,omitempty"`
}

// MessageDeleted is the tombstone of a message; it stays in history.
type MessageDeleted struct {
	MessageID  string `json:"message_id"`
	MessageSeq int64  `json:"message_seq"`
}

// ReadMarked moves a member's read cursor.
type ReadMarked struct {
	UpToSeq int64 `json:"up_to_seq"`
}

// Reaction is the payload of reaction_added and reaction_removed: the
// actor's emoji on a message of the event's conversation.
type Reaction struct {
	MessageID string `json:"message_id"`
	Emoji     string `json:"emoji"`
}

// NewEvent builds an envelope with a fresh id.
func NewEvent(typ, conversationID, actor string, at time.Time, payload any) (Event, error) {
	data, err := json.Marshal(payload)
	if err != nil {
		return Event{}, fmt.Errorf("marshal %s: %w", typ, err)
	}
	// Microseconds, as Postgres keeps them: a time reads the same in the
	// ack, the live push, history and the read models.
	return Event{ID: NewID("e_"), Type: typ, ConversationID: conversationID, Actor: actor, At: at.UTC().Truncate(time.Microsecond), Data: data}, nil
}

// MaxJSONDepth is encoding/json's nesting limit, which DecodeEvent keeps:
// segmentio/encoding/json has none, and a record must decode the same
// with either (FuzzJSONAgreesWithStdlib).
const MaxJSONDepth = 10000

// DecodeEvent parses an envelope read from the log and checks it.
func DecodeEvent(b []byte) (Event, error) {
	if TooDeep(b) {
		return Event{}, fmt.Errorf("%w: event envelope nested deeper than %d", ErrBadRequest, MaxJSONDepth)
	}
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("%w: event envelope: %v", ErrBadRequest, err)
	}
	if e.ID == "" || e.Type == "" || e.ConversationID == "" {
		return Event{}, fmt.Errorf("%w: event envelope lacks id, type or conversation_id", ErrBadRequest)
	}
	return e, nil
}

// Payload decodes the event's data into a payload struct.
func (e Event) Payload(into any) error {
	if err := json.Unmarshal(e.Data, into); err != nil {
		return fmt.Errorf("%w: %s payload: %v", ErrBadRequest, e.Type, err)
	}
	return nil
}

// Durable events that members see; read receipts too. Typing is not an event.
func IsKnownEvent(typ string) bool {
	switch typ {
	case EvConversationCreated, EvMemberJoined, EvMemberLeft, EvMessageSent,
		EvMessageEdited, EvMessageDeleted, EvReadMarked:
		return true
	}
	return false
}

// TooDeep reports JSON nested deeper than MaxJSONDepth. Counting brackets
// first keeps it to a fast scan for every ordinary record.
func TooDeep(b []byte) bool {
	if bytes.Count(b, []byte{'['})+bytes.Count(b, []byte{'{'}) <= MaxJSONDepth {
		return false
	}
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			escaped, inString = c == '\\', c != '"'
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > MaxJSONDepth {
				return true
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return false
}
