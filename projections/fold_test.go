package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// foldLog is knownLog plus the message_sent events that must not be folded
// into their messages row (migration 0010), or only partly: a payload with a
// field the projector does not know, the second produce of a message id,
// a body the standard encoder escapes, and an edit and a delete of a
// folded message (its body as sent must still replay).
func foldLog() []projections.Record {
	recs := knownLog()
	at := time.Date(2026, 1, 9, 10, 0, 0, 0, time.UTC)
	off := int64(0)
	add := func(typ, actor string, data string) {
		recs = append(recs, projections.Record{Partition: 3, Offset: off, Event: domain.Event{
			ID: fmt.Sprintf("e_3_%d", off), Type: typ, ConversationID: "c9", Actor: actor, At: at.Add(time.Duration(off) * time.Second),
			Data: json.RawMessage(data)}})
		off++
	}
	add(domain.EvConversationCreated, "hana", `{"kind":"group","title":"fold","members":["hana","ivan"]}`)
	add(domain.EvMessageSent, "hana", `{"message_id":"q1","client_msg_id":"kq1","body":"first"}`)
	add(domain.EvMessageSent, "ivan", `{"message_id":"q2","client_msg_id":"kq2","body":"x","extra":1}`)
	add(domain.EvMessageSent, "hana", `{"message_id":"q1","client_msg_id":"kq1","body":"first"}`) // duplicate produce
	add(domain.EvMessageSent, "ivan", `{"message_id":"q3","client_msg_id":"kq3","body":"\u003cb\u003e \u0026"}`)
	add(domain.EvMessageSent, "ivan", `{"message_id":"q4","client_msg_id":"kq4","body":"to edit","reply_to":"q1"}`)
	add(domain.EvMessageEdited, "ivan", `{"message_id":"q4","body":"edited"}`)
	add(domain.EvMessageEdited, "ivan", `{"message_id":"q4","body":"edited twice"}`)
	add(domain.EvMessageDeleted, "hana", `{"message_id":"q1"}`)
	return recs
}

// TestEventsViewIsTheLog: the events view holds every applied event once,
// exactly as logged (id, type, actor, time, and data equal as JSON), whether
// its message_sent was folded into messages or kept in event_log, and
// whatever the batch bounds (a duplicate produce in the same batch and in a
// later one).
func TestEventsViewIsTheLog(t *testing.T) {
	pool := openPool(t)
	recs := foldLog()
	for _, size := range []int{1000, 2} {
		schema := freshSchema(t, pool)
		applyAll(t, projections.NewStore(pool, schema, testTopic), recs, size)
		checkEventsAreTheLog(t, pool, schema, recs, size)
		checkUnfolded(t, pool, schema, size)
	}
	// The down migration puts every event back into one events table, as
	// logged; up again, the view shows them once more.
	schema := freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, schema, testTopic), recs, 100)
	migrateTo(t, schema, foldVersion-1)
	checkEventsAreTheLog(t, pool, schema, recs, -1)
	migrateTo(t, schema, foldVersion)
	checkEventsAreTheLog(t, pool, schema, recs, -1)
}

// foldVersion is migration 0010_fold_message_sent.
const foldVersion = 10

// checkEventsAreTheLog: the schema's events hold every record once, as logged.
func checkEventsAreTheLog(t *testing.T, pool *pgxpool.Pool, schema string, recs []projections.Record, size int) {
	t.Helper()
	ctx := context.Background()
	s := pgx.Identifier{schema}.Sanitize()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+s+`.events`).Scan(&n); err != nil || n != len(recs) {
		t.Fatalf("batches of %d (-1: after migrations): %d events (%v), want %d", size, n, err, len(recs))
	}
	for _, r := range recs {
		e := r.Event
		var same bool
		err := pool.QueryRow(ctx, `SELECT event_id = $3 AND type = $4 AND actor = $5 AND at = $6 AND data = $7::jsonb
			FROM `+s+`.events WHERE conversation_id = $1 AND seq = $2`,
			e.ConversationID, r.Seq(), e.ID, e.Type, e.Actor, e.At, string(e.Data)).Scan(&same)
		if err != nil || !same {
			var got string
			_ = pool.QueryRow(ctx, `SELECT row_to_json(x)::text FROM `+s+`.events x WHERE conversation_id = $1 AND seq = $2`,
				e.ConversationID, r.Seq()).Scan(&got)
			t.Errorf("batches of %d: %s seq %d: the view has %s (%v), logged %s %s", size, e.ConversationID, r.Seq(), got, err, e.ID, e.Data)
		}
	}
}

