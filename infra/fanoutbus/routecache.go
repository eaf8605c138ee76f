package fanoutbus

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley/infra/metrics"
)

// RouteCache is a fan-out's memory of routes, so that a batch whose
// recipients it knows costs no round trip (the routes' HMGETs were a
// quarter of the fan-out and 7 commands a message on Redis).
//
// It stays right because of where it learns of changes: a gateway
// announces every route change after making it and before the connection
// can sync or send (Node.Join), on a channel the fan-out receives on the
// connection of its hand-off channels (handoff.RoutesChannel). Redis
// delivers a change and the records published after it in that order, and
// the hand-off reader tells the cache (Changed) before it returns a record
// published after the change. So a record that needs a route made before
// it was logged finds the user forgotten and reads the route from Redis,
// as an uncached lookup always does. Records that did not come down that
// connection are not ordered with the changes: before the handler gets
// records the log brought, the next lookup reads every user afresh
// (ReadNext); before records a stream read brought, and whenever the
// subscription is new or came back, the cache is emptied (Reset).
//
// Users without a route are cached too (most recipients are offline).
// Liveness and the loss of Redis's data are checked as without the cache:
// the dead nodes of cached routes are dropped as met, and the loss marker
// is read with every lookup that misses, and at least every markerEvery.
type RouteCache struct {
	*Bus
	mu      sync.Mutex
	gen     uint64 // bumped by every change: a read begun before it is not kept
	routes  map[string][]string
	checked time.Time // the loss marker's last read
	fresh   bool      // the next lookup reads every user (ReadNext)
}

// Bounds of a RouteCache: its size (past it, it starts again empty), and
// how often the loss marker is read when every lookup hits.
const (
	maxCachedRoutes = 500_000
	markerEvery     = time.Second
)

var (
	routesCached = metrics.FanoutRoutes.WithLabelValues("cached")
	routesRead   = metrics.FanoutRoutes.WithLabelValues("read")
)

// RouteCache returns a cache of b's routes. Its Changed and Reset must be
// fed by a hand-off reader (handoff.Reader.WatchRoutes) before NodesOf
// can be trusted; only a fan-out has one.
func (b *Bus) RouteCache() *RouteCache {
	return &RouteCache{Bus: b, routes: map[string][]string{}}
}

// NodesOf is Bus.NodesOf, reading from Redis only the users not cached.
func (c *RouteCache) NodesOf(ctx context.Context, users []string) (map[string][]string, error) {
	if len(users) == 0 {
		return nil, nil
	}
	out := make(map[string][]string, len(users))
	var miss []string
	c.mu.Lock()
	gen, checkMarker, fresh := c.gen, c.lossKey != "" && time.Since(c.checked) >= markerEvery, c.fresh
	c.fresh = false
	for _, u := range users {
		nodes, ok := c.routes[u]
		if fresh {
			ok = false
		}
		switch {
		case !ok:
			miss = append(miss, u)
		case len(nodes) > 0:
			out[u] = nodes
		}
	}
	c.mu.Unlock()
	routesCached.Add(float64(len(users) - len(miss)))
	routesRead.Add(float64(len(miss)))
	if len(miss) > 0 || checkMarker {
		read, err := c.readRoutes(ctx, miss, c.lossKey != "")
		if err != nil {
			return nil, err
		}
		c.keep(gen, miss, read)
		for u, nodes := range read {
			out[u] = nodes
		}
	}
	return c.liveOnly(ctx, users, out)
}

// keep caches what was read for users, unless a change came since the
// read began (gen): the read may predate it.
func (c *RouteCache) keep(gen uint64, users []string, read map[string][]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checked = time.Now()
	if c.gen != gen {
		return
	}
	if len(c.routes)+len(users) > maxCachedRoutes {
		clear(c.routes)
	}
	for _, u := range users {
		c.routes[u] = read[u]
	}
}

// ReadNext makes the next lookup read all its users from Redis (and
// cache what it read): its batch holds records the log brought, which may
// follow a change still on its way to the hand-off reader
// (kafkalog.LiveConfig.FromLog).
func (c *RouteCache) ReadNext() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fresh = true
}

// Changed forgets user's route (handoff.RouteWatcher).
func (c *RouteCache) Changed(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.routes, user)
}

// Reset forgets every route (handoff.RouteWatcher).
func (c *RouteCache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.routes)
	metrics.FanoutRouteResets.Inc()
}
