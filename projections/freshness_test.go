package projections_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/projections"
)

// A projector that gathers each batch for a minute still applies at once
// what a waiting reader needs: the wait hurries it (HurryChannel), so the
// read model holds each new event when the wait returns, well inside a
// wait limit shorter than the batch wait.
func TestWaitingReaderHurriesTheProjector(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.BatchWait = time.Minute
	env.StartNode("projector")
	l, err := kafkalog.Open(app.KafkaConfig(env.Cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	store := projections.NewStore(env.Pool, env.Cfg.DBSchema, env.Cfg.Topic)
	fresh := projections.Freshness{Store: store, Log: l, Max: 20 * time.Second}
	ctx := context.Background()
	for i := range 3 {
		conv := fmt.Sprintf("c_hurry%d", i)
		e, err := domain.NewEvent(domain.EvConversationCreated, conv, "alice", time.Now(),
			domain.ConversationCreated{Kind: domain.KindGroup, Title: "t", Members: []string{"alice"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		if err := fresh.WaitProjected(ctx, conv); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		evs, _, err := store.EventsAfter(ctx, conv, 0, 10, 1<<20)
		if err != nil || len(evs) != 1 || evs[0].Event.ID != e.ID {
			t.Fatalf("event %d: the read model holds %+v (%v), want %s", i, evs, err, e.ID)
		}
	}
}

// A replay's page is bounded in bytes as well as in events: a slow
// client's replay keeps its page until it read it. Paging on gets every
// event, in order, once.
func TestEventsAfterPagesAreBoundedInBytes(t *testing.T) {
	pool := openPool(t)
	store := projections.NewStore(pool, freshSchema(t, pool), testTopic)
	at := time.Now().UTC()
	recs := []projections.Record{{Partition: 0, Offset: 0,
		Event: mustEvent(t, domain.EvConversationCreated, "c_big", "u1", at, domain.ConversationCreated{Kind: "group", Members: []string{"u1"}})}}
	body := strings.Repeat("b", 8<<10)
	for i := range 40 {
		id := fmt.Sprint("m_", i)
		recs = append(recs, projections.Record{Partition: 0, Offset: int64(i + 1),
			Event: mustEvent(t, domain.EvMessageSent, "c_big", "u1", at, domain.MessageSent{MessageID: id, ClientMsgID: id, Body: body})})
	}
	ctx := context.Background()
	if err := store.Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	var after int64 = -1
	var seqs []int64
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatalf("still paging after %d pages", pages)
		}
		evs, more, err := store.EventsAfter(ctx, "c_big", after, 500, 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, e := range evs {
			size += len(e.Event.Data)
			seqs, after = append(seqs, e.Seq), e.Seq
		}
		if size > 64<<10+len(body)+1024 {
			t.Fatalf("a page of %d events held %d bytes, bound 64 KiB and one event", len(evs), size)
		}
		if !more {
			break
		}
	}
	if len(seqs) != len(recs) || !slices.IsSorted(seqs) || len(slices.Compact(slices.Clone(seqs))) != len(seqs) {
		t.Fatalf("paged %d events %v, want %d in order, once", len(seqs), seqs, len(recs))
	}
}
