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
	open := func() *redisstore.Store {
		s, err := redisstore.Open(ctx, env.Cfg.RedisURL, env.Cfg.RedisPrefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	defer func() { _, _ = redisstore.DeletePrefix(context.Background(), a.Client(), env.Cfg.RedisPrefix) }()
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
