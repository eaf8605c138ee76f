package domain

import (
	"fmt"
	"time"

	json "github.com/segmentio/encoding/json"
)

// Push types sent to clients (PROTOCOL.md "Events").
const (
	PushConversationCreated = "conversation.created"
	PushMessageNew          = "message.new"
	PushMessageEdited       = "message.edited"
	PushMessageDeleted      = "message.deleted"
	PushMemberJoined        = "member.joined"
	PushMemberLeft          = "member.left"
	PushRead                = "read"
	PushTyping              = "typing"
	PushPresence            = "presence"
	PushReactionAdded       = "reaction.added"
	PushReactionRemoved     = "reaction.removed"
)

// ReactionPush is the data of reaction.added and reaction.removed.
type ReactionPush struct {
	ConversationID string `json:"conversation_id"`
	MessageID      string `json:"message_id"`
	UserID         string `json:"user_id"`
	Emoji          string `json:"emoji"`
	Seq            int64  `json:"seq"`
}

// Presence statuses (PROTOCOL.md "Extensions").
const (
	PresenceOnline  = "online"
	PresenceOffline = "offline"
)

// Seen is a user's presence: Online, or offline since LastSeen (zero if
// never seen).
type Seen struct {
	Online   bool
	LastSeen time.Time
}

// PresencePush is the data of presence: LastSeen is when the user came
// online or went offline (RFC 3339).
type PresencePush struct {
	UserID   string `json:"user_id"`
	Status   string `json:"status"`
	LastSeen string `json:"last_seen"`
}

// ConversationCreatedPush is the data of conversation.created.
type ConversationCreatedPush struct {
	Conversation Conversation `json:"conversation"`
	Seq          int64        `json:"seq"`
}

// MessageDeletedPush is the data of message.deleted. Seq is the tombstone
// event's seq; MessageSeq is the deleted message's own seq.
type MessageDeletedPush struct {
	ConversationID string `json:"conversation_id"`
	MessageID      string `json:"message_id"`
	Seq            int64  `json:"seq"`
	MessageSeq     int64  `json:"message_seq"`
}

// MemberPush is the data of member.joined and member.left.
type MemberPush struct {
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	Seq            int64  `json:"seq"`
}

// ReadPush is the data of read.
type ReadPush struct {
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	UpToSeq        int64  `json:"up_to_seq"`
	Seq            int64  `json:"seq"`
}

// TypingPush is the data of typing.
type TypingPush struct {
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
}

// ToPush maps a durable event at seq to the push a member receives.
func ToPush(e Event, seq int64) (string, any, error) {
	switch e.Type {
	case EvConversationCreated:
		var p ConversationCreated
		if err := e.Payload(&p); err != nil {
			return "", nil, err
		}
		c := Conversation{ConversationID: e.ConversationID, Kind: p.Kind, Title: p.Title,
			Members: p.Members, CreatedAt: e.At, LastSeq: seq}
		return PushConversationCreated, ConversationCreatedPush{Conversation: c, Seq: seq}, nil
	case EvMessageSent:
		var p MessageSent
		if err := e.Payload(&p); err != nil {
			return "", nil, err
		}
		return PushMessageNew, Message{ConversationID: e.ConversationID, MessageID: p.MessageID, Seq: seq,
			SenderID: e.Actor, ClientMsgID: p.ClientMsgID, Body: p.Body, ReplyTo: p.ReplyTo, SentAt: e.At}, nil
	case EvMessageEdited:
		var p MessageEdited
		if err := e.Payload(&p); err != nil {
			return "", nil, err
		}
		at := e.At
		return PushMessageEdited, Message{ConversationID: e.ConversationID, MessageID: p.MessageID, Seq: p.MessageSeq,
			SenderID: e.Actor, ClientMsgID: p.ClientMsgID, Body: p.Body, ReplyTo: p.ReplyTo, SentAt: p.SentAt, EditedAt: &at}, nil
	case EvMessageDeleted:
		var p MessageDeleted
		if err := e.Payload(&p); err != nil {
			return "", nil, err
		}
		return PushMessageDeleted, MessageDeletedPush{ConversationID: e.ConversationID, MessageID: p.MessageID,
			Seq: seq, MessageSeq: p.MessageSeq}, nil
	case EvMemberJoined, EvMemberLeft:
		var p MemberChanged
		if err := e.Payload(&p); err != nil {
			return "", nil, err
		}
		typ := PushMemberJoined
		if e.Type == EvMemberLeft {
			typ = PushMemberLeft
		}
		return typ, MemberPush{ConversationID: e.ConversationID, UserID: p.UserID, Seq: seq}, nil
	case EvReadMarked:
		var p ReadMarked
		if err := e.Payload(&p); err != nil {
			return "", nil, err
		}
		return PushRead, ReadPush{ConversationID: e.ConversationID, UserID: e.Actor, UpToSeq: ClampRead(p.UpToSeq, seq), Seq: seq}, nil
	case EvReactionAdded, EvReactionRemoved:
		var p Reaction
		if err := e.Payload(&p); err != nil {
			return "", nil, err
		}
		typ := PushReactionAdded
		if e.Type == EvReactionRemoved {
			typ = PushReactionRemoved
		}
		return typ, ReactionPush{ConversationID: e.ConversationID, MessageID: p.MessageID, UserID: e.Actor, Emoji: p.Emoji, Seq: seq}, nil
	}
	return "", nil, fmt.Errorf("%w: unknown event type %q", ErrBadRequest, e.Type)
}

// EncodePush encodes the push frame of a durable event at seq.
func EncodePush(e Event, seq int64) ([]byte, error) {
	typ, data, err := ToPush(e, seq)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(PushFrame{Type: typ, Seq: seq, Data: data})
	if err != nil {
		return nil, fmt.Errorf("encode push: %w", err)
	}
	return b, nil
}

// ClampRead bounds a read cursor by the seq of the event that moves it: a
// read can only cover what was logged before it, so a cursor past the end
// of the conversation (a client bug or a hostile client) cannot mark
// messages read before they exist.
func ClampRead(upTo, eventSeq int64) int64 {
	return min(upTo, eventSeq-1)
}
