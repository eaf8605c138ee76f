package service

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-chat/parley/domain"
)

// PresenceQuery is the data of presence.query.
type PresenceQuery struct {
	UserIDs []string `json:"user_ids"`
}

// MaxPresenceQuery bounds the users of one presence.query.
const MaxPresenceQuery = 200

// PresenceEntry is one user's presence in the reply.
type PresenceEntry struct {
	UserID   string `json:"user_id"`
	Status   string `json:"status"`
	LastSeen string `json:"last_seen,omitempty"`
}

// PresenceSources answer presence.query: who shares a conversation with
// the caller (the read model) and who is online (Redis).
type PresenceSources interface {
	SharedWith(ctx context.Context, user string, others []string) (map[string]bool, error)
	Presence(ctx context.Context, users []string) (map[string]domain.Seen, error)
}

// Validate checks the list and returns it without repeats, in order.
func (q PresenceQuery) Validate() ([]string, error) {
	if len(q.UserIDs) < 1 || len(q.UserIDs) > MaxPresenceQuery {
		return nil, fmt.Errorf("%w: user_ids must list 1-%d users", domain.ErrBadRequest, MaxPresenceQuery)
	}
	seen := make(map[string]bool, len(q.UserIDs))
	out := make([]string, 0, len(q.UserIDs))
	for _, u := range q.UserIDs {
		if err := domain.ValidateUserID("user_ids", u); err != nil {
			return nil, err
		}
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out, nil
}

// PresenceOf answers the presence of the users the caller shares a
// conversation with, in the order asked; the others are offline with no
// last_seen, so the query reveals nothing about strangers.
func (s *Service) PresenceOf(ctx context.Context, user string, q PresenceQuery) ([]PresenceEntry, error) {
	ids, err := q.Validate()
	if err != nil {
		return nil, err
	}
	if s.Presence == nil {
		return nil, fmt.Errorf("%w: presence is not served here", domain.ErrUnavailable)
	}
	shared, err := s.Presence.SharedWith(ctx, user, ids)
	if err != nil {
		return nil, err
	}
	visible := make([]string, 0, len(shared))
	for _, u := range ids {
		if shared[u] {
			visible = append(visible, u)
		}
	}
	seen, err := s.Presence.Presence(ctx, visible)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	out := make([]PresenceEntry, len(ids))
	for i, u := range ids {
		e := PresenceEntry{UserID: u, Status: domain.PresenceOffline}
		if st, ok := seen[u]; ok && st.Online {
			e.Status, e.LastSeen = domain.PresenceOnline, now
		} else if ok && !st.LastSeen.IsZero() {
			e.LastSeen = st.LastSeen.Format(time.RFC3339Nano)
		}
		out[i] = e
	}
	return out, nil
}
