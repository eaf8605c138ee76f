package domain

import "time"

// Conversation kinds.
const (
	KindDirect = "direct"
	KindGroup  = "group"
)

// Message is the client-facing message object.
type Message struct {
	ConversationID string     `json:"conversation_id"`
	MessageID      string     `json:"message_id"`
	Seq            int64      `json:"seq"`
	SenderID       string     `json:"sender_id"`
	ClientMsgID    string     `json:"client_msg_id"`
	Body           string     `json:"body"`
	ReplyTo        string     `json:"reply_to,omitempty"`
	SentAt         time.Time  `json:"sent_at"`
	EditedAt       *time.Time `json:"edited_at,omitempty"`
	Deleted        bool       `json:"deleted"`
	// Reactions maps an emoji to the users who reacted with it, in the
	// order they did (omitted when none).
	Reactions map[string][]string `json:"reactions,omitempty"`
}

// Conversation is the client-facing conversation object.
type Conversation struct {
	ConversationID string    `json:"conversation_id"`
	Kind           string    `json:"kind"`
	Title          string    `json:"title"`
	Members        []string  `json:"members"`
	CreatedAt      time.Time `json:"created_at"`
	LastSeq        int64     `json:"last_seq"`
	Unread         int64     `json:"unread"`
	LastMessage    *Message  `json:"last_message,omitempty"`
	// ReadSeqs holds the read cursors (user → up_to_seq) of the members who
	// have read something, so a client can show "seen by" without waiting
	// for new read pushes. Set by conversation.list.
	ReadSeqs map[string]int64 `json:"read_seqs,omitempty"`
}
