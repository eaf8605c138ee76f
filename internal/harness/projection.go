package harness

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/domain"
)

// Row is a message as the Postgres read model holds it.
type Row struct {
	Conv, Sender, CMID string
	Seq                int64
}

// Projection is what the read model holds of the messages: the rows of
// messages and the count of message_sent events, per message id.
type Projection struct {
	Messages map[string][]Row
	Events   map[string]int
}

// Querier is a pgx pool or connection.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ReadProjection reads the messages and message_sent events of schema.
func ReadProjection(ctx context.Context, q Querier, schema string) (*Projection, error) {
	p := &Projection{Messages: map[string][]Row{}, Events: map[string]int{}}
	rows, err := q.Query(ctx, `SELECT message_id, conversation_id, seq, sender_id, client_msg_id FROM `+
		pgx.Identifier{schema, "messages"}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("read %s.messages: %w", schema, err)
	}
	var id string
	var r Row
	if _, err := pgx.ForEachRow(rows, []any{&id, &r.Conv, &r.Seq, &r.Sender, &r.CMID}, func() error {
		p.Messages[id] = append(p.Messages[id], r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read %s.messages: %w", schema, err)
	}
	rows, err = q.Query(ctx, `SELECT data->>'message_id', count(*) FROM `+pgx.Identifier{schema, "events"}.Sanitize()+
		` WHERE type = $1 GROUP BY 1`, domain.EvMessageSent)
	if err != nil {
		return nil, fmt.Errorf("read %s.events: %w", schema, err)
	}
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error {
		p.Events[id] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read %s.events: %w", schema, err)
	}
	return p, nil
}

// project checks that every acked message is one row of the read model at
// its acked seq, with one message_sent event.
func (t *Tally) project(acks []Ack, p *Projection) {
	t.Projected = true
	for _, a := range acks {
		rows := p.Messages[a.MsgID]
		if len(rows) == 0 {
			t.PGMissing++
			t.MissingIDs = append(t.MissingIDs, a.MsgID)
			t.Sample("postgres: acked message %s (conv %s seq %d, %s/%s) not in messages", a.MsgID, a.Conv, a.Seq, a.Sender, a.CMID)
			continue
		}
		if len(rows) > 1 || p.Events[a.MsgID] > 1 {
			t.PGTwice++
			t.Sample("postgres: message %s projected %d times, %d message_sent events", a.MsgID, len(rows), p.Events[a.MsgID])
		}
		got := rows[0]
		if got.Seq != a.Seq {
			t.PGOtherSeq++
			t.Sample("postgres: message %s at seq %d, acked at seq %d", a.MsgID, got.Seq, a.Seq)
		}
		if got.Conv != a.Conv || got.Sender != a.Sender || got.CMID != a.CMID {
			t.PGMismatch++
			t.Sample("postgres: message %s is %+v, acked as %+v", a.MsgID, got, a)
		}
	}
}
