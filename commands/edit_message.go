package commands

import (
	"context"
	"fmt"

	"github.com/parley-chat/parley/domain"
)

// EditMessage replaces the body of one's own message.
type EditMessage struct {
	ConversationID string `json:"conversation_id"`
	MessageID      string `json:"message_id"`
	Body           string `json:"body"`
}

// EditMessageHandler handles EditMessage.
type EditMessageHandler struct {
	d      *Deps
	access Access
}

// Handle logs the edit and returns the edited message.
func (h EditMessageHandler) Handle(ctx context.Context, actor string, c EditMessage) (domain.Message, error) {
	if err := domain.ValidateID("conversation_id", c.ConversationID); err != nil {
		return domain.Message{}, err
	}
	if err := domain.ValidateID("message_id", c.MessageID); err != nil {
		return domain.Message{}, err
	}
	if err := domain.ValidateBody(c.Body); err != nil {
		return domain.Message{}, err
	}
	m, err := ownMessage(ctx, h.d, h.access, actor, c.ConversationID, c.MessageID)
	if err != nil {
		return m, err
	}
	if m.Deleted {
		return m, fmt.Errorf("%w: message %s is deleted", domain.ErrConflict, c.MessageID)
	}
	e, _, err := h.d.appendEvent(ctx, domain.EvMessageEdited, c.ConversationID, actor, domain.MessageEdited{
		MessageID: m.MessageID, MessageSeq: m.Seq, ClientMsgID: m.ClientMsgID, SentAt: m.SentAt, Body: c.Body})
	if err != nil {
		return m, err
	}
	m.Body, m.EditedAt = c.Body, &e.At
	return m, nil
}

// ownMessage loads a message the actor sent, in a conversation they are in.
func ownMessage(ctx context.Context, d *Deps, a Access, actor, conv, id string) (domain.Message, error) {
	if err := a.RequireMember(ctx, conv, actor); err != nil {
		return domain.Message{}, err
	}
	// Read after the read model has every event acked so far, so an edit
	// sees the latest state of the message (a delete acked a moment ago).
	if err := d.Fresh.WaitProjected(ctx, conv); err != nil {
		return domain.Message{}, err
	}
	m, err := d.Read.Message(ctx, conv, id)
	if err != nil {
		return m, err
	}
	if m.SenderID != actor {
		return m, fmt.Errorf("%w: only the sender may change message %s", domain.ErrForbidden, id)
	}
	return m, nil
}
