package projections

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parley-chat/parley/domain"
)

// Search bounds (protocol "search").
const (
	MaxSearchQueryBytes = 256
	DefaultSearchLimit  = 20
	MaxSearchLimit      = 50
)

// SearchQuery is the data of search: messages matching every word of Query
// (stemmed, accents and case folded: the parley_search configuration of
// migration 0007, in message_search since 0013), in the conversation named
// or in all the user's, newest first. Paging: BeforeSeq (the protocol's, exact within one conversation)
// or Cursor (the next_cursor of the previous page, exact across them).
type SearchQuery struct {
	Query          string `json:"query"`
	ConversationID string `json:"conversation_id"`
	BeforeSeq      *int64 `json:"before_seq"`
	Limit          *int   `json:"limit"`
	Cursor         string `json:"cursor"`
}

// SearchPage is one page of search results.
type SearchPage struct {
	Messages []domain.Message
	HasMore  bool
	Next     string
}

// Validate checks the query and fills the default limit.
func (q *SearchQuery) Validate() error {
	if strings.TrimSpace(q.Query) == "" {
		return fmt.Errorf("%w: query must not be empty", domain.ErrBadRequest)
	}
	if len(q.Query) > MaxSearchQueryBytes {
		return fmt.Errorf("%w: query must be at most %d bytes", domain.ErrBadRequest, MaxSearchQueryBytes)
	}
	if err := domain.ValidateText("query", q.Query); err != nil {
		return err
	}
	if q.ConversationID != "" {
		if err := domain.ValidateID("conversation_id", q.ConversationID); err != nil {
			return err
		}
	}
	if q.BeforeSeq != nil {
		if err := domain.ValidateSeq("before_seq", *q.BeforeSeq); err != nil {
			return err
		}
	}
	if q.Limit == nil {
		l := DefaultSearchLimit
		q.Limit = &l
	}
	if *q.Limit < 1 || *q.Limit > MaxSearchLimit {
		return fmt.Errorf("%w: limit must be 1-%d", domain.ErrBadRequest, MaxSearchLimit)
	}
	return nil
}

// Search runs q for user: only conversations user is a member of now (what
// history would show), deleted messages left out. The membership check is
// part of the query.
func (s *Store) Search(ctx context.Context, user string, q SearchQuery) (SearchPage, error) {
	return s.search(ctx, s.pool, user, q)
}

// ErrSearchTimeout: a search ran past the bound SearchWithin was given.
var ErrSearchTimeout = errors.New("search timed out")

// SearchWithin is Search with its query bounded by timeout. Postgres
// stops the query itself (statement_timeout, in the search's own
// transaction), so the connection goes back to the pool; a context
// deadline would leave the connection's state unknown, and pgx closes it.
// The context still bounds the whole, a little later, in case Postgres
// does not answer at all.
func (s *Store) SearchWithin(ctx context.Context, user string, q SearchQuery, timeout time.Duration) (SearchPage, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout+2*time.Second)
	defer cancel()
	var page SearchPage
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('statement_timeout', $1, true)`,
			strconv.FormatInt(timeout.Milliseconds(), 10)); err != nil {
			return unavailable("search", err)
		}
		var err error
		page, err = s.search(ctx, tx, user, q)
		return err
	})
	return page, err
}

// searchFailed is ErrSearchTimeout for a query its statement_timeout
// cancelled (57014, query_canceled), else unavailable.
func searchFailed(err error) error {
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "57014" {
		return ErrSearchTimeout
	}
	return unavailable("search", err)
}

func (s *Store) search(ctx context.Context, db querier, user string, q SearchQuery) (SearchPage, error) {
	if err := q.Validate(); err != nil {
		return SearchPage{}, err
	}
	after, err := decodeSearchCursor(q.Cursor)
	if err != nil {
		return SearchPage{}, err
	}
	var at *time.Time
	if after.conv != "" {
		at = &after.at
	}
	// Across conversations, newest by sent_at (the cursor's key); within
	// the conversation named, by seq, the conversation's one order, which
	// before_seq pages: sent_at, a gateway's clock read before the append,
	// can disagree with it, and a page by sent_at cut by seq skips or
	// repeats messages.
	order, keyset := `m.sent_at DESC, m.conversation_id DESC, m.seq DESC`, `(m.sent_at, m.conversation_id, m.seq) < ($5, $6, $7)`
	if q.ConversationID != "" {
		order, keyset = `m.seq DESC`, `(m.conversation_id, m.seq) < ($6, $7)`
	}
	rows, err := db.Query(ctx, s.q(`SELECT m.conversation_id, m.message_id, m.seq, m.sender_id, m.client_msg_id,
			m.body, m.sent_at, m.edited_at, m.deleted, coalesce(m.reply_to, ''), `+reactionsOf("m")+`
		FROM {s}.message_search ms
		JOIN {s}.messages m ON m.conversation_id = ms.conversation_id AND m.message_id = ms.message_id
		JOIN {s}.members me ON me.conversation_id = m.conversation_id AND me.user_id = $1 AND me.is_member
		WHERE ms.tsv @@ plainto_tsquery('{s}.parley_search'::regconfig, $2)
		  AND NOT m.deleted
		  AND ($3 = '' OR m.conversation_id = $3)
		  AND ($4::bigint IS NULL OR m.seq < $4)
		  AND ($5::timestamptz IS NULL OR `+keyset+`)
		ORDER BY `+order+`
		LIMIT $8`), user, q.Query, q.ConversationID, q.BeforeSeq, at, after.conv, after.seq, *q.Limit+1)
	if err != nil {
		return SearchPage{}, searchFailed(err)
	}
	msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Message, error) { return scanMessage(r) })
	if err != nil {
		return SearchPage{}, searchFailed(err)
	}
	page := SearchPage{Messages: msgs}
	if len(msgs) > *q.Limit {
		page.Messages, page.HasMore = msgs[:*q.Limit], true
		last := page.Messages[len(page.Messages)-1]
		page.Next = searchCursor{at: last.SentAt, conv: last.ConversationID, seq: last.Seq}.encode()
	}
	return page, nil
}

// searchCursor is where a search page ends, in its sort order.
type searchCursor struct {
	at   time.Time
	conv string
	seq  int64
}

func (c searchCursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.at.UnixMicro(), 10) + "." +
		strconv.FormatInt(c.seq, 10) + "." + c.conv))
}

func decodeSearchCursor(s string) (searchCursor, error) {
	if s == "" {
		return searchCursor{}, nil
	}
	bad := fmt.Errorf("%w: cursor: not a cursor this server returned", domain.ErrBadRequest)
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(s) > 256 {
		return searchCursor{}, bad
	}
	parts := strings.SplitN(string(raw), ".", 3)
	if len(parts) != 3 {
		return searchCursor{}, bad
	}
	us, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || domain.ValidateID("cursor", parts[2]) != nil {
		return searchCursor{}, bad
	}
	return searchCursor{at: time.UnixMicro(us).UTC(), conv: parts[2], seq: seq}, nil
}
