package commands

import (
	"context"

	"github.com/parley-chat/parley/domain"
)

// DeleteMessage tombstones one's own message; it stays in history as deleted.
type DeleteMessage struct {
	ConversationID string `json:"conversation_id"`
	MessageID      string `json:"message_id"`
}

// DeleteMessageHandler handles DeleteMessage.
type DeleteMessageHandler struct {
	log   EventLog
	msgs  ownMessages
	clock Clock
}

// NewDeleteMessageHandler builds the handler (clock nil: the real one).
func NewDeleteMessageHandler(log EventLog, access MemberCheck, fresh Freshness, read MessageReadModel, locks MessageLocks, clock Clock) DeleteMessageHandler {
	mustHave("DeleteMessageHandler", map[string]any{"log": log, "access": access, "fresh": fresh, "read": read, "locks": locks})
	return DeleteMessageHandler{log: log, msgs: ownMessages{access: access, fresh: fresh, read: read, locks: locks}, clock: clockOr(clock)}
}

// Handle logs the tombstone; deleting a deleted message is a no-op.
func (h DeleteMessageHandler) Handle(ctx context.Context, actor string, c DeleteMessage) error {
	if err := domain.ValidateID("conversation_id", c.ConversationID); err != nil {
		return err
	}
	if err := domain.ValidateID("message_id", c.MessageID); err != nil {
		return err
	}
	m, unlock, err := h.msgs.get(ctx, actor, c.ConversationID, c.MessageID)
	if err != nil {
		return err
	}
	defer unlock()
	if m.Deleted {
		return nil
	}
	_, _, err = appendEvent(ctx, h.log, h.clock, domain.EvMessageDeleted, c.ConversationID, actor,
		domain.MessageDeleted{MessageID: m.MessageID, MessageSeq: m.Seq})
	return err
}
