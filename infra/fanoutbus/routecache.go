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
	mu     sync.Mutex
	routes map[string][]string
	// A read is kept only for the users that did not change since it
	// began: gen counts changes, resetAt is the gen of the last Reset and
	// changed the gen of each user's change while reads were in flight
	// (reading), so a connection storm does not stop every other user's
	// read from being kept.
	gen     uint64
	resetAt uint64
	changed map[string]uint64
	reading int
	checked time.Time // the loss marker's last read
	fresh   bool      // the next lookup reads every user (ReadNext)
}

// Bounds of a RouteCache: its size (past it, it starts again empty), and
// how often the loss marker is read when every lookup hits.
const (
	maxCachedRoutes = 500_000
	maxChanged      = 100_000 // changes tracked during reads; past it, reads in flight are not kept
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
	return &RouteCache{Bus: b, routes: map[string][]string{}, changed: map[string]uint64{}}
}

// NodesOf is Bus.NodesOf, reading from Redis only the users not cached.
func (c *RouteCache) NodesOf(ctx context.Context, users []string) (map[string][]string, error) {
	if len(users) == 0 {
		return nil, nil
	}
	out := make(map[string][]string, len(users))
	if err := c.NodesInto(ctx, users, out); err != nil {
		return nil, err
	}
	return out, nil
}

// NodesInto is NodesOf into a map of the caller's, emptied first: the
// fan-out reuses one for every batch. Its slices are the cache's: read only.
// A lookup that fails leaves a ReadNext in force: the batch is retried
// without the log being read again.
func (c *RouteCache) NodesInto(ctx context.Context, users []string, out map[string][]string) (err error) {
	clear(out)
	if len(users) == 0 {
		return nil
	}
	var miss []string
	c.mu.Lock()
	gen, checkMarker, fresh := c.gen, c.lossKey != "" && time.Since(c.checked) >= markerEvery, c.fresh
	c.fresh = false
	if fresh {
		defer func() {
			if err != nil {
				c.ReadNext()
			}
		}()
	}
	for _, u := range users {
		nodes, ok := c.routes[u]
		switch {
		case !ok || fresh:
			miss = append(miss, u)
		case len(nodes) > 0:
			out[u] = nodes
		}
	}
	reads := len(miss) > 0 || checkMarker
	if reads {
		c.reading++
	}
	c.mu.Unlock()
	routesCached.Add(float64(len(users) - len(miss)))
	routesRead.Add(float64(len(miss)))
	if reads {
		read, err := c.readRoutes(ctx, miss, c.lossKey != "")
		afterRead()
		c.keep(gen, miss, read, err == nil)
		if err != nil {
			return err
		}
		for u, nodes := range read {
			out[u] = nodes
		}
	}
	_, err = c.liveOnly(ctx, users, out)
	return err
}

// afterRead is a test's hook between a lookup's read and keep.
var afterRead = func() {}

// keep ends a read begun at gen and, if it succeeded, caches what it
// found for users, except the users that changed since it began: for
// them the read may predate the change.
func (c *RouteCache) keep(gen uint64, users []string, read map[string][]string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reading--
	defer func() {
		if c.reading == 0 {
			clear(c.changed)
		}
	}()
	if !ok {
		return
	}
	c.checked = time.Now()
	if c.resetAt > gen {
		return
	}
	if len(c.routes)+len(users) > maxCachedRoutes {
		clear(c.routes)
	}
	for _, u := range users {
		if c.changed[u] <= gen {
			c.routes[u] = read[u]
		}
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
	if c.reading > 0 {
		if len(c.changed) >= maxChanged {
			c.resetAt, c.changed = c.gen, map[string]uint64{}
			return
		}
		c.changed[user] = c.gen
	}
}

// Reset forgets every route (handoff.RouteWatcher).
func (c *RouteCache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.resetAt = c.gen
	clear(c.routes)
	metrics.FanoutRouteResets.Inc()
}
