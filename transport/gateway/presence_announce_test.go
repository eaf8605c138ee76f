package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/poll"
)

type everyoneContacts struct{}

func (everyoneContacts) ContactsOf(_ context.Context, users []string, _ int) (map[string][]string, error) {
	out := make(map[string][]string, len(users))
	for _, u := range users {
		out[u] = []string{"friend"}
	}
	return out, nil
}

type countingPublisher struct {
	mu   sync.Mutex
	n    int
	last string // the last frame published
}

func (c *countingPublisher) PublishMany(_ context.Context, ds []domain.Delivery) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += len(ds)
	if len(ds) > 0 {
		c.last = string(ds[len(ds)-1].Frame)
	}
	return nil
}

func (c *countingPublisher) lastFrame() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *countingPublisher) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// A sweep's thousands of users are all announced: through the queue,
// which drops what does not fit, most of a dead node's users stayed online
// for their contacts.
func TestAnnounceAllLosesNone(t *testing.T) {
	pub := &countingPublisher{}
	p := NewPresence(nil, nil, everyoneContacts{}, pub, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	gone := map[string]time.Time{}
	for i := range 10_000 {
		gone[fmt.Sprint("u", i)] = time.Now()
	}
	p.AnnounceAll(context.Background(), domain.PresenceOffline, gone)
	if pub.count() != len(gone) {
		t.Fatalf("%d of %d announced", pub.count(), len(gone))
	}
}

// flakyState is presence state that fails the operations named in fail,
// once each, and otherwise keeps who is online.
type flakyState struct {
	mu     sync.Mutex
	online map[string]bool
	fail   map[string]bool
}

func (f *flakyState) op(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[name] {
		delete(f.fail, name)
		return fmt.Errorf("%w: redis away", domain.ErrUnavailable)
	}
	return nil
}

func (f *flakyState) Online(_ context.Context, u string, _ time.Time) (bool, error) {
	if err := f.op("online"); err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	first := !f.online[u]
	f.online[u] = true
	return first, nil
}

func (f *flakyState) Offline(_ context.Context, u string, _ time.Time) (bool, error) {
	if err := f.op("offline"); err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	last := f.online[u]
	f.online[u] = false
	return last, nil
}

func (f *flakyState) Settle(context.Context, string, time.Time) (bool, error) {
	return true, f.op("settle")
}

func (f *flakyState) isOnline(u string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.online[u]
}

type noRoutes struct{}

func (noRoutes) Join(context.Context, string) error  { return nil }
func (noRoutes) Leave(context.Context, string) error { return nil }

type userClient string

func (c userClient) UserID() string        { return string(c) }
func (userClient) Deliver(domain.Delivery) {}

// A presence change that fails (Redis away a moment) is applied again at
// the node's next check, as the user's connections then stand: a user
// whose last connection closed during the failure goes offline (and is
// announced), one whose first opened goes online.
func TestFailedPresenceIsReconciled(t *testing.T) {
	state := &flakyState{online: map[string]bool{}, fail: map[string]bool{}}
	pub := &countingPublisher{}
	p := NewPresence(noRoutes{}, state, everyoneContacts{}, pub, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.Start(ctx)
	h := NewHub(0, 0)
	h.Routes = p

	state.fail["offline"] = true
	if err := h.Register(userClient("u")); err != nil {
		t.Fatal(err)
	}
	h.Unregister(userClient("u"))
	if !state.isOnline("u") {
		t.Fatal("the failed offline took effect")
	}
	h.ReconcilePresence(ctx)
	if state.isOnline("u") {
		t.Fatal("u is still online after the reconciliation")
	}
	// The online may be folded into the offline if both wait at once.
	poll.Until(t, 5*time.Second, "u's offline announced", func() bool {
		return strings.Contains(pub.lastFrame(), `"status":"offline"`)
	})

	state.fail["online"] = true
	if err := h.Register(userClient("v")); err != nil {
		t.Fatal(err)
	}
	h.ReconcilePresence(ctx)
	if !state.isOnline("v") {
		t.Fatal("v is offline though connected after the reconciliation")
	}
	if f := p.Failed(); len(f) != 0 {
		t.Fatalf("still to retry: %v", f)
	}
}
