package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/domain"
)

// ThreadQuery is the data of thread: a page of the replies to a message.
type ThreadQuery struct {
	ConversationID string `json:"conversation_id"`
	MessageID      string `json:"message_id"`
	BeforeSeq      *int64 `json:"before_seq"`
	Limit          *int   `json:"limit"`
}

// Validate checks the query and fills the default limit.
func (q *ThreadQuery) Validate() error {
	if err := domain.ValidateID("conversation_id", q.ConversationID); err != nil {
		return err
	}
	if err := domain.ValidateID("message_id", q.MessageID); err != nil {
		return err
	}
	if err := pageLimit(&q.Limit); err != nil {
		return err
	}
	if q.BeforeSeq != nil && *q.BeforeSeq < 1 {
		return fmt.Errorf("%w: before_seq must be >= 1", domain.ErrBadRequest)
	}
	return nil
}

// Thread is a message and a page of its replies in ascending seq.
type Thread struct {
	Root     domain.Message   `json:"root"`
	Messages []domain.Message `json:"messages"`
	HasMore  bool             `json:"has_more"`
}

// Thread returns the root message and a page of its replies, once the read
// model holds every event acked before the call, for members of its
// conversation (a reply is a message of the same conversation, so
// whoever may read the root may read every reply).
func (r Reader) Thread(ctx context.Context, user string, q ThreadQuery) (Thread, error) {
	if err := q.Validate(); err != nil {
		return Thread{}, err
	}
	if err := r.Access.RequireMember(ctx, q.ConversationID, user); err != nil {
		return Thread{}, err
	}
	// Read your writes: a reply acked a moment ago is in its thread.
	if err := r.Fresh.WaitProjected(ctx, q.ConversationID); err != nil {
		return Thread{}, err
	}
	root, err := r.Store.Message(ctx, q.ConversationID, q.MessageID)
	if err != nil {
		return Thread{}, err
	}
	msgs, more, err := r.Store.Replies(ctx, q.ConversationID, q.MessageID, q.BeforeSeq, *q.Limit)
	return Thread{Root: root, Messages: msgs, HasMore: more}, err
}

// Replies returns up to limit replies to message id before beforeSeq (all
// when nil), newest first, returned ascending, and whether older ones exist.
func (s *Store) Replies(ctx context.Context, conv, id string, beforeSeq *int64, limit int) ([]domain.Message, bool, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT `+messageCols+` FROM {s}.messages
		WHERE conversation_id=$1 AND reply_to=$2 AND ($3::bigint IS NULL OR seq<$3)
		ORDER BY seq DESC LIMIT $4`), conv, id, beforeSeq, limit+1)
	if err != nil {
		return nil, false, unavailable("replies", err)
	}
	msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Message, error) { return scanMessage(r) })
	if err != nil {
		return nil, false, unavailable("replies", err)
	}
	more := len(msgs) > limit
	if more {
		msgs = msgs[:limit]
	}
	if n := pageFits(msgs); n < len(msgs) {
		msgs, more = msgs[:n], true
	}
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	if msgs == nil {
		msgs = []domain.Message{}
	}
	return msgs, more, nil
}
