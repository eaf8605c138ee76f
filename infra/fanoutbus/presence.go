package fanoutbus

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/domain"
)

// Presence: whether a user has a connection on any gateway node. Each user
// has a hash (presenceKey) with a field "n:<node>" per node that holds a
// connection of the user, "last" (unix ms the user was last seen going
// offline) and, while the user's last connection has closed but the
// debounce has not passed, "leaving" (unix ms it closed). A node also keeps
// the set of users it touched (nodePresenceKey), so that a sweep can take
// the users of a dead node offline. Each transition is one script on the
// user's hash, so two nodes never both announce one change.

var presenceOn = redis.NewScript(`
local had = false
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 2) == 'n:' and f ~= 'n:' .. ARGV[1] then had = true end
end
local new = redis.call('HSET', KEYS[1], 'n:' .. ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if had or new == 0 then return 0 end
if redis.call('HDEL', KEYS[1], 'leaving') == 1 then return 0 end
return 1`)

var presenceOff = redis.NewScript(`
if redis.call('HDEL', KEYS[1], 'n:' .. ARGV[1]) == 0 then return 0 end
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 2) == 'n:' then return 0 end
end
redis.call('HSET', KEYS[1], 'leaving', ARGV[2], 'last', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`)

var presenceSettle = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'leaving') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'leaving')
return 1`)

// presenceDrop removes a dead node from a user's hash: 1 if that took the
// user offline (no node left, and no live node's debounce still running).
var presenceDrop = redis.NewScript(`
local was = redis.call('HDEL', KEYS[1], 'n:' .. ARGV[1])
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 2) == 'n:' then return 0 end
end
local leaving = tonumber(redis.call('HGET', KEYS[1], 'leaving'))
if was == 0 and not (leaving and tonumber(ARGV[2]) - leaving > tonumber(ARGV[3])) then return 0 end
redis.call('HDEL', KEYS[1], 'leaving')
if was == 1 then redis.call('HSET', KEYS[1], 'last', ARGV[2]) end
return 1`)

// presenceTTL keeps a user's hash (and so last_seen) this long after the
// last change.
const presenceTTL = 30 * 24 * time.Hour

func (b *Bus) presenceKey(user string) string { return b.cfg.Prefix + ":{pr." + user + "}" }

func (b *Bus) nodePresenceKey(node string) string {
	return b.cfg.Prefix + ":{node." + node + "}:presence"
}

// Online records a connection of user on this node; true if the user was
// offline everywhere (and not within a debounce of going offline).
func (n *Node) Online(ctx context.Context, user string, at time.Time) (bool, error) {
	// Listed first: a sweep after this node's death must find the user.
	if err := n.b.rdb.SAdd(ctx, n.b.nodePresenceKey(n.id), user).Err(); err != nil {
		return false, fmt.Errorf("%w: presence of %s: %v", domain.ErrUnavailable, user, err)
	}
	v, err := presenceOn.Run(ctx, n.b.rdb, []string{n.b.presenceKey(user)}, n.id, at.UnixMilli(), presenceTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("%w: presence of %s: %v", domain.ErrUnavailable, user, err)
	}
	return v == 1, nil
}

// Offline records that user's last connection on this node closed; true if
// it was the user's last anywhere: Settle it after the debounce.
func (n *Node) Offline(ctx context.Context, user string, at time.Time) (bool, error) {
	v, err := presenceOff.Run(ctx, n.b.rdb, []string{n.b.presenceKey(user)}, n.id, at.UnixMilli(), presenceTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("%w: presence of %s: %v", domain.ErrUnavailable, user, err)
	}
	return v == 1, nil
}

// Settle ends the debounce of an Offline at `at`: true if the user did not
// come back meanwhile and is now offline.
func (n *Node) Settle(ctx context.Context, user string, at time.Time) (bool, error) {
	v, err := presenceSettle.Run(ctx, n.b.rdb, []string{n.b.presenceKey(user)}, at.UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("%w: presence of %s: %v", domain.ErrUnavailable, user, err)
	}
	if v == 1 {
		_ = n.b.rdb.SRem(ctx, n.b.nodePresenceKey(n.id), user).Err()
	}
	return v == 1, nil
}

// Presence reads the presence of users: online if a live node holds a
// connection of theirs.
func (b *Bus) Presence(ctx context.Context, users []string) (map[string]domain.Seen, error) {
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(users))
	for i, u := range users {
		cmds[i] = pipe.HGetAll(ctx, b.presenceKey(u))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("%w: presence: %v", domain.ErrUnavailable, err)
	}
	var nodes []string
	for _, c := range cmds {
		for f := range c.Val() {
			if node, ok := strings.CutPrefix(f, "n:"); ok && !slices.Contains(nodes, node) {
				nodes = append(nodes, node)
			}
		}
	}
	dead, err := b.alive.dead(ctx, b, nodes)
	if err != nil {
		return nil, err
	}
	out := make(map[string]domain.Seen, len(users))
	for i, u := range users {
		var s domain.Seen
		for f := range cmds[i].Val() {
			if node, ok := strings.CutPrefix(f, "n:"); ok && !dead[node] {
				s.Online = true
			}
		}
		if ms, err := strconv.ParseInt(cmds[i].Val()["last"], 10, 64); err == nil && !s.Online {
			s.LastSeen = time.UnixMilli(ms).UTC()
		}
		out[u] = s
	}
	return out, nil
}

// SweepDead takes offline the users of gateway nodes whose liveness
// lapsed, once per dead node (whichever node sweeps first), and returns
// them with the time they were last seen. Users whose debounce was still
// running on a node that died are taken offline once it is stale by
// debounce.
func (b *Bus) SweepDead(ctx context.Context, now time.Time, debounce time.Duration) (map[string]time.Time, error) {
	nodes, err := b.rdb.SMembers(ctx, b.nodesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: nodes: %v", domain.ErrUnavailable, err)
	}
	out := map[string]time.Time{}
	for _, node := range nodes {
		if err := b.sweepNode(ctx, node, now, debounce, out); err != nil {
			return out, err
		}
	}
	return out, nil
}

func (b *Bus) sweepNode(ctx context.Context, node string, now time.Time, debounce time.Duration, out map[string]time.Time) error {
	if n, err := b.rdb.Exists(ctx, b.aliveKey(node)).Result(); err != nil || n == 1 {
		return err
	}
	// One sweeper per dead node; the lock outlives a sweep.
	if ok, err := b.rdb.SetNX(ctx, b.nodePresenceKey(node)+":sweep", "1", time.Minute).Result(); err != nil || !ok {
		return err
	}
	users, err := b.rdb.SMembers(ctx, b.nodePresenceKey(node)).Result()
	if err != nil {
		return err
	}
	if err := b.dropNodePresence(ctx, node, users, now, debounce, out); err != nil {
		return err
	}
	// What the node leaves behind goes with it: its delivery stream (up to
	// its MAXLEN of deliveries nobody reads) and its place in the nodes set.
	// Node ids are pod names, new at every replacement: kept, these grew by
	// megabytes a dead node, and every sweep walked every node ever seen. A
	// node that was only stalled registers again at its next check, and its
	// clients resync (its routes were dropped: Dropped).
	return b.rdb.Del(ctx, b.NodeStream(node)).Err()
}

// dropNodePresence takes node out of the presence of users (those it
// touched: its user set), adding those it took offline to out, and
// forgets the node (its user set, and its place in the nodes set).
func (b *Bus) dropNodePresence(ctx context.Context, node string, users []string, now time.Time, debounce time.Duration, out map[string]time.Time) error {
	for _, u := range users {
		v, err := presenceDrop.Run(ctx, b.rdb, []string{b.presenceKey(u)}, node, now.UnixMilli(), debounce.Milliseconds()).Int()
		if err != nil {
			return err
		}
		if v == 1 {
			out[u] = now
		}
	}
	if err := b.rdb.Del(ctx, b.nodePresenceKey(node)).Err(); err != nil {
		return err
	}
	return b.rdb.SRem(ctx, b.nodesKey(), node).Err()
}

// ForgetPrevious takes offline, before this node takes any connection, the
// users a previous run under the same id left in presence: a process that
// restarts within the liveness TTL (a container restarted in its pod,
// keeping its name) is never found dead, so no sweep would. It returns the
// users now offline, to announce.
func (n *Node) ForgetPrevious(ctx context.Context, now time.Time, debounce time.Duration) (map[string]time.Time, error) {
	users, err := n.b.rdb.SMembers(ctx, n.b.nodePresenceKey(n.id)).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: presence of a previous run: %v", domain.ErrUnavailable, err)
	}
	for _, u := range users { // its routes too: deliveries for them would come here for nothing
		if err := n.b.leave(ctx, u, n.id); err != nil {
			return nil, err
		}
	}
	out := map[string]time.Time{}
	if err := n.b.dropNodePresence(ctx, n.id, users, now, debounce, out); err != nil {
		return out, fmt.Errorf("%w: presence of a previous run: %v", domain.ErrUnavailable, err)
	}
	return out, nil
}
