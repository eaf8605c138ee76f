// Package redisstore keeps Parley's fast, rebuildable state in Redis:
// conversation membership for authorization and recipients, and the
// idempotency records of message.send. Redis is never the truth: every key
// here can be rebuilt from the read models or the log.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
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
	wb     *WriteBehind
}

// Open connects to the Redis or Redis Cluster a redis:// URL names (see
// NewClient in url.go).
func Open(ctx context.Context, url, prefix string) (*Store, error) {
	rdb, err := NewClient(url)
	if err != nil {
		return nil, err
	}
	rdb.AddHook(metricsHook{})
	return &Store{rdb: rdb, prefix: prefix, wb: NewWriteBehind(rdb, writeBehindQueue, slog.Default().With("component", "redis-write-behind"))}, nil
}

// writeBehindQueue bounds the background writes of a process.
const writeBehindQueue = 16384

// WriteBehind is the process's background writer (the hand-off uses it).
func (s *Store) WriteBehind() *WriteBehind { return s.wb }

// Client exposes the client for the fan-out bus.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Prefix is the key prefix of this deployment.
func (s *Store) Prefix() string { return s.prefix }

// Close sends the background writes and closes the client.
func (s *Store) Close() error {
	s.wb.Close()
	return s.rdb.Close()
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

func (s *Store) membersKey(conv string) string { return s.prefix + ":{" + conv + "}:members" }

// completeField marks a members hash that holds every member: set when the
// conversation's creation was applied or the hash was rebuilt from the read
// model. A hash without it (Redis lost its data and a later change landed
// first) is not trusted. The "!" keeps it apart from user ids.
const completeField = "!complete"

// MarkComplete records that the hash of conv now holds every member.
func (s *Store) MarkComplete(ctx context.Context, conv string) error {
	if err := s.rdb.HSet(ctx, s.membersKey(conv), completeField, 1).Err(); err != nil {
		return fmt.Errorf("%w: redis mark complete: %v", domain.ErrUnavailable, err)
	}
	return nil
}

// applyMembership stores seq+1 (negated for a leave) per user, and only if it
// is newer than what is stored: applying the same change twice, or an older
// change after a newer one, changes nothing. A leave of a member also keeps
// the seq of the join it ends, in joinedField, so a fan-out that reads the
// membership after the leave still reaches the user with the events before
// it; a join after such a leave moves that membership to priorField (its
// own value says when it joined).
var applyMembership = redis.NewScript(`
local seq = tonumber(ARGV[1])
local v = seq + 1
local leave = ARGV[2] ~= '1'
if leave then v = -v end
local n = 0
for i = 3, #ARGV do
  local jf, pf = '` + joinedField + `' .. ARGV[i], '` + priorField + `' .. ARGV[i]
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if not cur or math.abs(cur) < seq + 1 then
    redis.call('HSET', KEYS[1], ARGV[i], v)
    if leave and cur and cur > 0 then
      redis.call('HSET', KEYS[1], jf, cur - 1)
    elseif cur and cur < 0 then
      -- Back, or a second leave (two devices): the membership the first
      -- leave ended is the prior one.
      local j = redis.call('HGET', KEYS[1], jf)
      if j then
        redis.call('HSET', KEYS[1], pf, j .. ':' .. (-cur - 1))
        redis.call('HDEL', KEYS[1], jf)
      end
    end
    n = n + 1
  elseif leave and cur < 0 and seq + 1 < -cur then
    -- A leave older than the stored one (two devices' leaves cached out
    -- of log order): the membership ended at this one, not the later.
    local j = redis.call('HGET', KEYS[1], jf)
    if j and tonumber(j) <= seq then
      redis.call('HSET', KEYS[1], pf, j .. ':' .. seq)
      redis.call('HDEL', KEYS[1], jf)
    end
    local pj, pl = string.match(redis.call('HGET', KEYS[1], pf) or '', '^(%d+):(%d+)$')
    if pj and tonumber(pj) <= seq and seq < tonumber(pl) then
      redis.call('HSET', KEYS[1], pf, pj .. ':' .. seq)
    end
  end
end
return n`)

// joinedField prefixes a leaver's join seq in the members hash ("!" keeps
// it apart from user ids, and readers before it skip it).
const joinedField = "!j:"

// priorField prefixes, for a user added back, the membership it had
// before ("<join seq>:<leave seq>"): a fan-out that loads the hash after
// the return still reaches the user with that membership's events.
const priorField = "!p:"

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
// unless the hash is complete (see completeField).
func (s *Store) Memberships(ctx context.Context, conv string) (map[string]domain.Membership, bool, error) {
	m, err := s.rdb.HGetAll(ctx, s.membersKey(conv)).Result()
	if err != nil {
		return nil, false, fmt.Errorf("%w: redis members: %v", domain.ErrUnavailable, err)
	}
	out := make(map[string]domain.Membership, len(m))
	_, complete := m[completeField]
	for u, v := range m {
		if strings.HasPrefix(u, "!") { // completeField, idemField, joinedField: not users
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		ms := domain.Membership{Seq: n - 1, Member: true}
		if n < 0 {
			ms = domain.Membership{Seq: -n - 1}
			ms.Joined, _ = strconv.ParseInt(m[joinedField+u], 10, 64)
		}
		if j, l, ok := strings.Cut(m[priorField+u], ":"); ok {
			ms.PriorJoined, _ = strconv.ParseInt(j, 10, 64)
			ms.PriorLeft, _ = strconv.ParseInt(l, 10, 64)
		}
		out[u] = ms
	}
	return out, complete, nil
}

// Membership returns one user's state; known is false unless the
// conversation's hash is complete.
func (s *Store) Membership(ctx context.Context, conv, user string) (m domain.Membership, known bool, err error) {
	key := s.membersKey(conv)
	pipe := s.rdb.Pipeline()
	get := pipe.HGet(ctx, key, user)
	exists := pipe.HExists(ctx, key, completeField)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return m, false, fmt.Errorf("%w: redis membership: %v", domain.ErrUnavailable, err)
	}
	known = exists.Val()
	n, err := get.Int64()
	if err == redis.Nil {
		return domain.Membership{}, known, nil
	}
	if err != nil {
		return m, known, fmt.Errorf("redis membership value: %w", err)
	}
	if n > 0 {
		return domain.Membership{Seq: n - 1, Member: true}, known, nil
	}
	return domain.Membership{Seq: -n - 1}, known, nil
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

// idemField marks, in the members hash, whether this Redis has kept every
// idempotency record of the conversation: "1" when it has held the
// conversation since its creation, "since:<unix>" when it was first seen
// after a data loss. The field shares the hash tag with the records, so one
// script reads it with the claim.
const idemField = "!idem"

// claimScript claims a send and reads the conversation's idemField.
const claimScript = `
local ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
local idem = redis.call('HGET', KEYS[2], '` + idemField + `')
if not idem then
  idem = 'since:' .. ARGV[3]
  redis.call('HSET', KEYS[2], '` + idemField + `', idem)
end
if ok then return {1, ARGV[1], idem} end
return {0, redis.call('GET', KEYS[1]) or '', idem}`

var reserve = redis.NewScript(claimScript)

// reserveMember claims behind a membership check, in one round trip: only
// when the complete members hash says the sender (ARGV[4]) is a member now;
// otherwise it answers {-1} and claims nothing.
var reserveMember = redis.NewScript(`
local m = tonumber(redis.call('HGET', KEYS[2], ARGV[4]) or '0')
if m <= 0 or redis.call('HEXISTS', KEYS[2], '` + completeField + `') == 0 then return {-1} end` + claimScript)

// Reserve claims a send: won is false when someone else claimed it first,
// and current is the record now stored. intact reports that Redis holds
// every record of the conversation that could still matter; when false a
// record may have been lost, and the read model must be asked.
func (s *Store) Reserve(ctx context.Context, conv, sender, clientMsgID, pending string, ttl time.Duration) (won bool, current string, intact bool, err error) {
	_, won, current, intact, err = s.claim(ctx, reserve, conv, sender, clientMsgID, pending, ttl)
	return won, current, intact, err
}

// ReserveMember is Reserve for a sender the cache knows to be a member now
// (the common send: one round trip for both). member false means the cache
// could not confirm it and nothing was claimed: the caller checks access
// the long way, then calls Reserve.
//
// The round trip is a pipeline of two plain commands, the members hash read
// and SET NX GET, not a script: Redis spent 35 µs on the script a send and
// spends about 10 on these (docs/benchmarks.md, "Session 10"). The price is
// that a sender the hash does not confirm may claim for an instant: that
// claim is released before answering, so nothing stays claimed. A hash
// without the idempotency marker (first send after a data loss) takes the
// script, which sets it.
func (s *Store) ReserveMember(ctx context.Context, conv, sender, clientMsgID, pending string, ttl time.Duration) (member, won bool, current string, intact bool, err error) {
	key := s.idemKey(conv, sender, clientMsgID)
	pipe := s.rdb.Pipeline()
	fields := pipe.HMGet(ctx, s.membersKey(conv), sender, completeField, idemField)
	set := pipe.SetArgs(ctx, key, pending, redis.SetArgs{Mode: "NX", Get: true, TTL: ttl})
	_, _ = pipe.Exec(ctx) // each command's error is read below
	prev, setErr := set.Result()
	won = setErr == redis.Nil
	vals, hashErr := fields.Result()
	if hashErr != nil || (setErr != nil && !won) || len(vals) != 3 {
		return false, false, "", false, fmt.Errorf("%w: redis reserve: %v", domain.ErrUnavailable, errors.Join(hashErr, setErr))
	}
	idem, hasIdem := vals[2].(string)
	if !memberNow(vals[0]) || vals[1] == nil || !hasIdem {
		if won {
			if err := s.release(ctx, key, pending); err != nil {
				return false, false, "", false, err
			}
		}
		if memberNow(vals[0]) && vals[1] != nil {
			return s.claim(ctx, reserveMember, conv, sender, clientMsgID, pending, ttl)
		}
		return false, false, "", false, nil
	}
	if won {
		prev = pending
	}
	return true, won, prev, idemIntact(idem, ttl), nil
}

// memberNow reads a members hash value: a join's seq + 1 is positive.
func memberNow(v any) bool {
	s, _ := v.(string)
	n, err := strconv.ParseInt(s, 10, 64)
	return err == nil && n > 0
}

var release = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// release deletes a claim this send made, unless it was taken over since.
func (s *Store) release(ctx context.Context, key, pending string) error {
	if err := release.Run(ctx, s.rdb, []string{key}, pending).Err(); err != nil {
		return fmt.Errorf("%w: redis release claim: %v", domain.ErrUnavailable, err)
	}
	return nil
}

func (s *Store) claim(ctx context.Context, script *redis.Script, conv, sender, clientMsgID, pending string, ttl time.Duration) (member, won bool, current string, intact bool, err error) {
	keys := []string{s.idemKey(conv, sender, clientMsgID), s.membersKey(conv)}
	res, err := script.Run(ctx, s.rdb, keys, pending, ttl.Milliseconds(), time.Now().Unix(), sender).Slice()
	if err != nil || len(res) == 0 {
		return false, false, "", false, fmt.Errorf("%w: redis reserve: %v", domain.ErrUnavailable, err)
	}
	if w, _ := res[0].(int64); w == -1 {
		return false, false, "", false, nil
	}
	if len(res) != 3 {
		return false, false, "", false, fmt.Errorf("%w: redis reserve: %d values", domain.ErrUnavailable, len(res))
	}
	w, _ := res[0].(int64)
	current, _ = res[1].(string)
	idem, _ := res[2].(string)
	return true, w == 1, current, idemIntact(idem, ttl), nil
}

func idemIntact(v string, ttl time.Duration) bool {
	if v == "1" {
		return true
	}
	since, err := strconv.ParseInt(strings.TrimPrefix(v, "since:"), 10, 64)
	return err == nil && time.Since(time.Unix(since, 0)) > ttl
}

// MarkCreated records that this Redis has held conv since its creation:
// its members hash is complete and no idempotency record was lost.
func (s *Store) MarkCreated(ctx context.Context, conv string) error {
	if err := s.rdb.HSet(ctx, s.membersKey(conv), completeField, 1, idemField, "1").Err(); err != nil {
		return fmt.Errorf("%w: redis mark created: %v", domain.ErrUnavailable, err)
	}
	return nil
}

// Complete stores the final record of a send.
func (s *Store) Complete(ctx context.Context, conv, sender, clientMsgID, record string, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.idemKey(conv, sender, clientMsgID), record, ttl).Err(); err != nil {
		return fmt.Errorf("%w: redis complete: %v", domain.ErrUnavailable, err)
	}
	return nil
}

// CompleteSoon stores the final record of a send in the background, with
// the next write-behind pipeline: the caller has acked already, and a
// record that never lands only makes a retry find the message through the
// read model (commands/send_message.go says when that is safe).
func (s *Store) CompleteSoon(conv, sender, clientMsgID, record string, ttl time.Duration) {
	key := s.idemKey(conv, sender, clientMsgID)
	s.wb.Add(nil, Cmd{"set", key, record, "px", ttl.Milliseconds()})
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

// A message's lock (commands.MessageLocks): a key with a random token,
// released only by its holder, expiring if the holder dies.
const messageLockTTL = 20 * time.Second

var releaseLock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// LockMessage waits (until ctx ends) for the lock of one message, shared
// by every node, and returns its release.
func (s *Store) LockMessage(ctx context.Context, conv, messageID string) (unlock func(), err error) {
	key := s.prefix + ":{" + conv + "}:msglock:" + messageID
	token := domain.NewID("lk_")
	for {
		ok, err := s.rdb.SetNX(ctx, key, token, messageLockTTL).Result()
		if err != nil {
			return nil, fmt.Errorf("%w: redis message lock: %v", domain.ErrUnavailable, err)
		}
		if ok {
			return func() { _ = releaseLock.Run(context.WithoutCancel(ctx), s.rdb, []string{key}, token).Err() }, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: message %s is being changed; retry", domain.ErrUnavailable, messageID)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
