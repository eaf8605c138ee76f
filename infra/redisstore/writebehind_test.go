package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/internal/testenv"
)

// Writes reach Redis in the background and each caller hears its outcome;
// Close sends what is still queued; a full queue refuses instead of
// blocking; a Redis that does not answer fails the writes, not the caller.
func TestWriteBehind(t *testing.T) {
	env := testenv.New(t)
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rdb, err := redisstore.NewClient(env.Cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	defer func() { _, _ = redisstore.DeletePrefix(ctx, rdb, env.Cfg.RedisPrefix) }()
	key := func(i int) string { return fmt.Sprintf("%s:wb:%d", env.Cfg.RedisPrefix, i) }

	wb := redisstore.NewWriteBehind(rdb, 1000, quiet)
	var mu sync.Mutex
	var ok, failed int
	done := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed++
		} else {
			ok++
		}
	}
	for i := range 500 {
		if !wb.Add(done, redisstore.Cmd{"set", key(i), i, "px", 60_000}) {
			t.Fatalf("write %d refused with room in the queue", i)
		}
	}
	wb.Close() // sends what is queued
	mu.Lock()
	if ok != 500 || failed != 0 {
		t.Fatalf("%d written, %d failed; want 500 written", ok, failed)
	}
	mu.Unlock()
	if n, err := rdb.Exists(ctx, key(0), key(499)).Result(); err != nil || n != 2 {
		t.Fatalf("keys written: %d, %v", n, err)
	}

	// A queue of 1 behind a Redis that never answers: the caller is never
	// held, the overflow is refused, and the queued writes fail.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	wb = redisstore.NewWriteBehind(dead, 1, quiet)
	defer wb.Close()
	refused := 0
	for range 50 {
		if !wb.Add(done, redisstore.Cmd{"set", key(1000), 1, "px", 60_000}) {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("a full queue took every write")
	}
	poll.Until(t, 10*time.Second, "the accepted writes to fail", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return failed == 50-refused
	})
}
