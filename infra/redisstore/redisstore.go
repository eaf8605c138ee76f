// Package redisstore keeps Parley's fast, rebuildable state in Redis:
// conversation membership for authorization and recipients, and the
// idempotency records of message.send. Redis is never the truth: every key
// here can be rebuilt from the read models or the log.
package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/domain"
)

// Store wraps a Redis client with Parley's key layout. Keys of one
// conversation share the hash tag {conversation_id}, so they live on one
// Redis Cluster shard.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
}

// Open parses a redis:// URL and pings it.
func Open(ctx context.Context, url, prefix string) (*Store, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	opt.PoolSize = 64
	rdb := redis.NewClient(opt)
	rdb.AddHook(metricsHook{})
	return &Store{rdb: rdb, prefix: prefix}, nil
}

// Client exposes the client for the fan-out bus.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Prefix is the key prefix of this deployment.
func (s *Store) Prefix() string { return s.prefix }

// Close closes the client.
func (s *Store) Close() error { return s.rdb.Close() }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

func (s *Store) membersKey(conv string) string { return s.prefix + ":{" + conv + "}:members" }

// applyMembership stores seq+1 (negated for a leave) per user, and only if it
// is newer than what is stored: applying the same change twice, or an older
// change after a newer one, changes nothing.
var applyMembership = redis.NewScript(`
local seq = tonumber(ARGV[1])
local v = seq + 1
if ARGV[2] ~= '1' then v = -v end
local n = 0
for i = 3, #ARGV do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if not cur or math.abs(tonumber(cur)) < seq + 1 then
    redis.call('HSET', KEYS[1], ARGV[i], v)
    n = n + 1
  end
end
return n`)

// ApplyMembership records that users joined (member=true) or left at seq.
func (s *Store) ApplyMembership(ctx context.Context, conv string, seq int64, member bool, users ...string) error {
	if len(users) == 0 {
		return nil
	}
	flag := "0"
	if member {
		flag = "1"
	}
	args := make([]any, 0, len(users)+2)
	args = append(args, seq, flag)
	for _, u := range users {
		args = append(args, u)
	}
	if err := applyMembership.Run(ctx, s.rdb, []string{s.membersKey(conv)}, args...).Err(); err != nil {
		return fmt.Errorf("%w: redis apply membership: %v", domain.ErrUnavailable, err)
	}
	return nil
}

// Memberships returns every user's latest membership change; known is false
// when Redis has nothing for the conversation.
func (s *Store) Memberships(ctx context.Context, conv string) (map[string]domain.Membership, bool, error) {
	m, err := s.rdb.HGetAll(ctx, s.membersKey(conv)).Result()
	if err != nil {
		return nil, false, fmt.Errorf("%w: redis members: %v", domain.ErrUnavailable, err)
	}
	out := make(map[string]domain.Membership, len(m))
	for u, v := range m {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		if n > 0 {
			out[u] = domain.Membership{Seq: n - 1, Member: true}
		} else {
			out[u] = domain.Membership{Seq: -n - 1, Member: false}
		}
	}
	return out, len(m) > 0, nil
}

// Membership returns one user's state; known is false when Redis has nothing
// for the conversation at all.
func (s *Store) Membership(ctx context.Context, conv, user string) (m domain.Membership, known bool, err error) {
	key := s.membersKey(conv)
	pipe := s.rdb.Pipeline()
	get := pipe.HGet(ctx, key, user)
	exists := pipe.Exists(ctx, key)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return m, false, fmt.Errorf("%w: redis membership: %v", domain.ErrUnavailable, err)
	}
	if exists.Val() == 0 {
		return m, false, nil
	}
	n, err := get.Int64()
	if err == redis.Nil {
		return domain.Membership{}, true, nil
	}
	if err != nil {
		return m, true, fmt.Errorf("redis membership value: %w", err)
	}
	if n > 0 {
		return domain.Membership{Seq: n - 1, Member: true}, true, nil
	}
	return domain.Membership{Seq: -n - 1}, true, nil
}

// MembersOf returns the current members.
func MembersOf(ms map[string]domain.Membership) []string {
	out := make([]string, 0, len(ms))
	for u, m := range ms {
		if m.Member {
			out = append(out, u)
		}
	}
	return out
}

// Idempotency records of message.send.

func (s *Store) idemKey(conv, sender, clientMsgID string) string {
	return s.prefix + ":{" + conv + "}:idem:" + sender + ":" + clientMsgID
}

// Reserve claims a send; it returns ok=false and the current record when
// someone else claimed it first.
func (s *Store) Reserve(ctx context.Context, conv, sender, clientMsgID, pending string, ttl time.Duration) (bool, string, error) {
	key := s.idemKey(conv, sender, clientMsgID)
	ok, err := s.rdb.SetNX(ctx, key, pending, ttl).Result()
	if err != nil {
		return false, "", fmt.Errorf("%w: redis reserve: %v", domain.ErrUnavailable, err)
	}
	if ok {
		return true, pending, nil
	}
	cur, err := s.rdb.Get(ctx, key).Result()
	if err == redis.Nil {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("%w: redis get: %v", domain.ErrUnavailable, err)
	}
	return false, cur, nil
}

// Complete stores the final record of a send.
func (s *Store) Complete(ctx context.Context, conv, sender, clientMsgID, record string, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.idemKey(conv, sender, clientMsgID), record, ttl).Err(); err != nil {
		return fmt.Errorf("%w: redis complete: %v", domain.ErrUnavailable, err)
	}
	return nil
}

var releaseIfOwned = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// Release drops a reservation if it is still the given pending record.
func (s *Store) Release(ctx context.Context, conv, sender, clientMsgID, pending string) error {
	return releaseIfOwned.Run(ctx, s.rdb, []string{s.idemKey(conv, sender, clientMsgID)}, pending).Err()
}

var takeOver = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end
return 0`)

// TakeOver replaces a stale pending record with ours, atomically.
func (s *Store) TakeOver(ctx context.Context, conv, sender, clientMsgID, old, pending string, ttl time.Duration) (bool, error) {
	n, err := takeOver.Run(ctx, s.rdb, []string{s.idemKey(conv, sender, clientMsgID)}, old, pending, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("%w: redis take over: %v", domain.ErrUnavailable, err)
	}
	return n == 1, nil
}
