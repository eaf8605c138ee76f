package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/projections"
)

// After a mixed workload, a replay into a fresh schema yields row for row
// the live read models; then a real replay switches readers and the live
// projector to the rebuilt schema while messages flow and reads keep
// answering, and the old schema is dropped.
func TestReplayRebuildsAndSwitches(t *testing.T) {
	env := testenv.New(t)
	replayEnv(t, env)
	ctx := context.Background()
	n1 := env.StartNode("gateway", "fanout", "projector")
	n2 := env.StartNode("gateway") // reads only: follows the pointer by polling
	alice, bob := dial(t, env, n1, "alice"), dial(t, env, n2, "bob")
	carol, dave := dial(t, env, n1, "carol"), dial(t, env, n2, "dave")
	convs := mixedWorkload(t, alice, bob, carol, dave)
	g1 := convs[0]
	waitProjected(t, n1)

	live := env.Cfg.DBSchema
	res, err := runReplay(ctx, env.Cfg, replayFlags{DryRun: true, Batch: 7, Parallel: 2}, nil, testLog())
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if res.Switched || res.Previous != live || res.Events == 0 {
		t.Fatalf("dry run result %+v", res)
	}
	requireEqual(t, res.Diffs)
	if p, _, _ := projections.ReadPointer(ctx, env.Pool, live); p.Active != live {
		t.Fatalf("a dry run switched the pointer to %s", p.Active)
	}

	// The real replay, with writes and reads going on.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var readErrs, sendErrs errCounter
	var reads atomic.Int64
	var acked sync.Map // client_msg_id -> seq
	wg.Add(2)
	go func() { // alice keeps sending to g1
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cmid := fmt.Sprintf("during-%d", i)
			m, err := send(alice, g1, cmid)
			if err != nil {
				sendErrs.add(err)
				continue
			}
			acked.Store(cmid, m.Seq)
		}
	}()
	go func() { // bob keeps reading on the node that only reads
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var h historyReply
			if err := call(bob, "history", map[string]any{"conversation_id": g1, "limit": 200}, &h); err != nil {
				readErrs.add(err)
			} else if len(h.Messages) == 0 {
				readErrs.add(fmt.Errorf("history of %s is empty", g1))
			}
			var l struct {
				Conversations []struct {
					ConversationID string `json:"conversation_id"`
				} `json:"conversations"`
			}
			if err := call(bob, "conversation.list", map[string]any{}, &l); err != nil {
				readErrs.add(err)
			} else if len(l.Conversations) < 2 {
				readErrs.add(fmt.Errorf("bob lists %d conversations", len(l.Conversations)))
			}
			reads.Add(1)
		}
	}()
	res, err = runReplay(ctx, env.Cfg, replayFlags{Batch: 20, Parallel: 2, DropOld: true, Grace: 3 * time.Second}, nil, testLog())
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("replay: %v", err)
	}
	if !res.Switched || res.Previous != live || !strings.HasPrefix(res.Schema, live+"_r") {
		t.Fatalf("replay result %+v", res)
	}
	// Writes after the switch land in the new schema.
	testenv.WaitFor(t, 10*time.Second, "more sends after the switch", func() bool {
		return countMap(&acked) >= 5
	})
	close(stop)
	wg.Wait()
	if n, errs := readErrs.get(); n > 0 {
		t.Fatalf("%d reads failed during the replay (of %d), e.g. %v", n, reads.Load(), errs)
	}
	if n, errs := sendErrs.get(); n > 0 {
		t.Fatalf("%d sends failed during the replay, e.g. %v", n, errs)
	}
	if reads.Load() == 0 {
		t.Fatal("no reads ran during the replay")
	}
	t.Logf("replay %s: %d events in %s; %d read rounds and %d sends meanwhile", res.Schema, res.Events, res.Took,
		reads.Load(), countMap(&acked))

	p, ok, err := projections.ReadPointer(ctx, env.Pool, live)
	if err != nil || !ok || p.Active != res.Schema || p.Previous == nil || *p.Previous != live {
		t.Fatalf("pointer %+v (%v), want active %s", p, err, res.Schema)
	}
	for _, n := range []*testenv.Node{n1, n2} {
		testenv.WaitFor(t, 5*time.Second, "nodes to read the new schema", func() bool { return n.App.Store.Schema() == res.Schema })
	}
	var oldLeft bool
	if err := env.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname=$1)`, live).Scan(&oldLeft); err != nil || oldLeft {
		t.Fatalf("old schema %s still there (%v) after --drop-old", live, err)
	}

	// Every acked message is in the new schema exactly once, with its seq,
	// and history (served from it) returns them.
	waitProjected(t, n1)
	acked.Range(func(k, v any) bool {
		var seq int64
		q := `SELECT seq FROM ` + pgx.Identifier{res.Schema, "messages"}.Sanitize() + ` WHERE conversation_id=$1 AND client_msg_id=$2`
		if err := env.Pool.QueryRow(ctx, q, g1, k).Scan(&seq); err != nil || seq != v.(int64) {
			t.Errorf("message %s: seq %d (%v), acked %d", k, seq, err, v)
		}
		return true
	})
	var h historyReply
	must(t, bob, "history", map[string]any{"conversation_id": g1, "limit": 1}, &h)
	if len(h.Messages) != 1 {
		t.Fatalf("history: %+v", h)
	}
	if _, ok := acked.Load(h.Messages[0].ClientMsgID); !ok {
		t.Fatalf("history's newest message %+v is not one sent during the replay", h.Messages[0])
	}

	// The analytics views moved with the pointer.
	var viaViews, direct int
	a := pgx.Identifier{projections.AnalyticsSchemaFor(live)}.Sanitize()
	if err := env.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+a+`.messages),
		(SELECT count(*) FROM `+pgx.Identifier{res.Schema, "messages"}.Sanitize()+`)`).Scan(&viaViews, &direct); err != nil {
		t.Fatal(err)
	}
	if viaViews != direct || direct == 0 {
		t.Fatalf("analytics sees %d messages, the active schema holds %d", viaViews, direct)
	}

	// The live projector, now writing the rebuilt schema, and a second
	// rebuild still agree row for row.
	res2, err := runReplay(ctx, env.Cfg, replayFlags{DryRun: true, Batch: 1000, Parallel: 1}, nil, testLog())
	if err != nil {
		t.Fatal(err)
	}
	if res2.Previous != res.Schema {
		t.Fatalf("second dry run compared with %s, want %s", res2.Previous, res.Schema)
	}
	requireEqual(t, res2.Diffs)
}

func countMap(m *sync.Map) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

// An analyst's open transaction on an analytics view blocks the switch (it
// must repoint the view); the switch times out, rolls back what it applied,
// catches up again and retries, and nothing is lost once it gets through.
func TestReplaySwitchRetriesBehindAnalysts(t *testing.T) {
	env := testenv.New(t)
	replayEnv(t, env)
	ctx := context.Background()
	ptr, err := migrateAll(ctx, env.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	node := env.StartNode()
	alice := dial(t, env, node, "alice")
	g1 := create(t, alice, "group", "bob")

	analyst, err := env.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer analyst.Rollback(ctx) //nolint:errcheck // committed below
	var n int
	if err := analyst.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{ptr.Analytics, "messages"}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	sent := make(chan map[string]int64)
	go func() {
		acked := map[string]int64{}
		defer func() { sent <- acked }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if m, err := send(alice, g1, fmt.Sprintf("m%d", i)); err == nil {
				acked[m.ClientMsgID] = m.Seq
			}
		}
	}()

	logs := &testenv.LogSink{}
	src, err := openKafkaSource(env.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r := &projections.Replayer{Pool: env.Pool, Topic: env.Cfg.Topic, Name: env.Cfg.DBSchema, Source: src,
		Migrate: func(ctx context.Context, s string) error { return pgstore.Migrate(ctx, env.Cfg.DatabaseURL, s) },
		Batch:   50, SwitchLockTimeout: 200 * time.Millisecond, Log: slog.New(slog.NewTextHandler(logs, nil))}
	done := make(chan error, 1)
	var res projections.ReplayResult
	go func() {
		var err error
		res, err = r.Run(ctx, projections.ReplayOptions{})
		done <- err
	}()
	testenv.WaitFor(t, 30*time.Second, "two switch attempts to time out", func() bool {
		return strings.Count(logs.String(), "replay switch timed out") >= 2
	})
	if err := analyst.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("replay: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the replay did not finish once the analyst was done")
	}
	close(stop)
	acked := <-sent
	if !res.Switched || len(acked) == 0 {
		t.Fatalf("replay %+v, %d sends", res, len(acked))
	}
	waitProjected(t, node)
	for cmid, seq := range acked {
		var got int64
		q := `SELECT seq FROM ` + pgx.Identifier{res.Schema, "messages"}.Sanitize() + ` WHERE conversation_id=$1 AND client_msg_id=$2`
		if err := env.Pool.QueryRow(ctx, q, g1, cmid).Scan(&got); err != nil || got != seq {
			t.Errorf("message %s: seq %d (%v), acked %d", cmid, got, err, seq)
		}
	}
	res2, err := runReplay(ctx, env.Cfg, replayFlags{DryRun: true, Batch: 500, Parallel: 2}, nil, testLog())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res2.Diffs {
		if !d.Equal() {
			t.Errorf("%s differs after the retried switch: %+v", d.Table, d)
		}
	}
}
