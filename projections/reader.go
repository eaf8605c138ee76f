package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/parley-chat/parley/domain"
)

// MemberCheck authorizes reads.
type MemberCheck interface {
	RequireMember(ctx context.Context, conv, user string) error
}

// Reader answers the read-side queries of the protocol, for members only.
type Reader struct {
	Store  *Store
	Access MemberCheck
	Fresh  Freshness
	// Searches bounds the searches running at once (nil: no bound).
	Searches *SearchLimit
	// SearchTimeout bounds one search's query (0: its command's deadline
	// only); see Search.
	SearchTimeout time.Duration
}

// HistoryQuery selects a page of messages.
type HistoryQuery struct {
	ConversationID string `json:"conversation_id"`
	BeforeSeq      *int64 `json:"before_seq"`
	AfterSeq       *int64 `json:"after_seq"`
	Limit          *int   `json:"limit"`
}

// Validate checks the query and fills the default limit.
func (q *HistoryQuery) Validate() error {
	if err := domain.ValidateID("conversation_id", q.ConversationID); err != nil {
		return err
	}
	if err := pageLimit(&q.Limit); err != nil {
		return err
	}
	if q.BeforeSeq != nil && q.AfterSeq != nil {
		return fmt.Errorf("%w: give before_seq or after_seq, not both", domain.ErrBadRequest)
	}
	if q.BeforeSeq != nil && *q.BeforeSeq < 1 {
		return fmt.Errorf("%w: before_seq must be >= 1", domain.ErrBadRequest)
	}
	if q.AfterSeq != nil && *q.AfterSeq < 0 {
		return fmt.Errorf("%w: after_seq must be >= 0", domain.ErrBadRequest)
	}
	return nil
}

// pageLimit fills a page's default limit and checks it (history, thread).
func pageLimit(limit **int) error {
	if *limit == nil {
		l := domain.DefaultHistoryLim
		*limit = &l
	}
	if **limit < 1 || **limit > domain.MaxHistoryLimit {
		return fmt.Errorf("%w: limit must be 1-%d", domain.ErrBadRequest, domain.MaxHistoryLimit)
	}
	return nil
}

// History returns a page of messages in ascending seq, and whether more
// exist in the direction of the page.
func (r Reader) History(ctx context.Context, user string, q HistoryQuery) ([]domain.Message, bool, error) {
	if err := q.Validate(); err != nil {
		return nil, false, err
	}
	if err := r.Access.RequireMember(ctx, q.ConversationID, user); err != nil {
		return nil, false, err
	}
	return r.Store.Messages(ctx, q.ConversationID, Page{BeforeSeq: q.BeforeSeq, AfterSeq: q.AfterSeq, Limit: *q.Limit})
}

// Search finds the messages matching q that user may read (see
// Store.Search: membership is checked in the query itself).
func (r Reader) Search(ctx context.Context, user string, q SearchQuery) (SearchPage, error) {
	if err := q.Validate(); err != nil {
		return SearchPage{}, err
	}
	if q.ConversationID != "" {
		// A named conversation answers like history: not_found or forbidden.
		if err := r.Access.RequireMember(ctx, q.ConversationID, user); err != nil {
			return SearchPage{}, err
		}
	}
	release, err := r.Searches.acquire(ctx, user)
	if err != nil {
		return SearchPage{}, err
	}
	defer release()
	if r.SearchTimeout <= 0 {
		return r.Store.Search(ctx, user, q)
	}
	// A search on words in most messages reads them all before the
	// membership join keeps the caller's: on a large read model that is
	// seconds of a Postgres backend, which a client could ask for again and
	// again. Past SearchTimeout the query is cancelled.
	page, err := r.Store.SearchWithin(ctx, user, q, r.SearchTimeout)
	if errors.Is(err, ErrSearchTimeout) {
		return SearchPage{}, domain.Explained{Err: fmt.Errorf("%w: search: stopped after %s; use rarer words, or name a conversation",
			domain.ErrUnavailable, r.SearchTimeout)}
	}
	return page, err
}

// ConversationsQuery is the data of conversation.list: a page of at most
// Limit conversations (default DefaultConversationsPage) after Cursor (the
// next_cursor of the previous page; none for the first).
type ConversationsQuery struct {
	Cursor string `json:"cursor"`
	Limit  *int   `json:"limit"`
}

// Conversations lists a page of the user's conversations with last_seq and
// unread.
func (r Reader) Conversations(ctx context.Context, user string, q ConversationsQuery) (ConversationPage, error) {
	limit := DefaultConversationsPage
	if q.Limit != nil {
		limit = *q.Limit
	}
	if limit < 1 || limit > MaxConversationsPage {
		return ConversationPage{}, fmt.Errorf("%w: limit must be 1-%d", domain.ErrBadRequest, MaxConversationsPage)
	}
	return r.Store.ConversationsOf(ctx, user, q.Cursor, limit)
}

// A replay's page: at most replayPageEvents events, and fewer once they
// hold replayPageBytes of data.
const (
	replayPageEvents = 500
	replayPageBytes  = 1 << 20
)

// CatchUp replays conv's events after seq `after` to emit, in order, once
// the read model holds everything logged before the call. It returns the
// last seq emitted (or after). A former member gets the events up to its
// own leave: it missed them as a member (its other connections got them
// live), and nothing after.
func (r Reader) CatchUp(ctx context.Context, user, conv string, after int64, emit func(StoredEvent) error) (int64, error) {
	access := r.Access.RequireMember(ctx, conv, user)
	if access != nil && !errors.Is(access, domain.ErrForbidden) {
		return after, access
	}
	upTo := int64(math.MaxInt64)
	if access != nil {
		// The read model holding the leave holds everything before it in
		// the conversation's partition: the freshness wait only when it
		// does not yet (a leave a moment ago).
		left, ok, err := r.Store.LeftAt(ctx, conv, user)
		if err == nil && !ok {
			if err = r.Fresh.WaitProjected(ctx, conv); err == nil {
				left, ok, err = r.Store.LeftAt(ctx, conv, user)
			}
		}
		if err != nil || !ok {
			return after, cmp.Or(err, access)
		}
		upTo = left
	} else if err := r.Fresh.WaitProjected(ctx, conv); err != nil {
		return after, err
	}
	limit := replayPageEvents
	for {
		evs, more, err := r.Store.EventsAfter(ctx, conv, after, limit, replayPageBytes)
		if err != nil {
			return after, err
		}
		// A page cut at its bytes still read the rest of its rows from
		// Postgres: the next asks for about as many as fit.
		if more && len(evs) < limit {
			limit = max(len(evs)+len(evs)/4, 1)
		} else if more {
			limit = min(2*limit, replayPageEvents)
		}
		for _, e := range evs {
			if e.Seq > upTo {
				return after, nil
			}
			if err := emit(e); err != nil {
				return after, err
			}
			after = e.Seq
		}
		if !more {
			return after, nil
		}
	}
}

// Positions is the last seq of each of the user's conversations.
func (r Reader) Positions(ctx context.Context, user string) (map[string]int64, error) {
	return r.Store.LastSeqs(ctx, user)
}
