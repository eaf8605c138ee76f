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
	d      *Deps
	access Access
}

// Handle logs the tombstone; deleting a deleted message is a no-op.
func (h DeleteMessageHandler) Handle(ctx context.Context, actor string, c DeleteMessage) error {
	if err := domain.ValidateID("conversation_id", c.ConversationID); err != nil {
		return err
	}
	if err := domain.ValidateID("message_id", c.MessageID); err != nil {
		return err
	}
	m, err := ownMessage(ctx, h.d, h.access, actor, c.ConversationID, c.MessageID)
	if err != nil || m.Deleted {
		return err
	}
	_, _, err = h.d.appendEvent(ctx, domain.EvMessageDeleted, c.ConversationID, actor,
		domain.MessageDeleted{MessageID: m.MessageID, MessageSeq: m.Seq})
	return err
}
