package commands

import (
	"context"
	"fmt"

	"github.com/parley-chat/parley/domain"
)

// Access answers whether a user may act in a conversation. Redis answers
// first; when it knows nothing of the conversation (new, or Redis lost its
// data) the read model is consulted, after waiting for it to catch up.
//
// A user who never was a member gets not_found, so that outsiders cannot
// probe which conversations exist (direct conversation ids are derivable);
// a former member gets forbidden.
type Access struct {
	cache MembershipCache
	read  MembersReadModel
	fresh Freshness
}

// MembershipCache is the fast membership state (Redis) as the access check
// uses it: one user's latest change, everyone's, and the rebuild from the
// read model. known/complete is false unless the cache holds every member
// of the conversation.
type MembershipCache interface {
	MemberLookup
	MemberList
	MemberWriter
	MarkComplete(ctx context.Context, conv string) error
}

// MemberLookup reads one user's latest membership change from the cache.
type MemberLookup interface {
	Membership(ctx context.Context, conv, user string) (m domain.Membership, known bool, err error)
}

// MemberList reads every user's latest membership change from the cache.
type MemberList interface {
	Memberships(ctx context.Context, conv string) (ms map[string]domain.Membership, complete bool, err error)
}

// MemberWriter applies membership changes to the cache (newest seq wins).
type MemberWriter interface {
	ApplyMembership(ctx context.Context, conv string, seq int64, member bool, users ...string) error
}

// MembersReadModel is the read model's membership of a conversation: every
// user who ever was a member, with their latest change.
type MembersReadModel interface {
	Memberships(ctx context.Context, conv string) (map[string]domain.Membership, error)
}

// NewAccess builds the access check on the cache, falling back to the read
// model once fresh says it caught up.
func NewAccess(cache MembershipCache, read MembersReadModel, fresh Freshness) Access {
	mustHave("Access", map[string]any{"cache": cache, "read": read, "fresh": fresh})
	return Access{cache: cache, read: read, fresh: fresh}
}

// RequireMember returns nil if user is a member of conv now.
func (a Access) RequireMember(ctx context.Context, conv, user string) error {
	m, known, err := a.membership(ctx, conv, user)
	if err != nil {
		return err
	}
	switch {
	case m.Member:
		return nil
	case known && m.Seq > 0:
		return fmt.Errorf("%w: %s is no longer a member of conversation %s", domain.ErrForbidden, user, conv)
	default:
		return fmt.Errorf("%w: conversation %s", domain.ErrNotFound, conv)
	}
}

// membership returns user's state; known reports a past membership record.
func (a Access) membership(ctx context.Context, conv, user string) (domain.Membership, bool, error) {
	m, complete, err := a.cache.Membership(ctx, conv, user)
	// "Member" is trusted only from a complete hash: after a Redis loss the
	// fan-out, behind the log, may have re-applied an old join whose leave
	// it has not reached yet.
	if err != nil || m.Member && complete {
		return m, m.Member, err
	}
	if complete {
		return m, m.Seq > 0, nil
	}
	// Redis does not hold the whole conversation: it may lag (a conversation
	// created a moment ago, seen first by another node) or have lost its
	// data. Rebuild it from the read model once that has everything acked.
	if err := a.fresh.WaitProjected(ctx, conv); err != nil {
		return m, false, err
	}
	ms, err := a.read.Memberships(ctx, conv)
	if err != nil {
		return m, false, err
	}
	if err := reloadMembers(ctx, a.cache, conv, ms); err != nil {
		return m, false, err
	}
	um, ok := ms[user]
	return um, ok, nil
}

// reloadMembers copies a conversation's members from the read model into
// the cache and marks it complete.
func reloadMembers(ctx context.Context, cache MembershipCache, conv string, ms map[string]domain.Membership) error {
	if len(ms) == 0 {
		return nil
	}
	for u, um := range ms {
		if err := cache.ApplyMembership(ctx, conv, um.Seq, um.Member, u); err != nil {
			return err
		}
	}
	return cache.MarkComplete(ctx, conv)
}

// Exists reports whether the conversation exists (for direct creates).
func (a Access) Exists(ctx context.Context, conv string) (bool, error) {
	_, known, err := a.cache.Memberships(ctx, conv)
	if err != nil || known {
		return known, err
	}
	if err := a.fresh.WaitProjected(ctx, conv); err != nil {
		return false, err
	}
	ms, err := a.read.Memberships(ctx, conv)
	return len(ms) > 0, err
}
