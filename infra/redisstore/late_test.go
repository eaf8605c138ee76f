package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
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
	l := redisstore.NewLate(rdb, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
	poll.Until(t, 5*time.Second, "the refusal to be counted", func() bool { return testutil.ToFloat64(refused) == before+1 })
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

// A connection Redis closed is found at a later write, which then returns
// false (its caller writes through the pool), and the next write connects
// again.
func TestLateReconnects(t *testing.T) {
	rdb, l, key := lateSetup(t)
	ctx := context.Background()
	if !l.Write(set(key("a"), "1"), 1) {
		t.Fatal("write refused")
	}
	waitValue(t, rdb, key("a"), "1")
	addr := l.LocalAddr()
	if addr == "" {
		t.Fatal("no connection after a write")
	}
	if err := rdb.Do(ctx, "CLIENT", "KILL", "ADDR", addr).Err(); err != nil {
		t.Fatalf("CLIENT KILL ADDR %s: %v", addr, err)
	}
	var failed bool
	poll.Until(t, 5*time.Second, "a write to find the closed connection", func() bool {
		failed = !l.Write(set(key("b"), "2"), 1)
		return failed
	})
	if !l.Write(set(key("c"), "3"), 1) {
		t.Fatal("no new connection after the old one closed")
	}
	waitValue(t, rdb, key("c"), "3")
	if now := l.LocalAddr(); now == "" || now == addr {
		t.Fatalf("connection %q after reconnecting, want a new one (was %q)", now, addr)
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
		l := redisstore.NewLate(rdb, slog.Default())
		if l != nil || l.Write(set("k", "v"), 1) {
			t.Errorf("%s: a Late that writes", u)
		}
		l.Close() // nil-safe
		rdb.Close()
	}
}

// The reply scanner: whole replies, parts of one, errors, nesting.
func TestReplyLen(t *testing.T) {
	for _, c := range []struct {
		in      string
		n       int
		refusal string
		bad     bool
	}{
		{in: "+OK\r\n", n: 5},
		{in: "+OK\r\n:1\r\n", n: 5},
		{in: "+OK\r", n: 0},
		{in: "-WRONGTYPE no\r\n", n: 15, refusal: "WRONGTYPE no"},
		{in: ":42\r\n", n: 5},
		{in: "$3\r\nabc\r\n", n: 9},
		{in: "$3\r\nab", n: 0},
		{in: "$-1\r\n", n: 5},
		{in: "*2\r\n$1\r\na\r\n:1\r\n", n: 15},
		{in: "*2\r\n$1\r\na\r\n", n: 0},
		{in: "*-1\r\n", n: 5},
		{in: "$3\r\nabcd\r\n", bad: true},
		{in: "?x\r\n", bad: true},
		{in: "\r\n", bad: true},
		{in: "$x\r\n", bad: true},
		{in: strings.Repeat("*1\r\n", 10) + ":1\r\n", bad: true},
	} {
		n, refusal, err := redisstore.ReplyLen([]byte(c.in))
		if c.bad {
			if err == nil {
				t.Errorf("%q: %d %q %v, want an error", c.in, n, refusal, err)
			}
			continue
		}
		if err != nil || n != c.n || refusal != c.refusal {
			t.Errorf("%q: %d %q %v, want %d %q", c.in, n, refusal, err, c.n, c.refusal)
		}
	}
}

// Whatever Redis sends, the scanner neither panics nor claims more than it
// was given, and a reply it found is found alone too.
func FuzzReplyLen(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "-ERR x\r\n", ":1\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*2\r\n$1\r\na\r\n:1\r\n", "*1\r\n*1\r\n+x\r\n", "$5\r\nab"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _, err := redisstore.ReplyLen(b)
		if err != nil {
			return
		}
		if n < 0 || n > len(b) {
			t.Fatalf("length %d of %d bytes", n, len(b))
		}
		if n > 0 {
			if m, _, err := redisstore.ReplyLen(b[:n]); err != nil || m != n {
				t.Fatalf("the reply alone: %d %v, want %d", m, err, n)
			}
		}
	})
}
