package commands

import (
	"context"
	"fmt"
	"slices"

	"github.com/parley-chat/parley/domain"
)

// ReactMessage is the data of message.react and message.unreact.
type ReactMessage struct {
	ConversationID string `json:"conversation_id"`
	MessageID      string `json:"message_id"`
	Emoji          string `json:"emoji"`
}

// Validate checks every field.
func (c ReactMessage) Validate() error {
	if err := domain.ValidateID("conversation_id", c.ConversationID); err != nil {
		return err
	}
	if err := domain.ValidateID("message_id", c.MessageID); err != nil {
		return err
	}
	return domain.ValidateEmoji(c.Emoji)
}

// ReactHandler adds and removes a member's reactions to a message.
type ReactHandler struct {
	log    EventLog
	access MemberCheck
	fresh  Freshness
	read   MessageReadModel
	clock  Clock
}

// NewReactHandler builds the handler (clock nil: the real one).
func NewReactHandler(log EventLog, access MemberCheck, fresh Freshness, read MessageReadModel, clock Clock) ReactHandler {
	mustHave("ReactHandler", map[string]any{"log": log, "access": access, "fresh": fresh, "read": read})
	return ReactHandler{log: log, access: access, fresh: fresh, read: read, clock: clockOr(clock)}
}

// Handle adds (add) or removes actor's emoji on the message and returns the
// message with its reactions. A reaction the message already has (or a
// removal of one it has not) appends nothing: a user's same reaction twice
// is one. Two at once may both be logged; the read model keeps one.
func (h ReactHandler) Handle(ctx context.Context, actor string, c ReactMessage, add bool) (domain.Message, error) {
	if err := c.Validate(); err != nil {
		return domain.Message{}, err
	}
	if err := h.access.RequireMember(ctx, c.ConversationID, actor); err != nil {
		return domain.Message{}, err
	}
	if err := h.fresh.WaitProjected(ctx, c.ConversationID); err != nil {
		return domain.Message{}, err
	}
	m, err := h.read.Message(ctx, c.ConversationID, c.MessageID)
	if err != nil {
		return m, err
	}
	if m.Deleted {
		return m, fmt.Errorf("%w: message %s is deleted", domain.ErrConflict, c.MessageID)
	}
	has := slices.Contains(m.Reactions[c.Emoji], actor)
	if has == add {
		return m, nil
	}
	if add {
		if err := reactionFits(m, actor, c.Emoji); err != nil {
			return m, err
		}
	}
	typ := domain.EvReactionRemoved
	if add {
		typ = domain.EvReactionAdded
	}
	if _, _, err := appendEvent(ctx, h.log, h.clock, typ, c.ConversationID, actor,
		domain.Reaction{MessageID: m.MessageID, Emoji: c.Emoji}); err != nil {
		return m, err
	}
	m.Reactions = withReaction(m.Reactions, c.Emoji, actor, add)
	return m, nil
}

// reactionFits refuses a new reaction past domain.MaxReactionsPerUser of
// actor's on m, or a new emoji past domain.MaxEmojiPerMessage on m.
func reactionFits(m domain.Message, actor, emoji string) error {
	if _, ok := m.Reactions[emoji]; !ok && len(m.Reactions) >= domain.MaxEmojiPerMessage {
		return fmt.Errorf("%w: message %s has %d different reactions; add one of those", domain.ErrConflict, m.MessageID, domain.MaxEmojiPerMessage)
	}
	mine := 0
	for _, users := range m.Reactions {
		if slices.Contains(users, actor) {
			mine++
		}
	}
	if mine >= domain.MaxReactionsPerUser {
		return fmt.Errorf("%w: you have %d reactions on message %s; remove one first", domain.ErrConflict, domain.MaxReactionsPerUser, m.MessageID)
	}
	return nil
}

// withReaction returns reactions with user's emoji added or removed.
func withReaction(reactions map[string][]string, emoji, user string, add bool) map[string][]string {
	out := make(map[string][]string, len(reactions)+1)
	for e, users := range reactions {
		out[e] = slices.Clone(users)
	}
	if add {
		out[emoji] = append(out[emoji], user)
	} else {
		out[emoji] = slices.DeleteFunc(out[emoji], func(u string) bool { return u == user })
		if len(out[emoji]) == 0 {
			delete(out, emoji)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
