package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/testenv"
)

// A message's lock on the real Redis is held by one at a time across
// stores (nodes): a second waits until the first releases it, or fails
// unavailable when its context ends; another message's lock is free.
func TestLockMessage(t *testing.T) {
	env := testenv.New(t)
	ctx := context.Background()
	a, b := openStore(t, env), openStore(t, env)
	unlock, err := a.LockMessage(ctx, "c_1", "m_1")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := b.LockMessage(short, "c_1", "m_1"); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("a held lock taken again: err %v, want unavailable once the wait ends", err)
	}
	other, err := b.LockMessage(ctx, "c_1", "m_2")
	if err != nil {
		t.Fatalf("another message's lock: %v", err)
	}
	other()
	got := make(chan error, 1)
	go func() {
		u, err := b.LockMessage(ctx, "c_1", "m_1")
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the lock after its release: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the lock was not taken after its release")
	}
}

// A leave of a member keeps the seq of the join it ends, so a reader of
// the membership after the leave knows when the leaver was a member; a
// join again keeps that membership as the prior one. A leave of a user the hash did not hold as a member
// knows no join.
func TestLeaveKeepsItsJoin(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, testenv.New(t))
	step := func(seq int64, member bool, user string, want domain.Membership) {
		t.Helper()
		if err := s.ApplyMembership(ctx, "c_1", seq, member, user); err != nil {
			t.Fatal(err)
		}
		ms, _, err := s.Memberships(ctx, "c_1")
		if err != nil || ms[user] != want {
			t.Fatalf("after %v at %d: %+v (err %v), want %+v", member, seq, ms[user], err, want)
		}
	}
	step(2, true, "b", domain.Membership{Seq: 2, Member: true})
	step(5, false, "b", domain.Membership{Seq: 5, Joined: 2})
	step(3, true, "b", domain.Membership{Seq: 5, Joined: 2}) // older: no change
	// Back: the membership it left is kept as the prior one.
	step(7, true, "b", domain.Membership{Seq: 7, Member: true, PriorJoined: 2, PriorLeft: 5})
	step(9, false, "b", domain.Membership{Seq: 9, Joined: 7, PriorJoined: 2, PriorLeft: 5})
	step(4, false, "c", domain.Membership{Seq: 4})
	// A second leave (another device) ends no join the hash knows: the
	// first leave's membership becomes the prior one, and the user is not
	// a member between the two leaves.
	step(2, true, "d", domain.Membership{Seq: 2, Member: true})
	step(5, false, "d", domain.Membership{Seq: 5, Joined: 2})
	step(7, false, "d", domain.Membership{Seq: 7, PriorJoined: 2, PriorLeft: 5})
	if ms, _, _ := s.Memberships(ctx, "c_1"); ms["d"].MemberAt(6) || !ms["d"].MemberAt(3) {
		t.Fatalf("after join 2, leave 5, leave 7: %+v member at 6 or not at 3", ms["d"])
	}
	// The same two leaves cached out of log order: the earlier still ends
	// the membership.
	step(2, true, "e", domain.Membership{Seq: 2, Member: true})
	step(7, false, "e", domain.Membership{Seq: 7, Joined: 2})
	step(5, false, "e", domain.Membership{Seq: 7, PriorJoined: 2, PriorLeft: 5})
	if ms, _, _ := s.Memberships(ctx, "c_1"); ms["e"].MemberAt(6) || !ms["e"].MemberAt(3) {
		t.Fatalf("after join 2, leave 7, then leave 5: %+v member at 6 or not at 3", ms["e"])
	}
	if ms, _, _ := s.Memberships(ctx, "c_1"); len(ms) != 4 {
		t.Fatalf("memberships %v, want b, c, d and e only (no field taken for a user)", ms)
	}
}

// openStore is a store on the real Redis under env's prefix, closed and
// its keys deleted after the test.
func openStore(t *testing.T, env *testenv.Env) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(context.Background(), env.Cfg.RedisURL, env.Cfg.RedisPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = redisstore.DeletePrefix(context.Background(), s.Client(), env.Cfg.RedisPrefix)
		s.Close()
	})
	return s
}
