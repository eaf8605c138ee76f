package fanoutbus

import (
	"context"
	"fmt"
	"slices"
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
//
// Redis is not the truth, and may lose the routes with everything else. A
// fan-out notices (its marker key is gone) and sends every delivery to
// every node it knows for lossGrace, while the gateways notice (their
// liveness key is gone) and route their users again; so live delivery goes
// on through the loss without a gap.
const (
	routeShards   = 16
	aliveTTL      = 30 * time.Second
	aliveRefresh  = 5 * time.Second
	aliveCacheFor = 5 * time.Second
	lossGrace     = 3 * aliveRefresh
	knownFor      = 24 * time.Hour
)

// RejoinWithin is how long a gateway has to route its users again once it
// notices a loss (at most aliveRefresh after it) while the fan-out still
// sends every delivery to every node; past it, its clients resync.
const RejoinWithin = lossGrace - aliveRefresh

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

func (b *Bus) routesKey(user string) string { return b.routeKeys[routeShard(user)] }

// routeShard is the route shard of user: FNV-1a of the id, mod routeShards.
func routeShard(user string) int {
	h := uint32(2166136261)
	for i := 0; i < len(user); i++ {
		h = (h ^ uint32(user[i])) * 16777619
	}
	return int(h % routeShards)
}

// NodeStream is the stream a gateway node reads.
func (b *Bus) NodeStream(node string) string { return b.cfg.Prefix + ":{node." + node + "}" }

// nodesKey is the set of gateway node ids (for a fan-out after a loss).
func (b *Bus) nodesKey() string { return b.cfg.Prefix + ":nodes" }

func (b *Bus) aliveKey(node string) string { return b.cfg.Prefix + ":{node." + node + "}:alive" }

// Node is one gateway node's side of the routing.
type Node struct {
	b  *Bus
	id string
}

// Node returns the routing of gateway node id.
func (b *Bus) Node(id string) *Node { return &Node{b: b, id: id} }

// Join routes user's deliveries to this node. It returns once the route
// is written and announced to the fan-outs' caches (RouteCache), so before
// the connection can sync or send. It announces even a route that was
// there: one whose announcement failed before is then announced.
//
// On one Redis server the route and its announcement go in one pipeline:
// the server runs them in order, so the announcement still follows the
// change. A Cluster may hold them on two nodes, where a pipeline gives no
// order: there the announcement waits for the write's reply.
func (n *Node) Join(ctx context.Context, user string) error {
	keys := []string{n.b.routesKey(user)}
	if _, cluster := n.b.rdb.(*redis.ClusterClient); !cluster {
		pipe := n.b.rdb.Pipeline()
		join := routeJoin.EvalSha(ctx, pipe, keys, user, n.id)
		pipe.SPublish(ctx, n.b.routesCh, user)
		_, err := pipe.Exec(ctx)
		if err == nil {
			return nil
		}
		if !redis.HasErrorPrefix(join.Err(), "NOSCRIPT") {
			return fmt.Errorf("%w: route %s: %v", domain.ErrUnavailable, user, err)
		}
		// The script is not loaded yet (a new or restarted server): the
		// long way below loads it.
	}
	if err := routeJoin.Run(ctx, n.b.rdb, keys, user, n.id).Err(); err != nil {
		return fmt.Errorf("%w: route %s: %v", domain.ErrUnavailable, user, err)
	}
	return n.b.announce(ctx, user)
}

// announce publishes that user's route changed, after the change: a
// fan-out receives it before any record handed off after it
// (handoff.RoutesChannel) and forgets what it cached of user.
func (b *Bus) announce(ctx context.Context, user string) error {
	if err := b.rdb.SPublish(ctx, b.routesCh, user).Err(); err != nil {
		return fmt.Errorf("%w: announce route %s: %v", domain.ErrUnavailable, user, err)
	}
	return nil
}

// Leave stops routing user's deliveries to this node.
func (n *Node) Leave(ctx context.Context, user string) error {
	return n.b.leave(ctx, user, n.id)
}

// leave removes node from user's route. A cache that missed the
// announcement keeps delivering to node, which drops what it has no
// connection for: wasted, not wrong.
func (b *Bus) leave(ctx context.Context, user, node string) error {
	changed, err := routeLeave.Run(ctx, b.rdb, []string{b.routesKey(user)}, user, node).Int()
	if err != nil {
		return fmt.Errorf("%w: unroute %s: %v", domain.ErrUnavailable, user, err)
	}
	if changed == 0 {
		return nil
	}
	return b.announce(ctx, user)
}

// Dropped reports (once) whether a fan-out removed this node's routes
// because its liveness had lapsed (a stall past aliveTTL): deliveries for
// its users were dropped meanwhile, so its clients must resync.
func (n *Node) Dropped(ctx context.Context) (bool, error) {
	err := n.b.rdb.GetDel(ctx, n.b.droppedKey(n.id)).Err()
	switch {
	case err == redis.Nil:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%w: node tombstone: %v", domain.ErrUnavailable, err)
	}
	return true, nil
}

// Check refreshes the node's liveness (Alive) and reads Dropped. lost: Redis
// had lost the liveness (its data, or a stall past aliveTTL), so the node
// must route its users again; dropped: a fan-out removed its routes, so
// its clients must resync as well. Dropped is read at every check, not
// only after a lost liveness: a fan-out that found the node dead just
// before it refreshed removes the routes after the node made them again,
// and the node learns of it here. An error with the liveness kept reports
// nothing: Redis is away, and the next check reads again.
func (n *Node) Check(ctx context.Context) (lost, dropped bool, err error) {
	kept, err := n.Alive(ctx)
	if err != nil {
		return false, false, err
	}
	dropped, err = n.Dropped(ctx)
	if err != nil {
		return !kept, !kept, err // lost: whether routes were dropped is unknown, so assume so
	}
	return !kept, dropped, nil
}

func (b *Bus) droppedKey(node string) string { return b.cfg.Prefix + ":{node." + node + "}:dropped" }

// Alive refreshes this node's liveness and reports whether Redis still had
// it: false after the first call means Redis lost its data (or this node
// stalled past aliveTTL), and with it this node's routes.
func (n *Node) Alive(ctx context.Context) (kept bool, err error) {
	pipe := n.b.rdb.Pipeline()
	set := pipe.SetArgs(ctx, n.b.aliveKey(n.id), "1", redis.SetArgs{TTL: aliveTTL, Get: true})
	pipe.SAdd(ctx, n.b.nodesKey(), n.id)
	_, _ = pipe.Exec(ctx)
	err = set.Err()
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
	out, err := b.readRoutes(ctx, users, b.lossKey != "")
	if err != nil {
		return nil, err
	}
	return b.liveOnly(ctx, users, out)
}

// readRoutes reads the routes of users (those without one are left out),
// and with marker the loss marker, in one pipeline.
func (b *Bus) readRoutes(ctx context.Context, users []string, marker bool) (map[string][]string, error) {
	var byShard [routeShards][]string
	for _, u := range users {
		i := routeShard(u)
		byShard[i] = append(byShard[i], u)
	}
	pipe := b.rdb.Pipeline()
	var cmds [routeShards]*redis.SliceCmd
	for i, us := range byShard {
		if len(us) > 0 {
			cmds[i] = pipe.HMGet(ctx, b.routeKeys[i], us...)
		}
	}
	var exists *redis.IntCmd
	if marker {
		exists = pipe.Exists(ctx, b.lossKey)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("%w: routes: %v", domain.ErrUnavailable, err)
	}
	if exists != nil && exists.Val() == 0 {
		if err := b.lostRoutes(ctx); err != nil {
			return nil, err
		}
	}
	out := make(map[string][]string, len(users))
	for shard, us := range byShard {
		if len(us) == 0 {
			continue
		}
		for i, v := range cmds[shard].Val() {
			if s, _ := v.(string); s != "" {
				out[us[i]] = strings.Split(s, ",")
			}
		}
	}
	return out, nil
}

// liveOnly drops the dead nodes from out (removing their routes), and
// answers every known node for every user while a loss is being healed.
func (b *Bus) liveOnly(ctx context.Context, users []string, out map[string][]string) (map[string][]string, error) {
	var seen []string // few nodes: a slice, not a map per lookup
	for _, nodes := range out {
		for _, n := range nodes {
			if !slices.Contains(seen, n) {
				seen = append(seen, n)
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
	if b.alive.broadcasting() {
		all, err := b.allNodes(ctx)
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			out[u] = all
		}
	}
	return out, nil
}

// allNodes is every gateway node known: registered in the nodes set since
// the loss, or seen alive before it.
func (b *Bus) allNodes(ctx context.Context) ([]string, error) {
	reg, err := b.rdb.SMembers(ctx, b.nodesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: nodes: %v", domain.ErrUnavailable, err)
	}
	all := b.alive.known()
	for _, n := range reg {
		if !slices.Contains(all, n) {
			all = append(all, n)
		}
	}
	return all, nil
}

// WatchLoss makes NodesOf notice a Redis data loss (the marker key of the
// fan-out process id is gone) and then answer every node it knows for
// every user, for lossGrace: the gateways route their users again within
// aliveRefresh meanwhile. Only the fan-out calls it.
func (b *Bus) WatchLoss(ctx context.Context, id string) error {
	b.lossKey = b.cfg.Prefix + ":routing:" + id
	if err := b.rdb.Set(ctx, b.lossKey, "1", 0).Err(); err != nil {
		return fmt.Errorf("%w: routing marker: %v", domain.ErrUnavailable, err)
	}
	return nil
}

func (b *Bus) lostRoutes(ctx context.Context) error {
	if err := b.rdb.Set(ctx, b.lossKey, "1", 0).Err(); err != nil {
		return fmt.Errorf("%w: routing marker: %v", domain.ErrUnavailable, err)
	}
	b.alive.broadcastFor(lossGrace)
	b.log.Warn("redis lost the routes: every delivery goes to every known node until the gateways routed their users again",
		"for", lossGrace.String(), "nodes", len(b.alive.known()))
	return nil
}

// dropDead removes dead nodes from the answer and their routes from Redis
// (best effort: the next lookup tries again). Each node's tombstone
// (Dropped) is set before the routes go and again after: a node that
// came back meanwhile and routed its users again may have read the first
// before the last route went, and then reads the second at its next
// check (Check).
func (b *Bus) dropDead(ctx context.Context, out map[string][]string, dead map[string]bool) {
	tombstones := func() {
		for n := range dead {
			_ = b.rdb.Set(ctx, b.droppedKey(n), "1", time.Hour).Err()
		}
	}
	tombstones()
	defer tombstones()
	for u, nodes := range out {
		var kept []string // a new slice: nodes may be a cache's
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
	mu      sync.Mutex
	seen    map[string]time.Time
	until   time.Time // broadcast until
	lastAny map[string]time.Time
}

func (l *liveness) broadcastFor(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.until = time.Now().Add(d)
}

func (l *liveness) broadcasting() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Now().Before(l.until)
}

// known is every node seen alive within knownFor.
func (l *liveness) known() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for n, at := range l.lastAny {
		if time.Since(at) < knownFor {
			out = append(out, n)
		} else {
			delete(l.lastAny, n)
		}
	}
	return out
}

func (l *liveness) dead(ctx context.Context, b *Bus, nodes []string) (map[string]bool, error) {
	now := time.Now()
	var ask []string
	l.mu.Lock()
	if l.seen == nil {
		l.seen = map[string]time.Time{}
	}
	for _, n := range nodes {
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
	if l.lastAny == nil {
		l.lastAny = map[string]time.Time{}
	}
	for i, n := range ask {
		if cmds[i].Val() == 1 {
			l.seen[n], l.lastAny[n] = now, now
		} else {
			dead[n] = true
			delete(l.seen, n)
		}
	}
	return dead, nil
}
