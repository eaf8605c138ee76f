package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	json "github.com/segmentio/encoding/json"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// isPoison reports whether err is Postgres refusing the data of an event
// itself (a data exception such as 22P05 "unsupported Unicode escape
// sequence", a NOT NULL or CHECK violation, a value too large to index):
// retrying it can never succeed, unlike an outage.
func isPoison(err error) bool {
	if errors.As(err, new(unindexableError)) {
		return true
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return strings.HasPrefix(pe.Code, "22") || pe.Code == "23502" || pe.Code == "23514" || pe.Code == "54000"
}

// maxKeyBytes bounds a text key of a read-model index: two of them and a
// seq stay within a B-tree entry's 2 704 bytes.
const maxKeyBytes = 1024

// unindexableError: an event's key is longer than maxKeyBytes (keyFits).
type unindexableError struct {
	field string
	n     int
}

func (e unindexableError) Error() string {
	return fmt.Sprintf("%s of %d bytes is longer than the read models index (%d)", e.field, e.n, maxKeyBytes)
}

// isolate applies batch one record at a time after the whole batch failed
// on poison: a record Postgres refuses is applied again as Invalid with its
// Cause, which records it in dead_letters and advances its partition's
// offset in one transaction, writing nothing else, so the projection goes
// on, and the dead letter lands in the schema the record's offset does
// (across a replay's switch too). The same events are set aside by a
// replay, so the rebuilt read models equal the live ones.
func (s *Store) isolate(ctx context.Context, batch []Record, apply func(context.Context, []Record) error) error {
	for i := range batch {
		err := apply(ctx, batch[i:i+1])
		if err == nil || !isPoison(err) {
			if err != nil {
				return err
			}
			continue
		}
		r := batch[i]
		r.Invalid, r.Cause = true, err.Error()
		if err := apply(ctx, []Record{r}); err != nil {
			return err
		}
		if s.OnSetAside != nil {
			s.OnSetAside(batch[i], err)
		}
	}
	return nil
}

// setAsideStatements records in dead_letters the records of batch set
// aside (Invalid with a Cause) that continue the offsets next; a record
// applied before keeps its first row.
//
// The search part records none: dead_letters is the history's (what its
// tables lack), and an event the history holds is not set aside because
// search could not index it (OnSetAside still hears of it).
func (s *Store) setAsideStatements(batch []Record, next map[int32]int64) []stmt {
	if s.part == PartSearch {
		return nil
	}
	var sts []stmt
	for _, r := range batch {
		if !r.Invalid || r.Cause == "" || r.Offset < next[r.Partition] {
			continue
		}
		payload, err := json.Marshal(r.Event)
		if err != nil {
			payload = []byte{}
		}
		sts = append(sts, stmt{name: "set aside", sql: s.q(`INSERT INTO {s}.dead_letters
			(log_partition, log_offset, conversation_id, event_id, type, payload, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`),
			args: []any{r.Partition, r.Offset, asText(r.Event.ConversationID), asText(r.Event.ID),
				asText(r.Event.Type), payload, asText(r.Cause)}})
	}
	return sts
}

// asText is s as Postgres takes text: invalid UTF-8 and NUL bytes (which
// may be what made the event poison) replaced, so that setting it aside
// cannot fail for the same reason and stall the projection.
func asText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\ufffd"), "\x00", "\ufffd")
}

// DeadLetter is an event set aside (dead_letters).
type DeadLetter struct {
	Partition      int32
	Offset         int64
	ConversationID string
	EventID        string
	Type           string
	Payload        []byte
	Error          string
	SetAsideAt     time.Time
}

// DeadLetters lists the events set aside in the active read models, newest
// first, at most limit.
func (s *Store) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	return s.deadLetters(ctx, `ORDER BY set_aside_at DESC, log_partition, log_offset LIMIT $1`, limit)
}

// DeadLetterAt is the event set aside at partition and offset (found false
// if none).
func (s *Store) DeadLetterAt(ctx context.Context, partition int32, offset int64) (DeadLetter, bool, error) {
	ds, err := s.deadLetters(ctx, `WHERE log_partition = $1 AND log_offset = $2`, partition, offset)
	if err != nil || len(ds) == 0 {
		return DeadLetter{}, false, err
	}
	return ds[0], true, nil
}

func (s *Store) deadLetters(ctx context.Context, where string, args ...any) ([]DeadLetter, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT log_partition, log_offset, conversation_id, event_id, type, payload, error, set_aside_at
		FROM {s}.dead_letters `+where), args...)
	if err != nil {
		return nil, unavailable("dead letters", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) {
		var d DeadLetter
		err := r.Scan(&d.Partition, &d.Offset, &d.ConversationID, &d.EventID, &d.Type, &d.Payload, &d.Error, &d.SetAsideAt)
		return d, err
	})
	if err != nil {
		return nil, unavailable("dead letters", err)
	}
	return out, nil
}
