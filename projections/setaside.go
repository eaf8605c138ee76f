package projections

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// isPoison reports whether err is Postgres refusing the data of an event
// itself (a data exception such as 22P05 "unsupported Unicode escape
// sequence", a NOT NULL or CHECK violation, a value too large to index):
// retrying it can never succeed, unlike an outage.
func isPoison(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return strings.HasPrefix(pe.Code, "22") || pe.Code == "23502" || pe.Code == "23514" || pe.Code == "54000"
}

// isolate applies batch one record at a time after the whole batch failed
// on poison: a record Postgres refuses is set aside (recorded in
// dead_letters) and applied as Invalid, which advances its partition's
// offset and writes nothing else, so the projection goes on. The same
// events are set aside by a replay, so the rebuilt read models equal the
// live ones.
func (s *Store) isolate(ctx context.Context, batch []Record, apply func(context.Context, []Record) error) error {
	for i := range batch {
		err := apply(ctx, batch[i:i+1])
		if err == nil || !isPoison(err) {
			if err != nil {
				return err
			}
			continue
		}
		if err := s.setAside(ctx, batch[i], err); err != nil {
			return err
		}
		r := batch[i]
		r.Invalid = true
		if err := apply(ctx, []Record{r}); err != nil {
			return err
		}
		if s.OnSetAside != nil {
			s.OnSetAside(batch[i], err)
		}
	}
	return nil
}

// setAside records r in dead_letters (once: a redelivered record keeps its
// first row).
func (s *Store) setAside(ctx context.Context, r Record, cause error) error {
	payload, err := json.Marshal(r.Event)
	if err != nil {
		payload = nil
	}
	_, err = s.pool.Exec(ctx, s.q(`INSERT INTO {s}.dead_letters
		(log_partition, log_offset, conversation_id, event_id, type, payload, error)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`),
		r.Partition, r.Offset, r.Event.ConversationID, r.Event.ID, r.Event.Type, payload, strings.ToValidUTF8(cause.Error(), "?"))
	if err != nil {
		return unavailable("set aside", err)
	}
	return nil
}