// checkUnfolded: every message_sent is folded but the unknown field and
// the repeat (the escaped body depends on the encoder, either way is right).
func checkUnfolded(t *testing.T, pool *pgxpool.Pool, schema string, size int) {
	t.Helper()
	ctx := context.Background()
	s := pgx.Identifier{schema}.Sanitize()
	var kept []string
	rows, err := pool.Query(ctx, `SELECT data->>'message_id' || ':' || event_id FROM `+s+`.event_log
		WHERE type = $1 AND data->>'message_id' <> 'q3' ORDER BY 1`, domain.EvMessageSent)
	if err == nil {
		kept, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || len(kept) != 2 || kept[0] != "q1:e_3_3" || kept[1] != "q2:e_3_2" {
		t.Errorf("batches of %d: message_sent kept in event_log %v (%v), want q1's repeat and q2", size, kept, err)
	}
}

// TestSyncReadsTheEventsViewByIndex: sync's query over the events view reads
// one partition of event_log and one of messages, each through an index, at
// a realistic size (the plan an analyst sees in docs/read-models.md).
func TestSyncReadsTheEventsViewByIndex(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	schema := freshSchema(t, pool)
	store := projections.NewStore(pool, schema, testTopic)
	applyAll(t, store, foldLog(), 100)
	s := pgx.Identifier{schema}.Sanitize()
	for _, q := range []string{
		`INSERT INTO ` + s + `.messages (conversation_id, seq, message_id, sender_id, client_msg_id, body, sent_at, version_seq, event_id)
			SELECT 'c' || (i % 200), 100 + i, 'mf' || i, 'u', 'kf' || i, 'filler', now(), 100 + i, 'ef' || i FROM generate_series(1, 20000) i`,
		`INSERT INTO ` + s + `.event_log (conversation_id, seq, event_id, type, actor, at, data)
			SELECT 'c' || (i % 200), 30000 + i, 'eg' || i, 'chat.read_marked.v1', 'u', now(), '{"up_to_seq":1}' FROM generate_series(1, 20000) i`,
		`ANALYZE ` + s + `.messages`, `ANALYZE ` + s + `.event_log`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := pool.Query(ctx, `EXPLAIN (COSTS OFF) `+store.EventsAfterSQL(), "c1", 0, 500)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	one := func(re string) bool { return len(regexp.MustCompile(re).FindAllString(text, -1)) == 1 }
	if strings.Contains(text, "Seq Scan") || !one(`Scan on events_p\d+ event_log`) || !one(`Scan on messages_p\d+ messages`) ||
		strings.Count(text, "Index Scan") < 2 {
		t.Fatalf("sync's plan should read one partition of each table through an index:\n%s", text)
	}
}

// TestCompareSeesEventsNotStorage: a live schema whose messages were
// projected before the fold (event_id NULL, message_sent in event_log)
// compares equal to its rebuild, which folds them; a changed body or a
// missing event is still a difference.
func TestCompareSeesEventsNotStorage(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	recs := foldLog()
	live, rebuilt := freshSchema(t, pool), freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, live, testTopic), recs, 100)
	applyAll(t, projections.NewStore(pool, rebuilt, testTopic), recs, 1000)
	l := pgx.Identifier{live}.Sanitize()
	exec := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	// Unfold c1's messages in the live schema, as a projector before 0010 stored them.
	exec(`INSERT INTO ` + l + `.event_log SELECT * FROM ` + l + `.events WHERE conversation_id = 'c1' AND type = 'chat.message_sent.v1'
		AND (conversation_id, seq) IN (SELECT conversation_id, seq FROM ` + l + `.messages WHERE event_id IS NOT NULL)`)
	exec(`UPDATE ` + l + `.messages SET event_id = NULL, sent_body = NULL WHERE conversation_id = 'c1'`)
	diffs, err := projections.CompareSchemas(ctx, pool, live, rebuilt)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		if !d.Equal() {
			t.Errorf("%s differs: %+v", d.Table, d)
		}
	}
	exec(`UPDATE ` + l + `.messages SET body = 'changed' WHERE conversation_id = 'c2' AND message_id = 'n1'`)
	exec(`DELETE FROM ` + l + `.event_log WHERE conversation_id = 'c1' AND seq = 2`)
	diffs, err = projections.CompareSchemas(ctx, pool, live, rebuilt)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, d := range diffs {
		got[d.Table] = !d.Equal()
	}
	if !got["messages"] || !got["events"] || got["conversations"] {
		t.Errorf("after changing a body and losing an event, differing tables %v, want messages and events", got)
	}
}
