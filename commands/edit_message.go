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
	log   EventLog
	msgs  ownMessages
	clock Clock
}

// MessageLocks serializes the changes of one message across nodes: an
// edit and a delete each read the message, then append. Unserialized, a
// sender's edit on one device racing its delete on another could both be
// logged, the edit after the delete: the read models kept the tombstone,
// but the edit's push and sync carried the deleted message's new body as
// not deleted.
type MessageLocks interface {
	// LockMessage waits for the message's lock (until ctx ends) and
	// returns its release.
	LockMessage(ctx context.Context, conv, messageID string) (unlock func(), err error)
}

// MessageReadModel reads one message from the read model
// (domain.ErrNotFound when it has none).
type MessageReadModel interface {
	Message(ctx context.Context, conv, messageID string) (domain.Message, error)
}

// NewEditMessageHandler builds the handler (clock nil: the real one).
func NewEditMessageHandler(log EventLog, access MemberCheck, fresh Freshness, read MessageReadModel, locks MessageLocks, clock Clock) EditMessageHandler {
	mustHave("EditMessageHandler", map[string]any{"log": log, "access": access, "fresh": fresh, "read": read, "locks": locks})
	return EditMessageHandler{log: log, msgs: ownMessages{access: access, fresh: fresh, read: read, locks: locks}, clock: clockOr(clock)}
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
	m, unlock, err := h.msgs.get(ctx, actor, c.ConversationID, c.MessageID)
	if err != nil {
		return m, err
	}
	defer unlock()
	if m.Deleted {
		return m, fmt.Errorf("%w: message %s is deleted", domain.ErrConflict, c.MessageID)
	}
	e, _, err := appendEvent(ctx, h.log, h.clock, domain.EvMessageEdited, c.ConversationID, actor, domain.MessageEdited{
		MessageID: m.MessageID, MessageSeq: m.Seq, ClientMsgID: m.ClientMsgID, SentAt: m.SentAt, Body: c.Body, ReplyTo: m.ReplyTo})
	if err != nil {
		return m, err
	}
	m.Body, m.EditedAt = c.Body, &e.At
	return m, nil
}

// ownMessages loads messages for their sender to change (edit, delete).
type ownMessages struct {
	access MemberCheck
	fresh  Freshness
	read   MessageReadModel
	locks  MessageLocks
}

// get loads a message the actor sent, in a conversation they are in,
// holding the message's lock (unlock releases it; nil on an error): what
// the read sees holds until the caller's append. The lock is taken once
// the actor is known to be a member, so outsiders cannot hold it.
func (o ownMessages) get(ctx context.Context, actor, conv, id string) (m domain.Message, unlock func(), err error) {
	if err := o.access.RequireMember(ctx, conv, actor); err != nil {
		return domain.Message{}, nil, err
	}
	release, err := o.locks.LockMessage(ctx, conv, id)
	if err != nil {
		return domain.Message{}, nil, err
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	// Read after the read model has every event acked so far, so an edit
	// sees the latest state of the message (a delete acked a moment ago).
	if err := o.fresh.WaitProjected(ctx, conv); err != nil {
		return domain.Message{}, nil, err
	}
	m, err = o.read.Message(ctx, conv, id)
	if err != nil {
		return m, nil, err
	}
	if m.SenderID != actor {
		return m, nil, fmt.Errorf("%w: only the sender may change message %s", domain.ErrForbidden, id)
	}
	return m, release, nil
}
