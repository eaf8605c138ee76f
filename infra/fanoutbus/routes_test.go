package fanoutbus_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/fanoutbus"
	"github.com/parley-chat/parley/infra/handoff"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/testenv"
)

// busesOnRedis returns a maker of buses (processes) sharing the real Redis
// under a fresh prefix, and a wipe of that prefix (a data loss), which also
// runs after the test.
func busesOnRedis(t *testing.T) (newBus func() *fanoutbus.Bus, wipe func() error) {
	e := onRedis(t)
	return e.newBus, e.wipe
}

// redisEnv is the real Redis under a fresh prefix.
type redisEnv struct {
	t      *testing.T
	rdb    redis.UniversalClient
	prefix string
}

func onRedis(t *testing.T) *redisEnv {
	env := testenv.New(t)
	rdb, err := redisstore.NewClient(env.Cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	e := &redisEnv{t: t, rdb: rdb, prefix: env.Cfg.RedisPrefix}
	t.Cleanup(func() { _ = e.wipe(); rdb.Close() })
	return e
}

func (e *redisEnv) wipe() error {
	_, err := redisstore.DeletePrefix(context.Background(), e.rdb, e.prefix)
	return err
}

func (e *redisEnv) newBus() *fanoutbus.Bus {
	b, err := fanoutbus.New(e.rdb, fanoutbus.Config{Prefix: e.prefix}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

type lookup func(ctx context.Context, users []string) (map[string][]string, error)

// cachedLookup is a fan-out's lookup on bus through a RouteCache fed by a
// hand-off reader, as chatd's is. Each lookup first hands off a record and
// reads until it arrives: the route changes made before are then known to
// the cache as they are before a record logged after them.
func (e *redisEnv) cachedLookup(bus *fanoutbus.Bus) (*fanoutbus.RouteCache, lookup) {
	cache := bus.RouteCache()
	r, err := handoff.NewReader(e.rdb, handoff.Config{Prefix: e.prefix, Block: 50 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	r.WatchRoutes(cache)
	e.t.Cleanup(r.Close)
	var offset int64
	return cache, func(ctx context.Context, users []string) (map[string][]string, error) {
		offset++
		if _, err := r.Read(ctx, []int32{0}); err != nil { // subscribes first
			return nil, err
		}
		if err := e.rdb.SPublish(ctx, handoff.Channel(e.prefix, 0), handoff.Encode(offset, []byte("x"))).Err(); err != nil {
			return nil, err
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			recs, err := r.Read(ctx, []int32{0})
			if err != nil {
				return nil, err
			}
			if slices.ContainsFunc(recs, func(c kafkalog.Consumed) bool { return c.Offset == offset }) {
				return cache.NodesOf(ctx, users)
			}
		}
		return nil, errors.New("the handed-off record never arrived")
	}
}

// lookups are the two ways a fan-out finds users' nodes.
func (e *redisEnv) lookups(bus *fanoutbus.Bus) map[string]lookup {
	_, cached := e.cachedLookup(bus)
	return map[string]lookup{"redis": bus.NodesOf, "cached": cached}
}

// Routes on the real Redis: a user is routed to each node that joined it
// until that node leaves; a node without liveness is dropped from answers
// and its routes are removed; Alive tells a node whether Redis kept it.
// Cached, the answers are the same: every change reaches the cache before
// a record logged after it.
func TestRoutes(t *testing.T) {
	for _, name := range []string{"redis", "cached"} {
		t.Run(name, func(t *testing.T) {
			e := onRedis(t)
			bus := e.newBus()
			testRoutes(t, bus, e.lookups(bus)[name])
		})
	}
}

func testRoutes(t *testing.T, bus *fanoutbus.Bus, nodesOf lookup) {
	ctx := context.Background()
	n1, n2 := bus.Node("n1"), bus.Node("n2")
	for _, n := range []*fanoutbus.Node{n1, n2} {
		if kept, err := n.Alive(ctx); err != nil || kept {
			t.Fatalf("first liveness: kept %v err %v", kept, err)
		}
	}
	if kept, err := n1.Alive(ctx); err != nil || !kept {
		t.Fatalf("second liveness: kept %v err %v", kept, err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(n1.Join(ctx, "alice"))
	must(n1.Join(ctx, "alice")) // idempotent
	must(n2.Join(ctx, "alice"))
	must(n2.Join(ctx, "bob"))
	got, err := nodesOf(ctx, []string{"alice", "bob", "carol"})
	must(err)
	if a := slices.Sorted(slices.Values(got["alice"])); !slices.Equal(a, []string{"n1", "n2"}) || !slices.Equal(got["bob"], []string{"n2"}) || got["carol"] != nil {
		t.Fatalf("routes: %v", got)
	}
	must(n1.Leave(ctx, "alice"))
	got, err = nodesOf(ctx, []string{"alice"})
	must(err)
	if !slices.Equal(got["alice"], []string{"n2"}) {
		t.Fatalf("after n1 left alice: %v", got)
	}
	// n3 routed a user and died (never proved alive): dropped and removed.
	n3 := bus.Node("n3")
	must(n3.Join(ctx, "dave"))
	got, err = nodesOf(ctx, []string{"dave"})
	must(err)
	if len(got["dave"]) != 0 {
		t.Fatalf("route to a dead node answered: %v", got)
	}
	if dropped, err := n3.Dropped(ctx); err != nil || !dropped {
		t.Fatalf("n3 was not told its routes were dropped: %v %v", dropped, err)
	}
	if _, err := n3.Alive(ctx); err != nil {
		t.Fatal(err)
	}
	got, err = nodesOf(ctx, []string{"dave"})
	must(err)
	if len(got["dave"]) != 0 {
		t.Fatalf("the dead node's route was not removed: %v", got)
	}
	// Liveness is asked again (not remembered as dead) once the node lives.
	must(n3.Join(ctx, "dave"))
	got, err = nodesOf(ctx, []string{"dave"})
	must(err)
	if !slices.Equal(got["dave"], []string{"n3"}) {
		t.Fatalf("route to a node that came alive: %v", got)
	}
}

// SplitByNode gives each node only its recipients.
func TestSplitByNode(t *testing.T) {
	d := domain.Delivery{ConversationID: "c", Seq: 3, Recipients: []string{"a", "b", "c", "d"}}
	out := domain.SplitByNode(d, map[string][]string{"a": {"n1"}, "b": {"n2", "n1"}, "c": {"n2"}}, nil)
	if len(out) != 2 || out[0].Node != "n1" || !slices.Equal(out[0].Recipients, []string{"a", "b"}) ||
		out[1].Node != "n2" || !slices.Equal(out[1].Recipients, []string{"b", "c"}) || out[1].Seq != 3 {
		t.Fatalf("split: %+v", out)
	}
	// Appended after another delivery's: its entries stay its own.
	d2 := domain.Delivery{ConversationID: "c", Seq: 4, Recipients: []string{"c", "a"}}
	out = domain.SplitByNode(d2, map[string][]string{"a": {"n1"}, "c": {"n2"}}, out)
	if len(out) != 4 || !slices.Equal(out[0].Recipients, []string{"a", "b"}) || !slices.Equal(out[1].Recipients, []string{"b", "c"}) ||
		out[2].Node != "n2" || out[2].Seq != 4 || !slices.Equal(out[2].Recipients, []string{"c"}) ||
		out[3].Node != "n1" || !slices.Equal(out[3].Recipients, []string{"a"}) {
		t.Fatalf("split after another: %+v", out)
	}
}

// After Redis lost everything, a fan-out that watches for the loss sends
// every user's deliveries to every node it knows until the gateways have
// routed their users again, so live delivery has no gap.
func TestRoutesLostSendToEveryNode(t *testing.T) {
	ctx := context.Background()
	newBus, wipe := busesOnRedis(t)
	fan, gw := newBus(), newBus()
	if err := fan.WatchLoss(ctx, "f1"); err != nil {
		t.Fatal(err)
	}
	n1, n2 := gw.Node("n1"), gw.Node("n2")
	for _, n := range []*fanoutbus.Node{n1, n2} {
		if _, err := n.Alive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := n1.Join(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	got, err := fan.NodesOf(ctx, []string{"alice", "bob"})
	if err != nil || !slices.Equal(got["alice"], []string{"n1"}) || got["bob"] != nil {
		t.Fatalf("before the loss: %v %v", got, err)
	}
	if err := wipe(); err != nil {
		t.Fatal(err)
	}
	got, err = fan.NodesOf(ctx, []string{"alice"})
	if err != nil || !slices.Equal(slices.Sorted(slices.Values(got["alice"])), []string{"n1"}) {
		t.Fatalf("after the loss: %v %v (n1 was seen alive; n2 never routed anyone)", got, err)
	}
	if kept, err := n2.Alive(ctx); err != nil || kept {
		t.Fatalf("n2's liveness survived the loss: %v %v", kept, err)
	}
	got, err = fan.NodesOf(ctx, []string{"alice"})
	if err != nil || !slices.Equal(slices.Sorted(slices.Values(got["alice"])), []string{"n1", "n2"}) {
		t.Fatalf("after n2 registered again: %v %v", got, err)
	}
	if dropped, err := n1.Dropped(ctx); err != nil || dropped {
		t.Fatalf("a loss is not a dropped node: %v %v", dropped, err)
	}
}

// A join sends its route script by hash in the pipeline with its
// announcement; on a server that does not hold the script (new, restarted,
// flushed) it falls back to loading it, and the route is written all the
// same.
func TestJoinLoadsItsScript(t *testing.T) {
	ctx := context.Background()
	e := onRedis(t)
	b := e.newBus()
	n := b.Node("n1")
	if _, err := n.Alive(ctx); err != nil {
		t.Fatal(err)
	}
	for i, user := range []string{"alice", "bob"} {
		if err := e.rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := n.Join(ctx, user); err != nil {
			t.Fatalf("join %d after SCRIPT FLUSH: %v", i, err)
		}
	}
	if err := n.Join(ctx, "carol"); err != nil { // the script is loaded now
		t.Fatal(err)
	}
	got, err := b.NodesOf(ctx, []string{"alice", "bob", "carol"})
	if err != nil || len(got) != 3 || !slices.Equal(got["alice"], []string{"n1"}) || !slices.Equal(got["carol"], []string{"n1"}) {
		t.Fatalf("routes after the joins: %v %v", got, err)
	}
}

// A fan-out that read a node's liveness just before the node refreshed it
// (a stall) removes the node's routes after the node made them again. The
// node's next Check, its liveness kept, still reports the drop, so the
// gateway routes its users again and resyncs its clients.
func TestCheckSeesALateDrop(t *testing.T) {
	ctx := context.Background()
	e := onRedis(t)
	bus := e.newBus()
	n := bus.Node("n1")
	if err := n.Join(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if lost, dropped, err := n.Check(ctx); err != nil || !lost || dropped {
		t.Fatalf("first check: lost %v dropped %v (%v), want a liveness lost (never set) and no drop", lost, dropped, err)
	}
	// The fan-out's sweep, from a liveness read before that check.
	bus.DropDead(ctx, map[string][]string{"alice": {"n1"}}, map[string]bool{"n1": true})
	lost, dropped, err := n.Check(ctx)
	if err != nil || lost || !dropped {
		t.Fatalf("check after a late drop: lost %v dropped %v (%v), want the drop reported with the liveness kept", lost, dropped, err)
	}
	if lost, dropped, err := n.Check(ctx); err != nil || lost || dropped {
		t.Fatalf("a drop reported twice: lost %v dropped %v (%v)", lost, dropped, err)
	}
}
