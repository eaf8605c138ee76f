package gateway

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/poll"
)

// A sync that comes after the initial hold timed out (a phone on a slow
// network), from a position older than a push the hold let through, can
// no longer replay what came between before that push: it was answered ok
// from the push's seq on, and the events between never reached the
// device, with no gap it could see. Now the stream delivers nothing more
// and has the connection closed (1012) for the client to sync first.
func TestLateSyncBehindAnEarlyPushClosesTheConnection(t *testing.T) {
	var mu sync.Mutex
	var got []int64
	frames := map[string]int64{}
	out := func(f []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, frames[string(f)])
		return true
	}
	d := func(conv string, seq int64) domain.Delivery {
		f := fmt.Sprint(conv, "@", seq)
		mu.Lock()
		frames[f] = seq
		mu.Unlock()
		return domain.Delivery{ConversationID: conv, Seq: seq, Frame: []byte(f)}
	}
	seen := func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		return append([]int64(nil), got...)
	}

	var gap atomic.Bool
	s := NewStream(out, 16)
	s.OnGap = func() { gap.Store(true) }
	s.Deliver(d("x", 51)) // held: no request yet
	s.expire()            // the hold times out before the sync arrives
	if g := seen(); len(g) != 1 || g[0] != 51 {
		t.Fatalf("after the hold: %v, want [51]", g)
	}
	s.Replay("x", 43) // the client has 43: 44..50 are lost to this connection
	if !s.Broken() {
		t.Fatal("a sync from 43 after 51 was pushed did not break the stream")
	}
	poll.Until(t, 5*time.Second, "the connection told to resync", gap.Load)
	s.Emit("x", 44, d("x", 44).Frame)
	s.Deliver(d("x", 52))
	if g := seen(); len(g) != 1 {
		t.Fatalf("a broken stream delivered more: %v", g)
	}

	// A request first, then a push, then a sync of that conversation from
	// before it: the client learned of it from the push and pages it with
	// history, as docs/protocol.md says; nothing breaks.
	s = NewStream(out, 16)
	s.OnGap = func() { t.Error("a sync after a request broke the stream") }
	s.Release()
	s.Deliver(d("y", 20))
	s.Replay("y", 5)
	// Early, but the sync's position is at or past it.
	s2 := NewStream(out, 16)
	s2.OnGap = func() { t.Error("a sync from past the early push broke the stream") }
	s2.Deliver(d("z", 30))
	s2.expire()
	s2.Replay("z", 30)
	if s.Broken() || s2.Broken() {
		t.Fatal("a stream broke with nothing lost")
	}
}
