package fanoutbus

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/domain"
)

// Routing: which gateway nodes hold a connection of a user. A gateway adds
// itself to a user's entry when the user's first local connection opens
// (before the connection can sync or send) and removes itself when the last
// one closes; the fan-out reads the entries of a batch's recipients after
// the batch was read from the log, so a route made before an event was
// logged is always seen, and each node's stream carries only deliveries
// with a recipient on that node (docs/architecture.md, "Live delivery").
//
// Entries live in routeShards hashes (field: user, value: node ids joined
// by ','), so a batch's lookups are a few HMGETs in one pipeline. A node
// proves it is alive with a key it refreshes (aliveTTL); a route to a node
// without one is dropped when met.
const (
	routeShards   = 16
	aliveTTL      = 30 * time.Second
	aliveRefresh  = 5 * time.Second
	aliveCacheFor = 5 * time.Second
)

var routeJoin = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1]) or ''
for n in string.gmatch(v, '[^,]+') do if n == ARGV[2] then return 0 end end
if v == '' then v = ARGV[2] else v = v .. ',' .. ARGV[2] end
redis.call('HSET', KEYS[1], ARGV[1], v)
return 1`)

var routeLeave = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local keep = {}
for n in string.gmatch(v, '[^,]+') do if n ~= ARGV[2] then keep[#keep+1] = n end end
if #keep == 0 then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], table.concat(keep, ',')) end
return 1`)

func (b *Bus) routesKey(user string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(user))
	return b.cfg.Prefix + ":routes:{r" + strconv.Itoa(int(h.Sum32()%routeShards)) + "}"
}

// NodeStream is the stream a gateway node reads.
func (b *Bus) NodeStream(node string) string { return b.cfg.Prefix + ":{node." + node + "}" }

func (b *Bus) aliveKey(node string) string { return b.cfg.Prefix + ":{node." + node + "}:alive" }

// Node is one gateway node's side of the routing.
type Node struct {
	b  *Bus
	id string
}

// Node returns the routing of gateway node id.
func (b *Bus) Node(id string) *Node { return &Node{b: b, id: id} }

// Join routes user's deliveries to this node.
func (n *Node) Join(ctx context.Context, user string) error {
	if err := routeJoin.Run(ctx, n.b.rdb, []string{n.b.routesKey(user)}, user, n.id).Err(); err != nil {
		return fmt.Errorf("%w: route %s: %v", domain.ErrUnavailable, user, err)
	}
	return nil
}

// Leave stops routing user's deliveries to this node.
func (n *Node) Leave(ctx context.Context, user string) error {
	return n.b.leave(ctx, user, n.id)
}

func (b *Bus) leave(ctx context.Context, user, node string) error {
	if err := routeLeave.Run(ctx, b.rdb, []string{b.routesKey(user)}, user, node).Err(); err != nil {
		return fmt.Errorf("%w: unroute %s: %v", domain.ErrUnavailable, user, err)
	}
	return nil
}

// Alive refreshes this node's liveness and reports whether Redis still had
// it: false after the first call means Redis lost its data (or this node
// stalled past aliveTTL), and with it this node's routes.
func (n *Node) Alive(ctx context.Context) (kept bool, err error) {
	err = n.b.rdb.SetArgs(ctx, n.b.aliveKey(n.id), "1", redis.SetArgs{TTL: aliveTTL, Get: true}).Err()
	switch {
	case err == redis.Nil:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%w: node liveness: %v", domain.ErrUnavailable, err)
	}
	return true, nil
}

// AliveEvery is how often a node refreshes its liveness.
const AliveEvery = aliveRefresh

// NodesOf returns the live nodes of each user that has one, in one round
// trip (two when a node's liveness is not known lately); routes to nodes
// found dead are removed on the way.
func (b *Bus) NodesOf(ctx context.Context, users []string) (map[string][]string, error) {
	if len(users) == 0 {
		return nil, nil
	}
	byKey := map[string][]string{}
	for _, u := range users {
		k := b.routesKey(u)
		byKey[k] = append(byKey[k], u)
	}
	pipe := b.rdb.Pipeline()
	cmds := make(map[string]*redis.SliceCmd, len(byKey))
	for k, us := range byKey {
		cmds[k] = pipe.HMGet(ctx, k, us...)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("%w: routes: %v", domain.ErrUnavailable, err)
	}
	out := map[string][]string{}
	seen := map[string]bool{}
	for k, us := range byKey {
		for i, v := range cmds[k].Val() {
			s, _ := v.(string)
			if s == "" {
				continue
			}
			nodes := strings.Split(s, ",")
			out[us[i]] = nodes
			for _, n := range nodes {
				seen[n] = true
			}
		}
	}
	dead, err := b.alive.dead(ctx, b, seen)
	if err != nil {
		return nil, err
	}
	if len(dead) > 0 {
		b.dropDead(ctx, out, dead)
	}
	return out, nil
}

// dropDead removes dead nodes from the answer and their routes from Redis
// (best effort: the next lookup tries again).
func (b *Bus) dropDead(ctx context.Context, out map[string][]string, dead map[string]bool) {
	for u, nodes := range out {
		kept := nodes[:0]
		for _, n := range nodes {
			if dead[n] {
				_ = b.leave(ctx, u, n)
				continue
			}
			kept = append(kept, n)
		}
		if len(kept) == 0 {
			delete(out, u)
		} else {
			out[u] = kept
		}
	}
}

// liveness remembers nodes seen alive lately. A node not seen alive within
// aliveCacheFor is asked again, never assumed dead from memory: a node that
// just started sets its key before it takes connections.
type liveness struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (l *liveness) dead(ctx context.Context, b *Bus, nodes map[string]bool) (map[string]bool, error) {
	now := time.Now()
	var ask []string
	l.mu.Lock()
	if l.seen == nil {
		l.seen = map[string]time.Time{}
	}
	for n := range nodes {
		if now.Sub(l.seen[n]) > aliveCacheFor {
			ask = append(ask, n)
		}
	}
	l.mu.Unlock()
	if len(ask) == 0 {
		return nil, nil
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(ask))
	for i, n := range ask {
		cmds[i] = pipe.Exists(ctx, b.aliveKey(n))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("%w: node liveness: %v", domain.ErrUnavailable, err)
	}
	dead := map[string]bool{}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, n := range ask {
		if cmds[i].Val() == 1 {
			l.seen[n] = now
		} else {
			dead[n] = true
			delete(l.seen, n)
		}
	}
	return dead, nil
}
