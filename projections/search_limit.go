package projections

import (
	"context"
	"fmt"

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
type SearchLimit chan struct{}

// NewSearchLimit allows n searches at once.
func NewSearchLimit(n int) SearchLimit { return make(SearchLimit, n) }

// acquire takes a slot, waiting until ctx ends; a nil limit has no bound.
func (l SearchLimit) acquire(ctx context.Context) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: search: %d searches are running on this node; retry later", domain.ErrUnavailable, cap(l))
	}
}
