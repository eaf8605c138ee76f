package projections_test

import (
	"context"
	"fmt"
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
		evs, err := store.EventsAfter(ctx, conv, 0, 10)
		if err != nil || len(evs) != 1 || evs[0].Event.ID != e.ID {
			t.Fatalf("event %d: the read model holds %+v (%v), want %s", i, evs, err, e.ID)
		}
	}
}
