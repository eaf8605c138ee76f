package redisstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
)

// ReserveMember claims in one round trip only for a member the complete
// hash confirms; otherwise it claims nothing, so the long access check
// decides (and Reserve claims after it).
func TestReserveMember(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testenv.New(t))
	ttl := time.Hour
	if err := s.ApplyMembership(ctx, "c_new", 5, true, "alice"); err != nil {
		t.Fatal(err)
	}
	// Not complete yet (a change landed before the creation was applied).
	if member, _, _, _, err := s.ReserveMember(ctx, "c_new", "alice", "k1", "p:m1", ttl); err != nil || member {
		t.Fatalf("incomplete hash: member %v, err %v", member, err)
	}
	if err := s.ApplyMembership(ctx, "c_1", 1, true, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkCreated(ctx, "c_1"); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyMembership(ctx, "c_1", 9, false, "bob"); err != nil {
		t.Fatal(err)
	}
	member, won, cur, intact, err := s.ReserveMember(ctx, "c_1", "alice", "k1", "p:m1", ttl)
	if err != nil || !member || !won || cur != "p:m1" || !intact {
		t.Fatalf("member's claim: member %v won %v cur %q intact %v err %v", member, won, cur, intact, err)
	}
	member, won, cur, _, err = s.ReserveMember(ctx, "c_1", "alice", "k1", "p:m2", ttl)
	if err != nil || !member || won || cur != "p:m1" {
		t.Fatalf("second claim: member %v won %v cur %q err %v", member, won, cur, err)
	}
	for _, u := range []string{"bob", "mallory"} { // a former member, a stranger
		if member, _, _, _, err := s.ReserveMember(ctx, "c_1", u, "k1", "p:m3", ttl); err != nil || member {
			t.Fatalf("%s: member %v err %v", u, member, err)
		}
		if won, cur, _, err := s.Reserve(ctx, "c_1", u, "k1", "p:m3", ttl); err != nil || !won || cur != "p:m3" {
			t.Fatalf("%s: nothing was claimed before: won %v cur %q err %v", u, won, cur, err)
		}
	}
	// A stranger's retry must not release the claim its first, long-path
	// attempt holds (the fast path claims, then releases only its own).
	if member, won, _, _, err := s.ReserveMember(ctx, "c_1", "mallory", "k1", "p:m4", ttl); err != nil || member || won {
		t.Fatalf("stranger's retry: member %v won %v err %v", member, won, err)
	}
	if won, cur, _, err := s.Reserve(ctx, "c_1", "mallory", "k1", "p:m5", ttl); err != nil || won || cur != "p:m3" {
		t.Fatalf("stranger's first claim: won %v cur %q err %v, want it kept (p:m3)", won, cur, err)
	}
	// A complete hash without the idempotency marker (rebuilt after a data
	// loss): the claim marks it and reports records as possibly lost.
	if err := s.Client().HDel(ctx, s.MembersKey("c_1"), "!idem").Err(); err != nil {
		t.Fatal(err)
	}
	member, won, cur, intact, err = s.ReserveMember(ctx, "c_1", "alice", "k2", "p:m6", ttl)
	if err != nil || !member || !won || cur != "p:m6" || intact {
		t.Fatalf("claim after a loss: member %v won %v cur %q intact %v err %v", member, won, cur, intact, err)
	}
	if v, err := s.Client().HGet(ctx, s.MembersKey("c_1"), "!idem").Result(); err != nil || !strings.HasPrefix(v, "since:") {
		t.Fatalf("marker after a loss: %q err %v", v, err)
	}
	ms, complete, err := s.Memberships(ctx, "c_1")
	if err != nil || !complete || len(ms) != 2 {
		t.Fatalf("memberships %v complete %v err %v: want alice and bob only (no marker fields)", ms, complete, err)
	}
}
