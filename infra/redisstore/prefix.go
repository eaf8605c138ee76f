package redisstore

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// DeletePrefix unlinks every key under prefix+":" (every primary of a
// cluster) and returns how many. For tests and benchmarks, which each own a
// prefix: idempotency keys live 48 hours and shard streams have no TTL, so
// without it they pile up and every Redis snapshot grows.
func DeletePrefix(ctx context.Context, rdb redis.UniversalClient, prefix string) (int, error) {
	if prefix == "" {
		return 0, fmt.Errorf("refusing to delete keys of an empty prefix")
	}
	var n atomic.Int64
	del := func(ctx context.Context, c *redis.Client) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, prefix+":*", 1000).Result()
			if err != nil {
				return fmt.Errorf("scan %s:*: %w", prefix, err)
			}
			if len(keys) > 0 {
				// One UNLINK per key: a cluster node refuses multi-key
				// commands across slots, even slots it holds.
				_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
					for _, k := range keys {
						p.Unlink(ctx, k)
					}
					return nil
				})
				if err != nil {
					return fmt.Errorf("unlink: %w", err)
				}
				n.Add(int64(len(keys)))
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, del)
	case *redis.Client:
		err = del(ctx, c)
	default:
		err = fmt.Errorf("delete prefix: unsupported client %T", rdb)
	}
	return int(n.Load()), err
}
