package commands

import (
	"context"
	"fmt"

	"github.com/parley-chat/parley/domain"
)

// AddMember adds a user to a group conversation.
type AddMember struct {
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
}

// AddMemberHandler handles AddMember.
type AddMemberHandler struct {
	log     EventLog
	members GroupMembers
	access  MemberCheck
	clock   Clock
}

// GroupMembers is the membership cache as add_member uses it: is the user
// in already, is there room, and the join applied right after its ack.
type GroupMembers interface {
	MemberLookup
	MemberList
	MemberWriter
}

// NewAddMemberHandler builds the handler (clock nil: the real one).
func NewAddMemberHandler(log EventLog, members GroupMembers, access MemberCheck, clock Clock) AddMemberHandler {
	mustHave("AddMemberHandler", map[string]any{"log": log, "members": members, "access": access})
	return AddMemberHandler{log: log, members: members, access: access, clock: clockOr(clock)}
}

// Handle adds the member; members of the group may add others.
func (h AddMemberHandler) Handle(ctx context.Context, actor string, c AddMember) error {
	if err := domain.ValidateID("conversation_id", c.ConversationID); err != nil {
		return err
	}
	if err := domain.ValidateUserID("user_id", c.UserID); err != nil {
		return err
	}
	if err := h.access.RequireMember(ctx, c.ConversationID, actor); err != nil {
		return err
	}
	if domain.IsDirectID(c.ConversationID) {
		return fmt.Errorf("%w: only group conversations take new members", domain.ErrBadRequest)
	}
	m, _, err := h.members.Membership(ctx, c.ConversationID, c.UserID)
	if err != nil {
		return err
	}
	if m.Member {
		return fmt.Errorf("%w: %s is already a member", domain.ErrConflict, c.UserID)
	}
	if err := h.requireRoom(ctx, c.ConversationID); err != nil {
		return err
	}
	_, seq, err := appendEvent(ctx, h.log, h.clock, domain.EvMemberJoined, c.ConversationID, actor, domain.MemberChanged{UserID: c.UserID})
	if err != nil {
		return err
	}
	cacheAfterAppend(ctx, "member joined", c.ConversationID, func(ctx context.Context) error {
		return h.members.ApplyMembership(ctx, c.ConversationID, seq, true, c.UserID)
	})
	return nil
}

// requireRoom refuses a member past domain.MaxGroupMembers, the limit
// conversation.create applies (two adds racing at the limit may both pass).
func (h AddMemberHandler) requireRoom(ctx context.Context, conv string) error {
	ms, _, err := h.members.Memberships(ctx, conv)
	if err != nil {
		return err
	}
	n := 0
	for _, m := range ms {
		if m.Member {
			n++
		}
	}
	if n >= domain.MaxGroupMembers {
		return fmt.Errorf("%w: the group is full (%d members)", domain.ErrConflict, domain.MaxGroupMembers)
	}
	return nil
}
