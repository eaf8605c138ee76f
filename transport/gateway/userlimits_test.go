package gateway

import (
	"testing"
	"time"
)

func TestUserLimits(t *testing.T) {
	l := NewUserLimits(1, 2)
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 2 {
		if ok, _ := l.Allow("alice", 1, t0); !ok {
			t.Fatalf("call %d within the burst refused", i)
		}
	}
	ok, wait := l.Allow("alice", 1, t0)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("third call at once: allowed %v, wait %v; want refused with a wait of at most 1 s", ok, wait)
	}
	if ok, _ := l.Allow("bob", 1, t0); !ok {
		t.Fatal("another user's first call refused")
	}
	if ok, _ := l.Allow("alice", 1, t0.Add(time.Second)); !ok {
		t.Fatal("a call a second later refused")
	}
	// A refused call takes no token: one more second gives one call, not zero.
	if ok, _ := l.Allow("alice", 1, t0.Add(time.Second)); ok {
		t.Fatal("a second call in the same instant allowed")
	}
	if ok, _ := l.Allow("alice", 1, t0.Add(2*time.Second)); !ok {
		t.Fatal("refused calls used up tokens")
	}
	// Buckets idle for longer than bucketIdle are dropped.
	l.Allow("carol", 1, t0.Add(3*bucketIdle))
	if _, kept := l.buckets["alice"]; kept || len(l.buckets) != 1 {
		t.Fatalf("idle buckets kept: %d buckets", len(l.buckets))
	}
}
