package commands

import (
	"context"

	json "github.com/segmentio/encoding/json"

	"github.com/parley-chat/parley/domain"
)

// Typing signals that the actor is typing. It goes through Redis only: never
// logged, never replayed.
type Typing struct {
	ConversationID string `json:"conversation_id"`
}

// TypingHandler handles Typing.
type TypingHandler struct {
	members   MemberList
	ephemeral Ephemeral
	access    MemberCheck
	clock     Clock
}

// Ephemeral carries pushes that are never logged (typing).
type Ephemeral interface {
	Publish(ctx context.Context, d domain.Delivery) error
}

// NewTypingHandler builds the handler (clock nil: the real one).
func NewTypingHandler(members MemberList, ephemeral Ephemeral, access MemberCheck, clock Clock) TypingHandler {
	mustHave("TypingHandler", map[string]any{"members": members, "ephemeral": ephemeral, "access": access})
	return TypingHandler{members: members, ephemeral: ephemeral, access: access, clock: clockOr(clock)}
}

// Handle pushes typing to the other members.
func (h TypingHandler) Handle(ctx context.Context, actor string, c Typing) error {
	if err := domain.ValidateID("conversation_id", c.ConversationID); err != nil {
		return err
	}
	if err := h.access.RequireMember(ctx, c.ConversationID, actor); err != nil {
		return err
	}
	ms, _, err := h.members.Memberships(ctx, c.ConversationID)
	if err != nil {
		return err
	}
	rcpt := make([]string, 0, len(ms))
	for u, m := range ms {
		if m.Member && u != actor {
			rcpt = append(rcpt, u)
		}
	}
	frame, _ := json.Marshal(domain.PushFrame{Type: domain.PushTyping,
		Data: domain.TypingPush{ConversationID: c.ConversationID, UserID: actor}})
	return h.ephemeral.Publish(ctx, domain.Delivery{ConversationID: c.ConversationID, Recipients: rcpt, Frame: frame,
		EventAtUnixMs: h.clock.Now().UnixMilli()})
}
