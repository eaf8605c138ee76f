package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/parley-chat/parley/domain"
)

// CreateConversation starts a group, or opens the direct conversation of a
// pair (the same pair always gets the same conversation).
type CreateConversation struct {
	Kind    string   `json:"kind"`
	Title   string   `json:"title"`
	Members []string `json:"members"`
}

// CreateConversationHandler handles CreateConversation.
type CreateConversationHandler struct {
	log     EventLog
	members ConversationCache
	exists  ConversationCheck
	fresh   Freshness
	read    ConversationReadModel
	clock   Clock
}

// ConversationCache is the membership cache as conversation.create writes
// it: the first members, and the mark that the cache has held the
// conversation since its creation (complete, every send record kept).
type ConversationCache interface {
	MemberWriter
	MarkCreated(ctx context.Context, conv string) error
}

// ConversationCheck tells whether a conversation exists (Access).
type ConversationCheck interface {
	Exists(ctx context.Context, conv string) (bool, error)
}

// ConversationReadModel reads a conversation from the read model
// (domain.ErrNotFound when it has none).
type ConversationReadModel interface {
	Conversation(ctx context.Context, conv string) (domain.Conversation, error)
}

// NewCreateConversationHandler builds the handler (clock nil: the real one).
func NewCreateConversationHandler(log EventLog, members ConversationCache, exists ConversationCheck, fresh Freshness,
	read ConversationReadModel, clock Clock) CreateConversationHandler {
	mustHave("CreateConversationHandler", map[string]any{"log": log, "members": members, "exists": exists, "fresh": fresh, "read": read})
	return CreateConversationHandler{log: log, members: members, exists: exists, fresh: fresh, read: read, clock: clockOr(clock)}
}

// Validate checks the command and returns the full, sorted member list.
func (c CreateConversation) Validate(actor string) ([]string, error) {
	if c.Kind != domain.KindDirect && c.Kind != domain.KindGroup {
		return nil, fmt.Errorf("%w: kind must be \"direct\" or \"group\"", domain.ErrBadRequest)
	}
	if err := domain.ValidateText("title", c.Title); err != nil {
		return nil, err
	}
	if len(c.Title) > domain.MaxTitleBytes {
		return nil, fmt.Errorf("%w: title must be at most %d bytes", domain.ErrBadRequest, domain.MaxTitleBytes)
	}
	if len(c.Members) > domain.MaxGroupMembers {
		return nil, fmt.Errorf("%w: members must list at most %d users", domain.ErrBadRequest, domain.MaxGroupMembers)
	}
	members := make([]string, 0, len(c.Members)+1)
	members = append(members, actor)
	for i, m := range c.Members {
		if err := domain.ValidateUserID(fmt.Sprintf("members[%d]", i), m); err != nil {
			return nil, err
		}
		members = append(members, m)
	}
	// Sorting then compacting drops repeats in O(n log n).
	slices.Sort(members)
	members = slices.Compact(members)
	if len(members) > domain.MaxGroupMembers {
		return nil, fmt.Errorf("%w: a group holds at most %d members, its creator included", domain.ErrBadRequest, domain.MaxGroupMembers)
	}
	if c.Kind == domain.KindDirect && len(members) != 2 {
		return nil, fmt.Errorf("%w: members of a direct conversation must name exactly one other user", domain.ErrBadRequest)
	}
	return members, nil
}

// Handle creates the conversation, or returns the existing direct one.
func (h CreateConversationHandler) Handle(ctx context.Context, actor string, c CreateConversation) (domain.Conversation, error) {
	members, err := c.Validate(actor)
	if err != nil {
		return domain.Conversation{}, err
	}
	id := domain.NewID("c_")
	if c.Kind == domain.KindDirect {
		id = domain.DirectConversationID(members[0], members[1])
		c.Title = ""
		if conv, found, err := h.existingDirect(ctx, id); err != nil || found {
			return conv, err
		}
	}
	e, seq, err := appendEvent(ctx, h.log, h.clock, domain.EvConversationCreated, id, actor,
		domain.ConversationCreated{Kind: c.Kind, Title: c.Title, Members: members})
	if err != nil {
		return domain.Conversation{}, err
	}
	cacheAfterAppend(ctx, "conversation created", id, func(ctx context.Context) error {
		if err := h.members.ApplyMembership(ctx, id, seq, true, members...); err != nil {
			return err
		}
		return h.members.MarkCreated(ctx, id)
	})
	return domain.Conversation{ConversationID: id, Kind: c.Kind, Title: c.Title, Members: members,
		CreatedAt: e.At, LastSeq: seq}, nil
}

func (h CreateConversationHandler) existingDirect(ctx context.Context, id string) (domain.Conversation, bool, error) {
	exists, err := h.exists.Exists(ctx, id)
	if err != nil || !exists {
		return domain.Conversation{}, false, err
	}
	if err := h.fresh.WaitProjected(ctx, id); err != nil {
		return domain.Conversation{}, false, err
	}
	conv, err := h.read.Conversation(ctx, id)
	if errors.Is(err, domain.ErrNotFound) {
		return conv, false, nil
	}
	return conv, err == nil, err
}
