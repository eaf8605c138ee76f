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
type Access struct{ d *Deps }

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
	m, complete, err := a.d.Members.Membership(ctx, conv, user)
	if err != nil || m.Member {
		return m, m.Member, err
	}
	if complete {
		return m, m.Seq > 0, nil
	}
	// Redis does not hold the whole conversation: it may lag (a conversation
	// created a moment ago, seen first by another node) or have lost its
	// data. Rebuild it from the read model once that has everything acked.
	if err := a.d.Fresh.WaitProjected(ctx, conv); err != nil {
		return m, false, err
	}
	ms, err := a.d.Read.Memberships(ctx, conv)
	if err != nil {
		return m, false, err
	}
	if err := reloadMembers(ctx, a.d.Members, conv, ms); err != nil {
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
	_, known, err := a.d.Members.Memberships(ctx, conv)
	if err != nil || known {
		return known, err
	}
	if err := a.d.Fresh.WaitProjected(ctx, conv); err != nil {
		return false, err
	}
	ms, err := a.d.Read.Memberships(ctx, conv)
	return len(ms) > 0, err
}
