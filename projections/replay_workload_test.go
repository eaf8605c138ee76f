package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/projections"
)

const testTopic = "chat.events.test"

func dsn() string {
	if v := os.Getenv("CHAT_DATABASE_URL"); v != "" {
		return v
	}
	return "postgres://localhost:5432/chat?sslmode=disable"
}

func openPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgstore.Open(context.Background(), dsn(), 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(context.Background()); err != nil {
		t.Fatalf("postgres is needed (go tool task services:up): %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// freshSchema builds an empty read-model schema, dropped after the test.
func freshSchema(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	name := "t_" + testenv.RandHex(5)
	if err := pgstore.Migrate(context.Background(), dsn(), name); err != nil {
		t.Fatalf("migrate %s: %v", name, err)
	}
	t.Cleanup(func() { dropSchemas(pool, name) })
	return name
}

func dropSchemas(pool *pgxpool.Pool, names ...string) {
	for _, n := range names {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{n}.Sanitize()+" CASCADE")
	}
}

// requireSame fails unless every read-model table of a and b holds the same
// rows (EXCEPT both ways).
func requireSame(t testing.TB, pool *pgxpool.Pool, a, b string) {
	t.Helper()
	diffs, err := projections.CompareSchemas(context.Background(), pool, a, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		if !d.Equal() {
			t.Errorf("%s: %s has %d rows, %s has %d; only in %s: %d, only in %s: %d\n%v",
				d.Table, a, d.Live, b, d.Rebuilt, a, d.OnlyLive, b, d.OnlyRebuilt, d.Samples)
		}
	}
}

// workload generates a realistic, deterministic event log: conversations
// created, members joining and leaving, messages sent, edited, deleted,
// read cursors (with repeats), a duplicate produce of a message (the
// idempotent-send takeover) and undecodable records.
type workload struct {
	rnd   *mrand.Rand
	parts int32
	next  map[int32]int64
	clock time.Time
	convs []*genConv
	recs  []projections.Record
	ids   int
}

type genConv struct {
	id      string
	part    int32
	members []string
	msgs    []genMsg
	reads   map[string]int64
	lastSeq int64
}

type genMsg struct {
	id, sender, cmid string
	seq              int64
	deleted          bool
}

func newWorkload(seed uint64, parts int32) *workload {
	return &workload{rnd: mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), parts: parts, next: map[int32]int64{},
		clock: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
}

func partitionOf(conv string, parts int32) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(conv))
	return int32(h.Sum32() % uint32(parts))
}

func (w *workload) id(prefix string) string {
	w.ids++
	return fmt.Sprintf("%s%06d", prefix, w.ids)
}

// emit appends an event of conv and returns its seq.
func (w *workload) emit(c *genConv, typ, actor string, payload any) int64 {
	// Mostly forward, sometimes a little backwards: nodes' clocks differ.
	w.clock = w.clock.Add(time.Duration(w.rnd.IntN(90_000)-5_000) * time.Millisecond)
	data, err := json.Marshal(payload)
	if err != nil {
		panic(err)
	}
	off := w.next[c.part]
	w.next[c.part]++
	w.recs = append(w.recs, projections.Record{Partition: c.part, Offset: off, Event: domain.Event{
		ID: w.id("e_"), Type: typ, ConversationID: c.id, Actor: actor, At: w.clock, Data: data}})
	c.lastSeq = domain.SeqOf(off)
	return c.lastSeq
}

func (w *workload) user() string { return fmt.Sprintf("u%02d", w.rnd.IntN(40)) }

func (w *workload) create() {
	c := &genConv{id: w.id("c_"), reads: map[string]int64{}}
	c.part = partitionOf(c.id, w.parts)
	creator := w.user()
	c.members = []string{creator}
	for range 1 + w.rnd.IntN(5) {
		if u := w.user(); !contains(c.members, u) {
			c.members = append(c.members, u)
		}
	}
	kind := domain.KindGroup
	if len(c.members) == 2 && w.rnd.IntN(2) == 0 {
		kind = domain.KindDirect
	}
	w.emit(c, domain.EvConversationCreated, creator, domain.ConversationCreated{Kind: kind, Title: "room " + c.id, Members: c.members})
	w.convs = append(w.convs, c)
}

