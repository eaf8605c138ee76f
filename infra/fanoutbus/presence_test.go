package fanoutbus_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/fanoutbus"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/testenv"
)

// Presence on the real Redis: the first connection anywhere is announced,
// a second node's is not; the last one closing starts a debounce that a
// reconnect cancels; a node that died without closing anything takes its
// users offline in one sweep, once.
func TestPresenceTransitions(t *testing.T) {
	env := testenv.New(t)
	rdb, err := redisstore.NewClient(env.Cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	b, err := fanoutbus.New(rdb, fanoutbus.Config{Prefix: env.Cfg.RedisPrefix}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n1, n2, dead := b.Node("p1"), b.Node("p2"), b.Node("p3")
	for _, n := range []interface {
		Alive(context.Context) (bool, error)
	}{n1, n2, dead} {
		if _, err := n.Alive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Now()
	must := func(v bool, err error) bool {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	presence := func(users ...string) map[string]domain.Seen {
		t.Helper()
		seen, err := b.Presence(ctx, users)
		if err != nil {
			t.Fatal(err)
		}
		return seen
	}
	if !must(n1.Online(ctx, "u", at)) {
		t.Error("first connection anywhere: want an online announcement")
	}
	if must(n1.Online(ctx, "u", at)) || must(n2.Online(ctx, "u", at)) {
		t.Error("a repeated join or a second node: want no announcement")
	}
	if must(n1.Offline(ctx, "u", at)) {
		t.Error("n2 still holds u: want no offline")
	}
	off := at.Add(time.Second)
	if !must(n2.Offline(ctx, "u", off)) {
		t.Fatal("last node left: want the debounce to start")
	}
	if seen := presence("u")["u"]; seen.Online || !seen.LastSeen.Equal(time.UnixMilli(off.UnixMilli()).UTC()) {
		t.Errorf("after the last close: %+v, want offline since %v", seen, off)
	}
	// Back within the debounce: neither the online nor the offline is announced.
	if must(n1.Online(ctx, "u", off)) {
		t.Error("back within the debounce: want no online announcement")
	}
	if must(n2.Settle(ctx, "u", off)) {
		t.Error("settle after the user came back: want no offline announcement")
	}
	// Gone for good: the settle announces.
	later := off.Add(time.Second)
	must(n1.Offline(ctx, "u", later))
	if !must(n1.Settle(ctx, "u", later)) {
		t.Error("settle with the user still away: want the offline announcement")
	}
	if must(n1.Settle(ctx, "u", later)) {
		t.Error("a second settle: want nothing")
	}

	// A node that dies with users on it.
	must(dead.Online(ctx, "v", at))
	must(dead.Online(ctx, "w", at))
	must(n1.Online(ctx, "w", at)) // w also has a tab on a live node
	if seen := presence("v", "w"); !seen["v"].Online || !seen["w"].Online {
		t.Fatalf("before the death: %+v", seen)
	}
	gone, err := b.SweepDead(ctx, at, time.Second)
	if err != nil || len(gone) != 0 {
		t.Fatalf("sweep with every node alive: %v %v", gone, err)
	}
	// p3 dies: its liveness lapses.
	if err := rdb.Del(ctx, b.NodeStream("p3")+":alive").Err(); err != nil {
		t.Fatal(err)
	}
	// Another process (a bus that has not seen p3 alive lately) reads v offline.
	other, err := fanoutbus.New(rdb, fanoutbus.Config{Prefix: env.Cfg.RedisPrefix}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if seen, err := other.Presence(ctx, []string{"v", "w"}); err != nil || seen["v"].Online || !seen["w"].Online {
		t.Errorf("after p3 died: %+v %v, want v offline (only on p3) and w online", seen, err)
	}
	gone, err = b.SweepDead(ctx, later, time.Second)
	if err != nil || len(gone) != 1 || gone["v"].IsZero() {
		t.Fatalf("sweep after p3 died: %v %v, want v alone (w is on p1)", gone, err)
	}
	if again, err := b.SweepDead(ctx, later, time.Second); err != nil || len(again) != 0 {
		t.Errorf("second sweep: %v %v, want nothing", again, err)
	}
}

// A dead node leaves nothing behind once swept: its delivery stream, its
// user set and its place in the nodes set go (node ids are pod names, new
// at every replacement), so later sweeps do not walk it again.
func TestSweptNodeLeavesNothing(t *testing.T) {
	e := onRedis(t)
	b := e.newBus()
	ctx := context.Background()
	dead := b.Node("gone")
	if _, err := dead.Alive(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Online(ctx, "u", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishBatch(ctx, []domain.Delivery{{Node: "gone", ConversationID: "c", Seq: 1, Recipients: []string{"u"}, Frame: []byte("{}")}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := e.rdb.Exists(ctx, b.NodeStream("gone")).Result(); n != 1 {
		t.Fatal("no delivery stream to leave behind")
	}
	if err := e.rdb.Del(ctx, b.NodeStream("gone")+":alive").Err(); err != nil {
		t.Fatal(err)
	}
	if gone, err := b.SweepDead(ctx, time.Now(), time.Second); err != nil || len(gone) != 1 {
		t.Fatalf("sweep: %v %v, want u", gone, err)
	}
	for _, key := range []string{b.NodeStream("gone"), b.NodeStream("gone") + ":presence"} {
		if n, _ := e.rdb.Exists(ctx, key).Result(); n != 0 {
			t.Errorf("%s left behind", key)
		}
	}
	if in, _ := e.rdb.SIsMember(ctx, e.prefix+":nodes", "gone").Result(); in {
		t.Error("the dead node is still in the nodes set")
	}
}

// A node restarted under the same id within the liveness TTL is never
// found dead: before it takes connections it takes offline what its
// previous run left in presence, and drops that run's routes.
func TestRestartUnderTheSameIDForgetsThePrevious(t *testing.T) {
	e := onRedis(t)
	ctx := context.Background()
	first := e.newBus().Node("g")
	if _, err := first.Alive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.Join(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Online(ctx, "u", time.Now()); err != nil {
		t.Fatal(err)
	}
	b := e.newBus() // the new run, its liveness key still there
	gone, err := b.Node("g").ForgetPrevious(ctx, time.Now(), time.Second)
	if err != nil || len(gone) != 1 {
		t.Fatalf("forget the previous run: %v %v, want u", gone, err)
	}
	if seen, err := b.Presence(ctx, []string{"u"}); err != nil || seen["u"].Online {
		t.Fatalf("u after the restart: %+v %v, want offline", seen, err)
	}
	if nodes, err := b.NodesOf(ctx, []string{"u"}); err != nil || len(nodes["u"]) != 0 {
		t.Fatalf("u's routes after the restart: %v %v, want none", nodes, err)
	}
}
