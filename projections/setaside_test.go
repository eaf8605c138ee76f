package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/projections"
)

// One event the read models cannot hold (a body with U+0000, acked before
// validation refused it) must not stop the projection: it is set aside in
// dead_letters with its place in the log, the events around it are
// applied, and a second delivery changes nothing.
func TestPoisonEventIsSetAside(t *testing.T) {
	pool := openPool(t)
	schema := freshSchema(t, pool)
	st := projections.NewStore(pool, schema, testTopic)
	var setAside []int64
	st.OnSetAside = func(r projections.Record, _ error) { setAside = append(setAside, r.Offset) }
	at := time.Now().UTC()
	ev := func(typ string, payload any) domain.Event {
		e, err := domain.NewEvent(typ, "c_poison", "u1", at, payload)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	send := func(id, body string) domain.Event {
		return ev(domain.EvMessageSent, domain.MessageSent{MessageID: id, ClientMsgID: id, Body: body})
	}
	recs := []projections.Record{
		{Partition: 0, Offset: 0, Event: ev(domain.EvConversationCreated, domain.ConversationCreated{Kind: "group", Members: []string{"u1", "u2"}})},
		{Partition: 0, Offset: 1, Event: send("m_1", "before")},
		{Partition: 0, Offset: 2, Event: send("m_2", "a\x00b")},
		{Partition: 0, Offset: 3, Event: send("m_3", "after")},
	}
	ctx := context.Background()
	for range 2 { // the second delivery finds everything applied
		if err := st.Apply(ctx, recs); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	var msgs, dead int
	var off int64
	var errText string
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+schema+`.messages WHERE conversation_id='c_poison'`).Scan(&msgs); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*), max(log_offset), max(error) FROM `+schema+`.dead_letters`).Scan(&dead, &off, &errText); err != nil {
		t.Fatal(err)
	}
	if msgs != 2 || dead != 1 || off != 2 || errText == "" {
		t.Fatalf("messages %d (want 2), dead letters %d at offset %d (want 1 at 2), error %q", msgs, dead, off, errText)
	}
	if len(setAside) != 1 || setAside[0] != 2 {
		t.Fatalf("told of set-aside offsets %v, want [2]", setAside)
	}
	dl, err := st.DeadLetters(ctx, 10)
	if err != nil || len(dl) != 1 || dl[0].Offset != 2 || dl[0].Type != domain.EvMessageSent || dl[0].EventID != recs[2].Event.ID ||
		!strings.Contains(string(dl[0].Payload), `a\u0000b`) || !strings.Contains(dl[0].Error, "22021") {
		t.Fatalf("dead letters: %+v (err %v)", dl, err)
	}
	if d, found, err := st.DeadLetterAt(ctx, 0, 2); err != nil || !found || d.EventID != recs[2].Event.ID {
		t.Fatalf("dead letter at 0:2: %+v %v %v", d, found, err)
	}
	if _, found, err := st.DeadLetterAt(ctx, 0, 1); err != nil || found {
		t.Fatalf("dead letter at 0:1 (applied): found %v, err %v", found, err)
	}
	next, err := st.ResumeOffsets(ctx, []int32{0})
	if err != nil || next[0] != 4 {
		t.Fatalf("partition 0 continues at %d (err %v), want 4", next[0], err)
	}
}

// A replay sets aside the same events as the live projector, so the
// rebuilt read models equal the live ones row for row.
// An event whose envelope Postgres refuses (a NUL byte in its conversation
// id, from an older or a foreign producer) is set aside too: the dead
// letter's text columns replace what made it poison, so recording it
// cannot fail the same way and stall the projection.
func TestPoisonEnvelopeIsSetAside(t *testing.T) {
	pool := openPool(t)
	st := projections.NewStore(pool, freshSchema(t, pool), testTopic)
	e, err := domain.NewEvent(domain.EvReadMarked, "c\x00x", "u\x00", time.Now().UTC(), domain.ReadMarked{UpToSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := st.Apply(ctx, []projections.Record{{Partition: 0, Offset: 0, Event: e}}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	dl, err := st.DeadLetters(ctx, 10)
	if err != nil || len(dl) != 1 || dl[0].ConversationID != "c\ufffdx" || dl[0].Offset != 0 {
		t.Fatalf("dead letters: %+v (err %v), want the event at 0:0 with its conversation id made text", dl, err)
	}
	if next, err := st.ResumeOffsets(ctx, []int32{0}); err != nil || next[0] != 1 {
		t.Fatalf("partition 0 continues at %d (err %v), want 1", next[0], err)
	}
}

func TestReplaySetsAsideTheSamePoison(t *testing.T) {
	pool, live := replayable(t)
	ctx := context.Background()
	recs := newWorkload(5, 4).generate(1500)
	poisoned := 0
	for i := range recs {
		if recs[i].Event.Type == domain.EvMessageSent && i%500 == 250 {
			e, err := domain.NewEvent(domain.EvMessageSent, recs[i].Event.ConversationID, recs[i].Event.Actor, recs[i].Event.At,
				domain.MessageSent{MessageID: "m_poison" + recs[i].Event.ID, ClientMsgID: "p", Body: "nul\x00here"})
			if err != nil {
				t.Fatal(err)
			}
			recs[i].Event = e
			poisoned++
		}
	}
	if poisoned == 0 {
		t.Fatal("no event was poisoned")
	}
	applyAll(t, projections.NewStore(pool, live, testTopic), recs, 300)
	res := dryRunReplay(t, pool, live, recs)
	for _, s := range []string{live, res.Schema} {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+s+`.dead_letters`).Scan(&n); err != nil || n != poisoned {
			t.Fatalf("%s: %d set aside (err %v), want %d", s, n, err, poisoned)
		}
	}
}

// cappedSource reports the log's end short of the last n records of every
// partition, so a replay rebuilds up to there and applies the rest inside
// its switch transaction, catching up with the live schema.
type cappedSource struct {
	memSource
	n int64
}

func (c cappedSource) HighWaterMarks(ctx context.Context) (map[int32]int64, error) {
	hwm, err := c.memSource.HighWaterMarks(ctx)
	for p := range hwm {
		hwm[p] = max(hwm[p]-c.n, 0)
	}
	return hwm, err
}

// A poison event among those the switch applies to catch up with the live
// schema is set aside there as the live projector did, in the new schema:
// it does not fail the switch (which would fail every replay after it).
func TestReplaySwitchSetsAsidePoisonInItsCatchUp(t *testing.T) {
	pool, live := replayable(t)
	ctx := context.Background()
	recs := newWorkload(1, 4).generate(600)
	last := len(recs) - 5 // among the last records: in the switch's catch-up
	for recs[last].Event.Type != domain.EvMessageSent {
		last--
	}
	if int64(len(recs)-last) > 50 {
		t.Fatalf("no message among the last records")
	}
	r := recs[last]
	e, err := domain.NewEvent(domain.EvMessageSent, r.Event.ConversationID, r.Event.Actor, r.Event.At,
		domain.MessageSent{MessageID: "m_poison", ClientMsgID: "p", Body: "nul\x00here"})
	if err != nil {
		t.Fatal(err)
	}
	recs[last].Event = e
	if err := projections.NewStore(pool, live, testTopic).Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	rp := &projections.Replayer{Pool: pool, Topic: testTopic, Name: live, Source: cappedSource{memSource{recs}, 50}, Batch: 100,
		Migrate: func(ctx context.Context, s string) error { return pgstore.Migrate(ctx, dsn(), s) }}
	res, err := rp.Run(ctx, projections.ReplayOptions{})
	if err != nil || !res.Switched {
		t.Fatalf("replay: switched %v, err %v", res.Switched, err)
	}
	var off int64
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(max(log_offset), -1) FROM `+res.Schema+`.dead_letters`).Scan(&n, &off); err != nil {
		t.Fatal(err)
	}
	if n != 1 || off != r.Offset {
		t.Fatalf("the new schema set aside %d events, the last at %d; want 1 at %d", n, off, r.Offset)
	}
	for _, table := range []string{"messages", "event_log", "projector_offsets"} {
		var a, b int
		q := `SELECT count(*) FROM %s.` + table
		if err := pool.QueryRow(ctx, fmt.Sprintf(q, live)).Scan(&a); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, fmt.Sprintf(q, res.Schema)).Scan(&b); err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("%s: %d rows in the live schema, %d in the switched one", table, a, b)
		}
	}
}