func (w *workload) step() {
	if len(w.convs) == 0 || w.rnd.IntN(100) < 3 {
		w.create()
		return
	}
	c := w.convs[w.rnd.IntN(len(w.convs))]
	if len(c.members) == 0 {
		return
	}
	member := c.members[w.rnd.IntN(len(c.members))]
	switch r := w.rnd.IntN(1000); {
	case r < 30: // join
		if u := w.user(); !contains(c.members, u) {
			w.emit(c, domain.EvMemberJoined, member, domain.MemberChanged{UserID: u})
			c.members = append(c.members, u)
		}
	case r < 50: // leave
		if len(c.members) > 1 {
			w.emit(c, domain.EvMemberLeft, member, domain.MemberChanged{UserID: member})
			c.members = remove(c.members, member)
		}
	case r < 130: // edit
		if m := w.someMessage(c); m != nil {
			w.emit(c, domain.EvMessageEdited, m.sender, domain.MessageEdited{MessageID: m.id, MessageSeq: m.seq,
				ClientMsgID: m.cmid, Body: "edited " + w.id("b")})
		}
	case r < 170: // delete (sometimes twice)
		if m := w.someMessage(c); m != nil {
			w.emit(c, domain.EvMessageDeleted, m.sender, domain.MessageDeleted{MessageID: m.id, MessageSeq: m.seq})
			m.deleted = true
		}
	case r < 270: // read, sometimes repeating the same cursor
		up := c.lastSeq
		if prev, ok := c.reads[member]; ok && w.rnd.IntN(4) == 0 {
			up = prev
		}
		c.reads[member] = up
		w.emit(c, domain.EvReadMarked, member, domain.ReadMarked{UpToSeq: up})
	case r < 273: // a send produced twice (a presumed-dead owner that was only slow)
		if len(c.msgs) > 0 {
			m := c.msgs[len(c.msgs)-1]
			w.emit(c, domain.EvMessageSent, m.sender, domain.MessageSent{MessageID: m.id, ClientMsgID: m.cmid, Body: "dup"})
		}
	case r < 275: // an undecodable record
		off := w.next[c.part]
		w.next[c.part]++
		w.recs = append(w.recs, projections.Record{Partition: c.part, Offset: off, Invalid: true})
	case r < 325: // a reaction added or removed, often the same emoji again (a batch may hold both)
		if m := w.someMessage(c); m != nil {
			typ := domain.EvReactionAdded
			if w.rnd.IntN(3) == 0 {
				typ = domain.EvReactionRemoved
			}
			w.emit(c, typ, member, domain.Reaction{MessageID: m.id, Emoji: []string{"👍", "🎉", "❤️"}[w.rnd.IntN(3)]})
		}
	default: // send
		m := genMsg{id: w.id("m_"), sender: member, cmid: w.id("k")}
		var replyTo string
		if to := w.someMessage(c); to != nil && w.rnd.IntN(5) == 0 { // a fifth are replies
			replyTo = to.id
		}
		m.seq = w.emit(c, domain.EvMessageSent, member, domain.MessageSent{MessageID: m.id, ClientMsgID: m.cmid,
			Body: "hello " + m.id, ReplyTo: replyTo})
		c.msgs = append(c.msgs, m)
	}
}

func (w *workload) someMessage(c *genConv) *genMsg {
	if len(c.msgs) == 0 {
		return nil
	}
	return &c.msgs[len(c.msgs)-1-w.rnd.IntN(min(len(c.msgs), 20))]
}

// generate returns n more records in log order.
func (w *workload) generate(n int) []projections.Record {
	start := len(w.recs)
	for len(w.recs) < start+n {
		w.step()
	}
	return w.recs[start : start+n]
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func remove(s []string, v string) []string {
	out := s[:0:0]
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// applyAll applies recs in batches of size.
func applyAll(t testing.TB, st interface {
	Apply(context.Context, []projections.Record) error
}, recs []projections.Record, size int) {
	t.Helper()
	for i := 0; i < len(recs); i += size {
		if err := st.Apply(context.Background(), recs[i:min(i+size, len(recs))]); err != nil {
			t.Fatalf("apply [%d, %d): %v", i, min(i+size, len(recs)), err)
		}
	}
}
