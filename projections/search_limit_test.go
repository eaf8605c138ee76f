package projections_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/projections"
)

// allMembers lets every user read every conversation.
type allMembers struct{}

func (allMembers) RequireMember(context.Context, string, string) error { return nil }

// oneSearchAtATime is a reader of the known log whose node runs one
// search at a time.
func oneSearchAtATime(t *testing.T) (projections.Reader, *projections.SearchLimit) {
	pool := openPool(t)
	store := projections.NewStore(pool, freshSchema(t, pool), testTopic)
	applyAll(t, store, knownLog(), 4)
	limit := projections.NewSearchLimit(1)
	return projections.Reader{Store: store, Access: allMembers{}, Searches: limit}, limit
}

// A node runs at most its limit of searches: one over it waits without a
// connection until a slot frees, and fails unavailable if its deadline
// comes first.
func TestSearchWaitsForASlot(t *testing.T) {
	r, limit := oneSearchAtATime(t)
	q := func() projections.SearchQuery { return projections.SearchQuery{Query: "fixed"} }

	release := projections.HoldSearchSlot(limit) // bob's search is running
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.Search(ctx, "alice", q()); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("a search over the limit, past its deadline: err %v, want unavailable", err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := r.Search(context.Background(), "alice", q())
		done <- err
	}()
	release() // the running search ends
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the waiting search: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting search did not run once the slot was free")
	}
	if n := limit.Running(); n != 0 {
		t.Fatalf("%d slots still taken after every search ended", n)
	}
	page, err := r.Search(context.Background(), "alice", q())
	if err != nil || len(page.Messages) == 0 {
		t.Fatalf("a search with a free slot: %+v, %v; want the edited message", page, err)
	}
}

// A search whose query outlives SearchTimeout is cancelled in Postgres and
// answered unavailable, naming the bound and what to do; its slot is free
// again and no backend goes on with it. Within the bound, or without one,
// the same search answers.
func TestSearchStopsAtItsTimeout(t *testing.T) {
	// Two connections: the lock's and the search's.
	pool, err := pgstore.Open(context.Background(), dsn(), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	schema := freshSchema(t, pool)
	store := projections.NewStore(pool, schema, testTopic)
	applyAll(t, store, knownLog(), 4)
	limit := projections.NewSearchLimit(1)
	r := projections.Reader{Store: store, Access: allMembers{}, Searches: limit, SearchTimeout: 300 * time.Millisecond}
	ctx := context.Background()

	holdBoth(t, pool) // both connections made
	made := pool.Stat().NewConnsCount()
	// The search's query waits behind a lock held until the test says.
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx) //nolint:errcheck // released below
	if _, err := lock.Exec(ctx, "LOCK TABLE "+schema+".messages IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = r.Search(ctx, "alice", projections.SearchQuery{Query: "fixed"})
	if !errors.Is(err, domain.ErrUnavailable) || !strings.Contains(err.Error(), "stopped after 300ms") {
		t.Fatalf("a search past its timeout: %v, want unavailable naming the bound", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the search answered after %s", took)
	}
	if limit.Running() != 0 {
		t.Fatal("a search that timed out kept its slot")
	}
	poll.Until(t, 5*time.Second, "no backend still running the search", func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%plainto_tsquery%' AND query NOT LIKE '%pg_stat_activity%' AND state = 'active'`).Scan(&n)
		return err == nil && n == 0
	})
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Postgres stopped the query, not the client: the search's connection
	// went back to the pool, and both are there without a new one.
	holdBoth(t, pool)
	if n := pool.Stat().NewConnsCount() - made; n != 0 {
		t.Errorf("the pool made %d connections after the search timed out: its connection was closed", n)
	}
	for _, timeout := range []time.Duration{0, time.Minute} {
		r.SearchTimeout = timeout
		page, err := r.Search(ctx, "alice", projections.SearchQuery{Query: "fixed"})
		if err != nil || len(page.Messages) == 0 {
			t.Fatalf("timeout %s: %+v, %v; want the edited message", timeout, page, err)
		}
	}
}

// holdBoth acquires both connections of pool at once, then releases them.
func holdBoth(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	var held []*pgxpool.Conn
	for range 2 {
		c, err := pool.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	for _, c := range held {
		c.Release()
	}
}

// A user runs one search at a time on a node: a second while the first
// waits or runs is refused rate_limited at once, so one user with many
// connections cannot hold every slot. Other users still wait their turn,
// and the user searches again once the first answered.
func TestSearchOneAtATimePerUser(t *testing.T) {
	r, limit := oneSearchAtATime(t)
	q := projections.SearchQuery{Query: "fixed"}
	search := func(user string) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := r.Search(context.Background(), user, q)
			done <- err
		}()
		return done
	}

	release := projections.HoldSearchSlot(limit) // carol's search is running
	first := search("alice")
	poll.Until(t, 5*time.Second, "alice's first search waiting for a slot", func() bool { return projections.SearchBusy(limit, "alice") })
	_, err := r.Search(context.Background(), "alice", q)
	if !errors.Is(err, domain.ErrRateLimited) || !strings.Contains(err.Error(), "one search at a time") {
		t.Fatalf("alice's second search while her first waits: %v, want rate limited", err)
	}
	bob := search("bob")
	poll.Until(t, 5*time.Second, "bob's search waiting for a slot", func() bool { return projections.SearchBusy(limit, "bob") })
	release()
	for name, done := range map[string]chan error{"alice's first": first, "bob's": bob} {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s search: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s search did not run once the slot was free", name)
		}
	}
	if page, err := r.Search(context.Background(), "alice", q); err != nil || len(page.Messages) == 0 {
		t.Fatalf("alice's search after her first answered: %+v, %v", page, err)
	}
	if n := limit.Running(); n != 0 || projections.SearchBusy(limit, "alice") || projections.SearchBusy(limit, "bob") {
		t.Fatalf("%d slots taken, alice or bob still busy after every search ended", n)
	}
}
