package redisstore_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
)

// Saved chains come back per partition, each replaced whole by the next
// save, with a TTL; a partition never saved or unreadable has none.
func TestChainsRoundTrip(t *testing.T) {
	ctx := context.Background()
	env := testenv.New(t)
	s := openStore(t, env)
	if err := s.SaveChains(ctx, map[int32]map[string]int64{0: {"n1": 5, "n2": 7}, 3: {"n1": 9}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveChains(ctx, map[int32]map[string]int64{0: {"n1": 6}}); err != nil {
		t.Fatal(err)
	}
	key := env.Cfg.RedisPrefix + ":fanout:chain:5"
	if err := s.Client().Set(ctx, key, "{not json", 0).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadChains(ctx, []int32{0, 1, 3, 5})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]map[string]int64{0: {"n1": 6}, 3: {"n1": 9}}
	if !maps.EqualFunc(got, want, maps.Equal) {
		t.Fatalf("loaded %v, want %v", got, want)
	}
	if ttl := s.Client().TTL(ctx, env.Cfg.RedisPrefix+":fanout:chain:0").Val(); ttl <= 0 || ttl > 7*24*time.Hour {
		t.Fatalf("chain TTL %s, want up to 7 days", ttl)
	}
	if got, err := s.LoadChains(ctx, []int32{1}); err != nil || len(got) != 0 {
		t.Fatalf("never saved: %v, %v", got, err)
	}
}
