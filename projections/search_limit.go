package projections

import (
	"context"
	"fmt"
	"sync"

	"github.com/parley-chat/parley/domain"
)

// SearchLimit bounds the searches one node runs at once. A search on a
// common word reads every matching message of the table before the
// membership join keeps the caller's (docs/read-models.md, "Search plan"),
// and the node's pool holds 20 connections for everything it reads: left
// unbounded, a few clients searching could hold them all, and history,
// sync and the send path's checks would wait behind. The searches over the
// bound wait their turn (without a connection) until their command's
// deadline, then fail unavailable.
//
// A user runs one search at a time on a node: another while the first runs
// is refused rate_limited at once. Without that, one user with as many
// connections as the node has slots, searching a common word as each
// answer came back, would hold every slot and starve everyone else.
type SearchLimit struct {
	slots chan struct{}
	mu    sync.Mutex
	users map[string]struct{} // users with a search waiting or running
}

// NewSearchLimit allows n searches at once.
func NewSearchLimit(n int) *SearchLimit {
	return &SearchLimit{slots: make(chan struct{}, n), users: map[string]struct{}{}}
}

// Running is how many slots are taken.
func (l *SearchLimit) Running() int { return len(l.slots) }

// acquire takes user's turn and a slot, waiting for the slot until ctx
// ends; a nil limit has no bound.
func (l *SearchLimit) acquire(ctx context.Context, user string) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	l.mu.Lock()
	_, busy := l.users[user]
	if !busy {
		l.users[user] = struct{}{}
	}
	l.mu.Unlock()
	if busy {
		return nil, fmt.Errorf("%w: search: one search at a time; wait for the answer to the first", domain.ErrRateLimited)
	}
	done := func() {
		l.mu.Lock()
		delete(l.users, user)
		l.mu.Unlock()
	}
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots; done() }, nil
	case <-ctx.Done():
		done()
		return nil, fmt.Errorf("%w: search: %d searches are running on this node; retry later", domain.ErrUnavailable, cap(l.slots))
	}
}
