package redisstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/testenv"
)

// DeletePrefix removes every key of its prefix, across hash tags and past
// one SCAN round, and nothing of a prefix that merely starts the same.
func TestDeletePrefix(t *testing.T) {
	env := testenv.New(t)
	rdb, err := redisstore.NewClient(env.Cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	own, other := env.Cfg.RedisPrefix, env.Cfg.RedisPrefix+"x"
	const n = 2500
	for i := range n {
		if err := rdb.Set(ctx, fmt.Sprintf("%s:{c_%d}:idem:u:%d", own, i%7, i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.Set(ctx, other+":keep", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	defer rdb.Del(ctx, other+":keep")

	deleted, err := redisstore.DeletePrefix(ctx, rdb, own)
	if err != nil || deleted != n {
		t.Fatalf("deleted %d keys (err %v), want %d", deleted, err, n)
	}
	if left, _ := rdb.Keys(ctx, own+":*").Result(); len(left) != 0 {
		t.Fatalf("%d keys left under %s", len(left), own)
	}
	if v, err := rdb.Get(ctx, other+":keep").Result(); err != nil || v != "v" {
		t.Fatalf("a key of prefix %s was touched: %q, %v", other, v, err)
	}
	if _, err := redisstore.DeletePrefix(ctx, rdb, ""); err == nil {
		t.Fatal("an empty prefix was accepted")
	}
}
