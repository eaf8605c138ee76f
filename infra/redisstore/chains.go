package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/domain"
)

// chainTTL keeps a partition's chains well past any rebalance; a fan-out
// group stopped longer than that starts its chains again at 0, as before
// chains were kept.
const chainTTL = 7 * 24 * time.Hour

// chainKey holds partition p's Prev chains (fanout.Chains): a JSON object
// of node id to the seq of the last delivery published to it.
func (s *Store) chainKey(p int32) string {
	return s.prefix + ":fanout:chain:" + strconv.FormatInt(int64(p), 10)
}

// SaveChains replaces each partition's chains, one key a partition (so a
// Redis Cluster may hold them anywhere).
func (s *Store) SaveChains(ctx context.Context, chains map[int32]map[string]int64) error {
	pipe := s.rdb.Pipeline()
	for p, c := range chains {
		b, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("encode chain of partition %d: %w", p, err)
		}
		pipe.Set(ctx, s.chainKey(p), b, chainTTL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("%w: redis save chains: %v", domain.ErrUnavailable, err)
	}
	return nil
}

// LoadChains reads the chains of partitions; a partition without any (never
// saved, expired, lost with Redis's data, unreadable) is left out, and its
// chains start again at 0.
func (s *Store) LoadChains(ctx context.Context, partitions []int32) (map[int32]map[string]int64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(partitions))
	for i, p := range partitions {
		cmds[i] = pipe.Get(ctx, s.chainKey(p))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: redis load chains: %v", domain.ErrUnavailable, err)
	}
	out := make(map[int32]map[string]int64, len(partitions))
	for i, p := range partitions {
		b, err := cmds[i].Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: redis load chain of partition %d: %v", domain.ErrUnavailable, p, err)
		}
		var c map[string]int64
		if json.Unmarshal(b, &c) == nil {
			out[p] = c
		}
	}
	return out, nil
}
