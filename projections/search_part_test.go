package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/projections"
)

// searchDefinitionDiffs counts the messages whose message_search row is
// not what its definition says: to_tsvector of the body, NULL once deleted.
func searchDefinitionDiffs(t *testing.T, pool *pgxpool.Pool, schema string) int {
	t.Helper()
	s := pgx.Identifier{schema}.Sanitize()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM `+s+`.messages m
		FULL JOIN `+s+`.message_search ms USING (conversation_id, message_id)
		WHERE m.message_id IS NULL OR ms.message_id IS NULL
		   OR ms.tsv IS DISTINCT FROM CASE WHEN m.deleted THEN NULL ELSE to_tsvector('`+schema+`.parley_search'::regconfig, m.body) END`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The search projection, written by its own store at its own batch bounds
// and offsets, ends where one store writing everything in one transaction
// does, and holds what its definition says of every message.
func TestSearchPartFollowsTheLog(t *testing.T) {
	pool := openPool(t)
	recs := newWorkload(7, 4).generate(6000)
	split, whole := freshSchema(t, pool), freshSchema(t, pool)
	base := projections.NewStore(pool, split, testTopic)
	history, search := base.Writing(projections.PartHistory), base.Writing(projections.PartSearch)

	// History first, half the log: search has nothing yet, and its
	// offsets are its own.
	applyAll(t, history, recs[:3000], 100)
	ctx := context.Background()
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{split, "message_search"}.Sanitize()).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("message_search before the search part ran: %d rows, %v", rows, err)
	}
	for _, st := range []*projections.Store{search, history} {
		resume, err := st.ResumeOffsets(ctx, []int32{0, 1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, o := range resume {
			sum += o
		}
		if want := map[*projections.Store]int64{search: 0, history: 3000}[st]; sum != want {
			t.Errorf("resume offsets sum to %d, want %d", sum, want)
		}
	}
	// Then the rest, at other batch bounds, search in batches of 7 and
	// twice over (a redelivery changes nothing).
	applyAll(t, history, recs[3000:], 1000)
	applyAll(t, search, recs, 7)
	applyAll(t, search, recs[:2000], 500)
	applyAll(t, projections.NewStore(pool, whole, testTopic), recs, 1000)
	requireSame(t, pool, split, whole)
	for _, schema := range []string{split, whole} {
		if n := searchDefinitionDiffs(t, pool, schema); n != 0 {
			t.Errorf("%s: %d messages whose search row is not to_tsvector of the body (NULL once deleted)", schema, n)
		}
	}
}

// The cases a batch bound could change: a duplicate produce after an edit
// and after a delete, an edit after a delete, an edit before the send,
// all in one batch or one event at a time; what search finds is the
// messages table's state.
func TestSearchPartKeepsTheMessagesRules(t *testing.T) {
	pool := openPool(t)
	var recs []projections.Record
	add := func(typ string, payload any) { recs = appendEvent(recs, "c1", typ, payload) }
	sent := func(id, body string) {
		add(domain.EvMessageSent, domain.MessageSent{MessageID: id, ClientMsgID: "k" + id, Body: body})
	}
	add(domain.EvConversationCreated, domain.ConversationCreated{Kind: "group", Title: "t", Members: []string{"alice", "bob"}})
	sent("m1", "apple")
	add(domain.EvMessageEdited, domain.MessageEdited{MessageID: "m1", Body: "banana"})
	sent("m1", "apple") // a duplicate produce after the edit: still banana
	sent("m2", "cherry")
	add(domain.EvMessageDeleted, domain.MessageDeleted{MessageID: "m2"})
	sent("m2", "cherry")                                                             // after the delete: still gone
	add(domain.EvMessageEdited, domain.MessageEdited{MessageID: "m2", Body: "date"}) // after the delete: dropped
	sent("m3", "elder")
	add(domain.EvMessageEdited, domain.MessageEdited{MessageID: "m3", Body: "fig"})
	add(domain.EvMessageEdited, domain.MessageEdited{MessageID: "m3", Body: "grape"})
	// An edit before the send, whose original the log no longer has: the
	// message has its body as sent (messages' version guard drops the
	// edit), and is found by it.
	add(domain.EvMessageEdited, domain.MessageEdited{MessageID: "m4", Body: "mango"})
	sent("m4", "nectarine")
	want := map[string][]string{"apple": nil, "banana": {"m1"}, "cherry": nil, "date": nil, "elder": nil, "fig": nil, "grape": {"m3"},
		"mango": nil, "nectarine": {"m4"}}
	for _, size := range []int{1, 2, 3, len(recs)} {
		t.Run(fmt.Sprint("batches of ", size), func(t *testing.T) {
			schema := freshSchema(t, pool)
			base := projections.NewStore(pool, schema, testTopic)
			applyAll(t, base.Writing(projections.PartHistory), recs, len(recs))
			applyAll(t, base.Writing(projections.PartSearch), recs, size)
			for q, ids := range want {
				page, err := base.Search(context.Background(), "bob", projections.SearchQuery{Query: q})
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, m := range page.Messages {
					got = append(got, m.MessageID)
				}
				if !slices.Equal(got, ids) {
					t.Errorf("search %q: %v, want %v", q, got, ids)
				}
			}
			if n := searchDefinitionDiffs(t, pool, schema); n != 0 {
				t.Errorf("%d messages whose search row is not to_tsvector of the body (NULL once deleted)", n)
			}
		})
	}
}

// Migration 0013 fills message_search from the messages a schema holds and
// starts search_offsets at the projector's: a schema projected before it
// and migrated then ends equal to one built with it from the start.
func TestSearchMigrationFillsFromMessages(t *testing.T) {
	pool := openPool(t)
	recs := newWorkload(11, 4).generate(4000)
	old, fresh := newSchemaAt(t, pool, searchVersion-1), freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, old, testTopic).Writing(projections.PartHistory), recs[:2500], 500)
	migrateTo(t, old, searchVersion)
	applyAll(t, projections.NewStore(pool, old, testTopic), recs[2500:], 500)
	applyAll(t, projections.NewStore(pool, fresh, testTopic), recs, 1000)
	requireSame(t, pool, old, fresh)
	if n := searchDefinitionDiffs(t, pool, old); n != 0 {
		t.Errorf("%d messages whose search row is not to_tsvector of the body (NULL once deleted)", n)
	}
}

// searchVersion is the read-model migration of the search projection.
const searchVersion = 13

// newSchemaAt is a schema migrated up to version.
func newSchemaAt(t *testing.T, pool *pgxpool.Pool, version uint) string {
	t.Helper()
	name := "t_" + testenv.RandHex(5)
	t.Cleanup(func() { dropSchemas(pool, name) })
	if _, err := pool.Exec(context.Background(), "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	migrateTo(t, name, version)
	return name
}

// A dry run compares message_search only when the live search projection
// had caught up with history in its snapshot: behind, it says so instead
// of reporting a difference; caught up, a row that differs is found.
func TestDryRunComparesSearchOnlyWhenCaughtUp(t *testing.T) {
	pool, live := replayable(t)
	recs := newWorkload(5, 4).generate(1200)
	base := projections.NewStore(pool, live, testTopic)
	applyAll(t, base.Writing(projections.PartHistory), recs, 300)
	applyAll(t, base.Writing(projections.PartSearch), recs[:600], 300)
	search := func(res projections.ReplayResult) projections.TableDiff {
		for _, d := range res.Diffs {
			if d.Table == "message_search" {
				return d
			}
		}
		t.Fatalf("no message_search in the dry run's diffs: %+v", res.Diffs)
		return projections.TableDiff{}
	}
	if d := search(dryRunReplay(t, pool, live, recs)); d.Skipped == "" || d.Live != 0 {
		t.Errorf("search behind history: %+v, want it skipped", d)
	}
	applyAll(t, base.Writing(projections.PartSearch), recs[600:], 300)
	if d := search(dryRunReplay(t, pool, live, recs)); d.Skipped != "" || d.Live == 0 || !d.Equal() {
		t.Errorf("search caught up: %+v, want it compared, equal", d)
	}
	if _, err := pool.Exec(context.Background(), `UPDATE `+pgx.Identifier{live, "message_search"}.Sanitize()+
		` SET tsv = to_tsvector('simple', 'forged') WHERE message_id = (SELECT min(message_id) FROM `+
		pgx.Identifier{live, "message_search"}.Sanitize()+` WHERE tsv IS NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	r := &projections.Replayer{Pool: pool, Topic: testTopic, Name: live, Source: memSource{recs}, Batch: 400,
		Migrate: func(ctx context.Context, s string) error { return pgstore.Migrate(ctx, dsn(), s) }}
	res, err := r.Run(context.Background(), projections.ReplayOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if d := search(res); d.Skipped != "" || d.OnlyLive != 1 || d.OnlyRebuilt != 1 {
		t.Errorf("a forged search row: %+v, want one row only live and one only rebuilt", d)
	}
}

// appendEvent appends an event of conversation c by alice to a log of one
// partition, at the next offset and a second later than the one before.
func appendEvent(recs []projections.Record, c, typ string, payload any) []projections.Record {
	data, _ := json.Marshal(payload)
	off := int64(len(recs))
	return append(recs, projections.Record{Partition: 0, Offset: off, Event: domain.Event{
		ID: fmt.Sprint("e", off), Type: typ, ConversationID: c, Actor: "alice",
		At: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC).Add(time.Duration(off) * time.Second), Data: data}})
}

// An event the history part sets aside (a reply_to too long to index) is
// set aside by the search part too, so the two parts apart hold what one
// transaction of both (a replay) holds; the search part records no dead
// letter of its own.
func TestSearchPartSetsAsideWhatHistoryDoes(t *testing.T) {
	pool := openPool(t)
	var recs []projections.Record
	recs = appendEvent(recs, "c1", domain.EvConversationCreated, domain.ConversationCreated{Kind: "group", Title: "t", Members: []string{"alice", "bob"}})
	recs = appendEvent(recs, "c1", domain.EvMessageSent, domain.MessageSent{MessageID: "m1", ClientMsgID: "k1", Body: "plum", ReplyTo: strings.Repeat("r", 2000)})
	recs = appendEvent(recs, "c1", domain.EvMessageSent, domain.MessageSent{MessageID: "m2", ClientMsgID: "k2", Body: "quince"})
	split, whole := freshSchema(t, pool), freshSchema(t, pool)
	base := projections.NewStore(pool, split, testTopic)
	applyAll(t, base.Writing(projections.PartSearch), recs, len(recs))
	var dead int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{split, "dead_letters"}.Sanitize()).Scan(&dead); err != nil || dead != 0 {
		t.Fatalf("the search part wrote %d dead letters (%v), want none", dead, err)
	}
	applyAll(t, base.Writing(projections.PartHistory), recs, len(recs))
	applyAll(t, projections.NewStore(pool, whole, testTopic), recs, len(recs))
	requireSame(t, pool, split, whole)
	if n := searchDefinitionDiffs(t, pool, split); n != 0 {
		t.Errorf("%d messages whose search row is not to_tsvector of the body", n)
	}
}
