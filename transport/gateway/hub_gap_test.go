package gateway

import (
	"sync"
	"testing"

	"github.com/parley-chat/parley/domain"
)

// gapClient records what the hub hands it.
type gapClient struct {
	mu       sync.Mutex
	got      []int64
	resynced int
}

func (c *gapClient) UserID() string { return "u" }

func (c *gapClient) Deliver(d domain.Delivery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, d.Seq)
}

func (c *gapClient) Resync(string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resynced++
}

// A connection told to resync after a delivery gap must receive nothing
// more: it resumes from the last seq it received, so a push from after the
// gap (found by the chaos test: seq 75 flushed before the close frame of a
// 1012, then sync from 75 skipped the lost 74) would move it past the
// deliveries that were lost.
func TestHubGapStopsDeliveries(t *testing.T) {
	h := NewHub(0, 0)
	h.StreamOf = func(string) string { return "s" }
	c := &gapClient{}
	if err := h.Register(c); err != nil {
		t.Fatal(err)
	}
	d := func(seq, prev int64) domain.Delivery {
		return domain.Delivery{ConversationID: "c", Partition: 0, Seq: seq, Prev: prev, Recipients: []string{"u"}}
	}
	h.Deliver(d(73, 72))
	h.Deliver(d(75, 74)) // 74 was lost: a gap
	h.Deliver(d(76, 75)) // before the connection has closed
	c.mu.Lock()
	got, resynced := append([]int64(nil), c.got...), c.resynced
	c.mu.Unlock()
	if resynced != 1 {
		t.Fatalf("resynced %d times, want 1", resynced)
	}
	if len(got) != 1 || got[0] != 73 {
		t.Fatalf("delivered %v, want only [73]: nothing after the gap may reach a resyncing connection", got)
	}
	// A connection that registers after the gap (it resumes with sync) gets
	// live deliveries as usual.
	fresh := &gapClient{}
	if err := h.Register(fresh); err != nil {
		t.Fatal(err)
	}
	h.Deliver(d(77, 76))
	fresh.mu.Lock()
	defer fresh.mu.Unlock()
	if len(fresh.got) != 1 || fresh.got[0] != 77 {
		t.Fatalf("a new connection got %v, want [77]", fresh.got)
	}
	h.Unregister(c)
	if len(h.resyncing) != 0 {
		t.Fatalf("resyncing keeps %d unregistered connections", len(h.resyncing))
	}
}
