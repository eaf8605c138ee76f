package sioredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Against the shared Redis (localhost:6379), under a fresh prefix.
func TestSocketIORegistry(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis is needed (go tool task services:up): %v", err)
	}
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	prefix := "tsio" + hex.EncodeToString(b)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, other := New(rdb, prefix, log), New(rdb, prefix, log)
	if a.Self() == other.Self() || !validKey(a.Self()) {
		t.Fatalf("keys %q %q", a.Self(), other.Self())
	}

	if err := a.register(ctx, "127.0.0.1:4242"); err != nil {
		t.Fatal(err)
	}
	url, err := other.Lookup(ctx, a.Self())
	if url != "http://127.0.0.1:4242" {
		t.Fatalf("lookup: %q %v", url, err)
	}
	ttl := rdb.TTL(ctx, prefix+":sio:nodes:"+a.Self()).Val()
	if ttl <= 0 || ttl > TTL {
		t.Fatalf("ttl %v", ttl)
	}
	// Run keeps the entry while it runs and removes it when it ends.
	runCtx, stop := context.WithCancel(ctx)
	stop()
	if err := a.Run(runCtx, "127.0.0.1:4242"); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, prefix+":sio:nodes:"+a.Self()).Val(); n != 0 {
		t.Fatal("the entry outlived the node")
	}
	fresh := New(rdb, prefix, log) // no cache
	if _, err := fresh.Lookup(ctx, a.Self()); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("lookup of a stopped node: %v", err)
	}
}

func validKey(k string) bool {
	if len(k) == 0 || len(k) > 64 {
		return false
	}
	for _, c := range k {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func TestSocketIOAdvertise(t *testing.T) {
	if got := Advertise("127.0.0.1:8080", ""); got != "127.0.0.1:8080" {
		t.Fatal(got)
	}
	if got := Advertise("[::]:8080", "node1.internal:8080"); got != "node1.internal:8080" {
		t.Fatal(got)
	}
	for _, l := range []string{":8080", "0.0.0.0:8080", "[::]:8080"} {
		host, port, err := net.SplitHostPort(Advertise(l, ""))
		ip := net.ParseIP(host)
		if err != nil || port != "8080" || ip == nil || ip.IsUnspecified() {
			t.Fatalf("%s advertised as %s:%s (%v)", l, host, port, err)
		}
	}
}