// An event whose key is too long for an index (from a foreign producer:
// commands bound ids) is set aside live and by a replay alike, though a
// replay builds some of its indexes after the rows, where the row would
// fail the index build instead of its event.
func TestKeyTooLongToIndexIsSetAside(t *testing.T) {
	pool, live := replayable(t)
	ctx := context.Background()
	recs := newWorkload(7, 4).generate(800)
	// Random letters: Postgres compresses a long index entry, and a
	// repeated one would fit.
	rng := rand.New(rand.NewPCG(7, 7))
	var b strings.Builder
	for range 3000 {
		b.WriteByte(byte('a' + rng.IntN(26)))
	}
	long := b.String()
	var reply, read bool
	for i := range recs {
		e := recs[i].Event
		switch {
		case !reply && e.Type == domain.EvMessageSent && i > 100:
			var p domain.MessageSent
			if err := e.Payload(&p); err != nil {
				t.Fatal(err)
			}
			p.ReplyTo = long
			recs[i].Event, reply = mustEvent(t, e.Type, e.ConversationID, e.Actor, e.At, p), true
		case !read && e.Type == domain.EvReadMarked:
			recs[i].Event, read = mustEvent(t, e.Type, "c_"+long, e.Actor, e.At, domain.ReadMarked{UpToSeq: 1}), true
		}
	}
	if !reply || !read {
		t.Fatalf("the workload has no message or no read mark to lengthen (%v, %v)", reply, read)
	}
	applyAll(t, projections.NewStore(pool, live, testTopic), recs, 200)
	res := dryRunReplay(t, pool, live, recs)
	for _, s := range []string{live, res.Schema} {
		rows, err := pool.Query(ctx, `SELECT error FROM `+s+`.dead_letters`)
		if err != nil {
			t.Fatal(err)
		}
		errs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(errs) != 2 {
			t.Fatalf("%s set aside %q (err %v), want the two events with long keys", s, errs, err)
		}
		for _, e := range errs {
			if !strings.Contains(e, "of 3002 bytes") && !strings.Contains(e, "of 3000 bytes") {
				t.Errorf("%s: dead letter's error %q does not name the long key", s, e)
			}
		}
	}
}

func mustEvent(t *testing.T, typ, conv, actor string, at time.Time, payload any) domain.Event {
	t.Helper()
	e, err := domain.NewEvent(typ, conv, actor, at, payload)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
