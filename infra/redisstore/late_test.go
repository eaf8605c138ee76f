//go:build linux

package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/internal/testenv"
)

// lateSetup is a client of the test Redis, a Late on it and a key maker
// under the test's prefix.
func lateSetup(t *testing.T) (redis.UniversalClient, *redisstore.Late, func(string) string) {
	t.Helper()
	env := testenv.New(t)
	rdb, err := redisstore.NewClient(env.Cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	l := redisstore.NewLate(rdb, slog.New(slog.NewTextHandler(io.Discard, nil)), "late")
	if l == nil {
		t.Fatal("no Late for a plain TCP Redis")
	}
	t.Cleanup(func() {
		l.Close()
		_, _ = redisstore.DeletePrefix(context.Background(), rdb, env.Cfg.RedisPrefix)
		rdb.Close()
	})
	return rdb, l, func(k string) string { return env.Cfg.RedisPrefix + ":late:" + k }
}

func set(key, value string) []byte {
	return redisstore.AppendCommand(nil, redisstore.Cmd{"set", key, value, "px", int64(60_000)})
}

func waitValue(t *testing.T, rdb redis.UniversalClient, key, want string) {
	t.Helper()
	poll.Until(t, 5*time.Second, key+" = "+want, func() bool {
		got, err := rdb.Get(context.Background(), key).Result()
		return err == nil && got == want
	})
}

// Writes land without their replies being waited for; a write Redis refuses
// is counted when its reply is read (at the next write, or within a second)
// and leaves the connection in step: the writes after it land.
func TestLateWritesAndRefusals(t *testing.T) {
	rdb, l, key := lateSetup(t)
	ctx := context.Background()
	if err := rdb.Set(ctx, key("str"), "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	refused := metrics.RedisErrors.WithLabelValues("late_refused")
	before := testutil.ToFloat64(refused)

	b := set(key("a"), "1")
	b = redisstore.AppendCommand(b, redisstore.Cmd{"xadd", key("str"), "*", "f", []byte("v")}) // WRONGTYPE
	b = append(b, set(key("b"), "2")...)
	if !l.Write(b, 3) {
		t.Fatal("write refused")
	}
	waitValue(t, rdb, key("a"), "1")
	waitValue(t, rdb, key("b"), "2")
	poll.Until(t, 5*time.Second, "the refusal to be counted", func() bool {
		l.Drain()
		return testutil.ToFloat64(refused) == before+1
	})
	for i := range 100 {
		if !l.Write(set(key("c"), fmt.Sprint(i)), 1) {
			t.Fatalf("write %d refused", i)
		}
	}
	waitValue(t, rdb, key("c"), "99")
	if got := testutil.ToFloat64(refused); got != before+1 {
		t.Fatalf("%v refusals counted, want 1", got-before)
	}
}

// A connection Redis closed is found by the next write (its reply and the
// close behind it are read to the end), which returns false so that its
// caller writes through the pool; after lateRetry the next write connects
// again.
func TestLateReconnects(t *testing.T) {
	defer redisstore.SetLateTimes(2*time.Second, 100*time.Millisecond)()
	rdb, l, key := lateSetup(t)
	ctx := context.Background()
	if !l.Write(set(key("a"), "1"), 1) {
		t.Fatal("write refused")
	}
	waitValue(t, rdb, key("a"), "1") // its +OK now waits unread
	addr := l.LocalAddr()
	if addr == "" {
		t.Fatal("no connection after a write")
	}
	if err := rdb.Do(ctx, "CLIENT", "KILL", "ADDR", addr).Err(); err != nil {
		t.Fatalf("CLIENT KILL ADDR %s: %v", addr, err)
	}
	if l.Write(set(key("b"), "2"), 1) {
		t.Fatal("a write into a connection Redis closed reported written")
	}
	if l.Write(set(key("b"), "2"), 1) {
		t.Fatal("a write within lateRetry of a failure connected again")
	}
	time.Sleep(150 * time.Millisecond) // lateRetry
	if !l.Write(set(key("c"), "3"), 1) {
		t.Fatal("no new connection after lateRetry")
	}
	waitValue(t, rdb, key("c"), "3")
	if now := l.LocalAddr(); now == "" || now == addr {
		t.Fatalf("connection %q after reconnecting, want a new one (was %q)", now, addr)
	}
}

// stalledRedis listens on loopback and answers each connection's first
// ping-sized read with +PONG when pong is set, then reads nothing more: a
// Redis that stopped (SIGSTOP) or whose host vanished.
func stalledRedis(t *testing.T, pong bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if pong {
				buf := make([]byte, 64)
				if _, err := c.Read(buf); err == nil {
					_, _ = c.Write([]byte("+PONG\r\n"))
				}
			}
		}
	}()
	return ln.Addr().String()
}

// A Redis that accepts connections but does not answer fails the
// handshake; one that stops answering after it is given up lateTimeout
// after its replies stopped: the writes then return false (and go through
// the pool), instead of filling a socket nobody reads.
func TestLateGivesUpOnAStalledRedis(t *testing.T) {
	defer redisstore.SetLateTimes(200*time.Millisecond, time.Hour)()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, pong := range []bool{false, true} {
		rdb := redis.NewClient(&redis.Options{Addr: stalledRedis(t, pong)})
		l := redisstore.NewLate(rdb, quiet, "late")
		ok := l.Write(set("k", "v"), 1)
		if !pong {
			if ok {
				t.Fatal("a write through a Redis that never answered the handshake")
			}
		} else {
			if !ok {
				t.Fatal("the first write after the handshake refused")
			}
			start := time.Now()
			poll.Until(t, 5*time.Second, "the stalled connection to be given up", func() bool { return !l.Write(set("k", "v"), 1) })
			if waited := time.Since(start); waited < 150*time.Millisecond {
				t.Fatalf("given up after %s, before lateTimeout", waited)
			}
		}
		if l.LocalAddr() != "" {
			t.Fatal("a connection kept to a stalled Redis")
		}
		l.Close()
		if l.Write(set("k", "v"), 1) {
			t.Fatal("a write after Close")
		}
		rdb.Close()
	}
}

// Only one Redis over plain TCP gets a Late: TLS and a Cluster keep to
// go-redis (nil Late, whose Write is false).
func TestLateOnlyOverPlainTCP(t *testing.T) {
	for _, u := range []string{"rediss://127.0.0.1:1", "redis://127.0.0.1:1?cluster=true"} {
		rdb, err := redisstore.NewClient(u)
		if err != nil {
			t.Fatal(err)
		}
		l := redisstore.NewLate(rdb, slog.Default(), "late")
		if l != nil || l.Write(set("k", "v"), 1) {
			t.Errorf("%s: a Late that writes", u)
		}
		l.Close() // nil-safe
		rdb.Close()
	}
}
