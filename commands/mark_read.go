package commands

import (
	"context"

	"github.com/parley-chat/parley/domain"
)

// MarkRead records that the actor has read everything up to Seq.
type MarkRead struct {
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
}

// MarkReadHandler handles MarkRead.
type MarkReadHandler struct {
	log    EventLog
	access MemberCheck
	clock  Clock
}

// NewMarkReadHandler builds the handler (clock nil: the real one).
func NewMarkReadHandler(log EventLog, access MemberCheck, clock Clock) MarkReadHandler {
	mustHave("MarkReadHandler", map[string]any{"log": log, "access": access})
	return MarkReadHandler{log: log, access: access, clock: clockOr(clock)}
}

// Handle logs the read cursor; it drives unread counts and read receipts.
func (h MarkReadHandler) Handle(ctx context.Context, actor string, c MarkRead) error {
	if err := domain.ValidateID("conversation_id", c.ConversationID); err != nil {
		return err
	}
	if err := domain.ValidateSeq("seq", c.Seq); err != nil {
		return err
	}
	if err := h.access.RequireMember(ctx, c.ConversationID, actor); err != nil {
		return err
	}
	_, _, err := appendEvent(ctx, h.log, h.clock, domain.EvReadMarked, c.ConversationID, actor, domain.ReadMarked{UpToSeq: c.Seq})
	return err
}
