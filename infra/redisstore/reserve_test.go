package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/testenv"
)

// ReserveMember claims in one round trip only for a member the complete
// hash confirms; otherwise it claims nothing, so the long access check
// decides (and Reserve claims after it).
func TestReserveMember(t *testing.T) {
	env := testenv.New(t)
	ctx := context.Background()
	s, err := redisstore.Open(ctx, env.Cfg.RedisURL, env.Cfg.RedisPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer func() { _, _ = redisstore.DeletePrefix(context.Background(), s.Client(), env.Cfg.RedisPrefix) }()
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
	ms, complete, err := s.Memberships(ctx, "c_1")
	if err != nil || !complete || len(ms) != 2 {
		t.Fatalf("memberships %v complete %v err %v: want alice and bob only (no marker fields)", ms, complete, err)
	}
}
