package fanoutbus_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parley-chat/parley/infra/fanoutbus"
	"github.com/parley-chat/parley/infra/handoff"
	"github.com/parley-chat/parley/infra/metrics"
)

// aliceOnN1 is a bus whose nodes n1 and n2 are alive, with alice on n1.
func aliceOnN1(t *testing.T) (*redisEnv, *fanoutbus.Bus) {
	t.Helper()
	ctx := context.Background()
	e := onRedis(t)
	bus := e.newBus()
	for _, n := range []string{"n1", "n2"} {
		if _, err := bus.Node(n).Alive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := bus.Node("n1").Join(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	return e, bus
}

// A RouteCache answers a user it knows without Redis, and reads afresh
// what it cannot know: a change whose announcement it has not received
// (simulated by writing the route behind its back) is read when the
// consumer says the next batch came from the log (ReadNext), and when the
// hand-off reader subscribes anew (Reset).
func TestRouteCacheReadsWhatItCannotKnow(t *testing.T) {
	ctx := context.Background()
	e, bus := aliceOnN1(t)
	cache, nodesOf := e.cachedLookup(bus)
	want := func(step string, got map[string][]string, err error, nodes ...string) {
		t.Helper()
		if err != nil || !slices.Equal(slices.Sorted(slices.Values(got["alice"])), nodes) {
			t.Fatalf("%s: alice on %v (%v), want %v", step, got["alice"], err, nodes)
		}
	}
	got, err := nodesOf(ctx, []string{"alice"})
	want("first lookup", got, err, "n1")
	cached := testutil.ToFloat64(metrics.FanoutRoutes.WithLabelValues("cached"))
	behindItsBack := func(v string) {
		t.Helper()
		if err := e.rdb.HSet(ctx, bus.RoutesKey("alice"), "alice", v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	behindItsBack("n1,n2")
	got, err = cache.NodesOf(ctx, []string{"alice"})
	want("a known user", got, err, "n1")
	if d := testutil.ToFloat64(metrics.FanoutRoutes.WithLabelValues("cached")) - cached; d != 1 {
		t.Fatalf("a known user was not answered from the cache (%v cached lookups)", d)
	}
	cache.ReadNext()
	got, err = cache.NodesOf(ctx, []string{"alice"})
	want("after ReadNext", got, err, "n1", "n2")

	behindItsBack("n2")
	r, err := handoff.NewReader(e.rdb, handoff.Config{Prefix: e.prefix, Block: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.WatchRoutes(cache)
	if _, err := r.Read(ctx, []int32{1}); err != nil { // a new subscription
		t.Fatal(err)
	}
	got, err = cache.NodesOf(ctx, []string{"alice"})
	want("after a new subscription", got, err, "n2")
}

// A lookup keeps what it read for every user but those that changed (or
// everyone, after a Reset) while it was reading: a burst of connections
// elsewhere does not keep the cache from filling.
func TestRouteCacheKeepsWhatDidNotChangeDuringARead(t *testing.T) {
	ctx := context.Background()
	e := onRedis(t)
	bus := e.newBus()
	if _, err := bus.Node("n1").Alive(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		if err := bus.Node("n1").Join(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	cache := bus.RouteCache()
	cached := func() float64 { return testutil.ToFloat64(metrics.FanoutRoutes.WithLabelValues("cached")) }
	lookup := func(users ...string) (hits float64) {
		t.Helper()
		before := cached()
		got, err := cache.NodesOf(ctx, users)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			if !slices.Equal(got[u], []string{"n1"}) {
				t.Fatalf("%s on %v, want n1", u, got[u])
			}
		}
		return cached() - before
	}
	restore := fanoutbus.SetAfterRead(func() { cache.Changed("bob") })
	lookup("alice", "bob")
	restore()
	if hits := lookup("alice"); hits != 1 {
		t.Fatalf("alice, who did not change during the read, was not kept (%v hits)", hits)
	}
	if hits := lookup("bob"); hits != 0 {
		t.Fatalf("bob, who changed during the read, was kept (%v hits)", hits)
	}
	restore = fanoutbus.SetAfterRead(cache.Reset)
	lookup("carol")
	restore()
	if hits := lookup("carol"); hits != 0 {
		t.Fatalf("a read that a Reset overtook was kept (%v hits)", hits)
	}
	if hits := lookup("carol"); hits != 1 {
		t.Fatalf("carol was not kept after a quiet read (%v hits)", hits)
	}
}

// ReadNext holds until a lookup succeeds: the consumer retries a batch
// whose route read failed without reading the log again, and the retry
// must still read every user afresh, or a route made before the batch's
// records were logged (its announcement still on its way) is missed.
func TestRouteCacheReadNextOutlivesAFailedRead(t *testing.T) {
	ctx := context.Background()
	e, bus := aliceOnN1(t)
	cache := bus.RouteCache()
	if _, err := cache.NodesOf(ctx, []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.HSet(ctx, bus.RoutesKey("alice"), "alice", "n1,n2").Err(); err != nil { // behind its back
		t.Fatal(err)
	}
	cache.ReadNext()
	failed, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := cache.NodesOf(failed, []string{"alice"}); err == nil {
		t.Fatal("a lookup on a cancelled context succeeded")
	}
	got, err := cache.NodesOf(ctx, []string{"alice"})
	if err != nil || !slices.Equal(slices.Sorted(slices.Values(got["alice"])), []string{"n1", "n2"}) {
		t.Fatalf("the retried lookup: alice on %v (%v), want n1,n2 read afresh", got["alice"], err)
	}
}
