package gateway

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// rejoinRoutes fails every Join after the first ok ones, or takes each
// Join slow.
type rejoinRoutes struct {
	mu     sync.Mutex
	joined []string
	ok     int
	slow   time.Duration
}

func (r *rejoinRoutes) Join(_ context.Context, user string) error {
	time.Sleep(r.slow)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ok >= 0 && len(r.joined) >= r.ok {
		return errors.New("redis: connection refused")
	}
	r.joined = append(r.joined, user)
	return nil
}

func (r *rejoinRoutes) Leave(context.Context, string) error { return nil }

type rejoinClient struct {
	user     string
	mu       sync.Mutex
	resynced int
}

func (c *rejoinClient) UserID() string          { return c.user }
func (c *rejoinClient) Deliver(domain.Delivery) {}
func (c *rejoinClient) Resync(string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resynced++
}

// After Redis lost the routes, a node routes its users again while the
// fan-out sends every delivery to every node. A user it failed to route
// (Redis refusing again) or routed after that window may have had
// deliveries go nowhere, with no gap to show for it: its connections are
// told to reconnect and sync; the users routed in time are left alone.
// Before, the users after a failure stayed unrouted, and the next check,
// finding the node alive, never tried again.
func TestRejoinResyncsWhatItCouldNotRoute(t *testing.T) {
	for _, c := range []struct {
		name   string
		routes *rejoinRoutes
		within time.Duration
		missed int
	}{
		{"all routed in time", &rejoinRoutes{ok: -1}, time.Minute, 0},
		{"redis fails part way", &rejoinRoutes{ok: 2}, time.Minute, 3},
		{"routed too late", &rejoinRoutes{ok: -1, slow: 30 * time.Millisecond}, 10 * time.Millisecond, 5},
	} {
		h := NewHub(0, 0)
		var clients []*rejoinClient
		for i := range 5 {
			cl := &rejoinClient{user: fmt.Sprint("u", i)}
			if err := h.Register(cl); err != nil {
				t.Fatal(err)
			}
			clients = append(clients, cl)
		}
		h.Routes = c.routes
		missed, err := h.Rejoin(context.Background(), c.within)
		if missed != c.missed || (err != nil) != (c.name == "redis fails part way") {
			t.Errorf("%s: %d users missed (err %v), want %d", c.name, missed, err, c.missed)
		}
		routedInTime := map[string]bool{}
		if c.missed < len(clients) {
			for _, u := range c.routes.joined {
				routedInTime[u] = true
			}
		}
		for _, cl := range clients {
			cl.mu.Lock()
			if want := map[bool]int{true: 0, false: 1}[routedInTime[cl.user]]; cl.resynced != want {
				t.Errorf("%s: %s (routed in time %v) told to resync %d times, want %d", c.name, cl.user, routedInTime[cl.user], cl.resynced, want)
			}
			cl.mu.Unlock()
		}
	}
}

// blockingRoutes holds every Join of user slow until released.
type blockingRoutes struct {
	slow    string
	entered chan struct{}
	release chan struct{}
}

func (r *blockingRoutes) Join(_ context.Context, user string) error {
	if user == r.slow {
		close(r.entered)
		<-r.release
	}
	return nil
}

func (r *blockingRoutes) Leave(context.Context, string) error { return nil }

// A user's connect waits on Redis under that user's lock only: while
// Redis is slow for one user's route, another user's connection opens.
// The lock was one of 64 stripes, so a slow Redis held up every user of a
// stripe, and a reconnect storm crawled.
func TestSlowRouteHoldsUpOnlyItsUser(t *testing.T) {
	stripe := func(u string) uint32 {
		f := fnv.New32a()
		_, _ = f.Write([]byte(u))
		return f.Sum32() % 64
	}
	other := ""
	for i := 0; other == ""; i++ { // a user that shared the slow one's stripe
		if u := fmt.Sprint("b", i); stripe(u) == stripe("a") {
			other = u
		}
	}
	h := NewHub(0, 0)
	routes := &blockingRoutes{slow: "a", entered: make(chan struct{}), release: make(chan struct{})}
	h.Routes = routes
	done := make(chan error, 2)
	go func() { done <- h.Register(&rejoinClient{user: "a"}) }()
	<-routes.entered
	go func() { done <- h.Register(&rejoinClient{user: other}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s's connect waited for a's route", other)
	}
	close(routes.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := h.Count(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}
