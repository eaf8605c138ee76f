package commands

import (
	"context"
	"fmt"

	"github.com/parley-chat/parley/domain"
)

// LeaveConversation removes the actor from a group conversation.
type LeaveConversation struct {
	ConversationID string `json:"conversation_id"`
}

// LeaveConversationHandler handles LeaveConversation.
type LeaveConversationHandler struct {
	log     EventLog
	members MemberWriter
	access  MemberCheck
	clock   Clock
}

// NewLeaveConversationHandler builds the handler (clock nil: the real one).
func NewLeaveConversationHandler(log EventLog, members MemberWriter, access MemberCheck, clock Clock) LeaveConversationHandler {
	mustHave("LeaveConversationHandler", map[string]any{"log": log, "members": members, "access": access})
	return LeaveConversationHandler{log: log, members: members, access: access, clock: clockOr(clock)}
}

// Handle logs the leave; from its seq on the user receives nothing more.
func (h LeaveConversationHandler) Handle(ctx context.Context, actor string, c LeaveConversation) error {
	if err := domain.ValidateID("conversation_id", c.ConversationID); err != nil {
		return err
	}
	if err := h.access.RequireMember(ctx, c.ConversationID, actor); err != nil {
		return err
	}
	if domain.IsDirectID(c.ConversationID) {
		return fmt.Errorf("%w: a direct conversation cannot be left", domain.ErrBadRequest)
	}
	_, seq, err := appendEvent(ctx, h.log, h.clock, domain.EvMemberLeft, c.ConversationID, actor, domain.MemberChanged{UserID: actor})
	if err != nil {
		return err
	}
	cacheAfterAppend(ctx, "member left", c.ConversationID, func(ctx context.Context) error {
		return h.members.ApplyMembership(ctx, c.ConversationID, seq, false, actor)
	})
	return nil
}
