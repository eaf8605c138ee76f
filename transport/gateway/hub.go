// Package gateway serves client connections (native WebSocket; Socket.IO
// shares its hub and sessions) and routes deliveries from the fan-out bus
// to the local connections of their recipients.
package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/metrics"
)

// Client is one connection as the hub sees it.
type Client interface {
	UserID() string
	// Deliver queues a push; it must not block.
	Deliver(d domain.Delivery)
}

// Routes tells the fan-out which users are connected to this node.
type Routes interface {
	Join(ctx context.Context, user string) error
	Leave(ctx context.Context, user string) error
}

// Hub indexes local connections by user.
type Hub struct {
	// StreamOf names the bus stream of a conversation: deliveries of one
	// stream and partition arrive in order, which is what gap detection
	// relies on.
	StreamOf func(conv string) string
	// Routes, if set, is told when a user's first local connection opens
	// (before Register returns: the connection cannot sync or send before
	// the fan-out can reach it) and when the last one closes.
	Routes Routes

	// userLocks order a user's route changes with its connection count.
	userLocks userLocks

	mu         sync.RWMutex
	gaps       gapDetector
	users      map[string]map[Client]struct{}
	total      int
	maxPerUser int
	maxTotal   int
	// resyncing holds the connections told to resync after a delivery gap
	// until they unregister: nothing more is delivered to them, since a
	// push from after the gap would move their sync position past the
	// deliveries that were lost.
	resyncing map[Client]struct{}
}

// NewHub builds a hub with connection limits.
func NewHub(maxPerUser, maxTotal int) *Hub {
	return &Hub{users: map[string]map[Client]struct{}{}, resyncing: map[Client]struct{}{}, maxPerUser: maxPerUser, maxTotal: maxTotal}
}

// Refused is returned when a connection limit is reached.
var (
	ErrTooManyForUser = fmt.Errorf("%w: too many connections for this user", domain.ErrRateLimited)
	// Explained: its message goes to the client on every transport.
	ErrNodeFull = domain.Explained{Err: fmt.Errorf("%w: this node is full; connect to another", domain.ErrUnavailable)}
)

// Register adds a connection, enforcing the limits, and routes the user's
// deliveries here if it is the user's first connection on this node.
func (h *Hub) Register(c Client) error {
	defer h.lockUser(c.UserID())()
	first, err := h.add(c)
	if err != nil || !first || h.Routes == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Routes.Join(ctx, c.UserID()); err != nil {
		h.remove(c)
		metrics.ConnectionsRefused.WithLabelValues("routing").Inc()
		return fmt.Errorf("%w: live delivery is not available: %v", domain.ErrUnavailable, err)
	}
	return nil
}

func (h *Hub) add(c Client) (first bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.maxTotal > 0 && h.total >= h.maxTotal {
		metrics.ConnectionsRefused.WithLabelValues("node_full").Inc()
		return false, ErrNodeFull
	}
	set := h.users[c.UserID()]
	if h.maxPerUser > 0 && len(set) >= h.maxPerUser {
		metrics.ConnectionsRefused.WithLabelValues("user_limit").Inc()
		return false, ErrTooManyForUser
	}
	if set == nil {
		set = map[Client]struct{}{}
		h.users[c.UserID()] = set
	}
	set[c] = struct{}{}
	h.total++
	return len(set) == 1, nil
}

// Unregister removes a connection, and the user's route here with its last.
func (h *Hub) Unregister(c Client) {
	defer h.lockUser(c.UserID())()
	if last := h.remove(c); last && h.Routes != nil {
		// A route left behind (Redis away) costs the node deliveries it
		// drops; the fan-out removes routes of nodes that are gone.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Routes.Leave(ctx, c.UserID())
	}
}

func (h *Hub) remove(c Client) (last bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.users[c.UserID()]
	if _, ok := set[c]; !ok {
		return false
	}
	delete(h.resyncing, c)
	delete(set, c)
	h.total--
	if len(set) == 0 {
		delete(h.users, c.UserID())
		return true
	}
	return false
}

// lockUser takes user's lock and returns its release. A lock per user, not
// a stripe shared by many: it is held across Redis calls (up to seconds
// while Redis is slow), which must hold up only that user's connections.
func (h *Hub) lockUser(user string) (unlock func()) {
	return h.userLocks.lock(user)
}

// userLocks are per-user mutexes, each kept while someone holds or waits
// for it.
type userLocks struct {
	mu sync.Mutex
	m  map[string]*userLock
}

type userLock struct {
	sync.Mutex
	refs int // holders and waiters
}

func (l *userLocks) lock(user string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*userLock{}
	}
	ul := l.m[user]
	if ul == nil {
		ul = &userLock{}
		l.m[user] = ul
	}
	ul.refs++
	l.mu.Unlock()
	ul.Lock()
	return func() {
		ul.Unlock()
		l.mu.Lock()
		if ul.refs--; ul.refs == 0 {
			delete(l.m, user)
		}
		l.mu.Unlock()
	}
}

// Rejoin routes every local user here again (Redis lost the routes), each
// under its user's lock and only while still connected, rejoinWorkers at
// a time. The fan-out sends every delivery to every node only for a while
// after a loss (within): a user routed later, or not at all (Redis failed
// meanwhile), may have missed deliveries with no gap to show for it, so
// its connections are told to reconnect and sync instead, which loses
// nothing and routes it again as it reconnects. It returns how many users
// were told so, and the first error. The node's liveness loop, which runs
// it, is held up for at most within and a Join.
func (h *Hub) Rejoin(ctx context.Context, within time.Duration) (resynced int, err error) {
	if h.Routes == nil {
		return 0, nil
	}
	deadline := time.Now().Add(within)
	h.mu.RLock()
	users := make([]string, 0, len(h.users))
	for u := range h.users {
		users = append(users, u)
	}
	h.mu.RUnlock()
	var (
		next   atomic.Int64
		mu     sync.Mutex
		missed []string
		wg     sync.WaitGroup
	)
	for range min(rejoinWorkers, len(users)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(users)); i = next.Add(1) - 1 {
				u := users[i]
				var jerr error
				if time.Now().Before(deadline) {
					jerr = h.rejoin(ctx, u)
				}
				if jerr != nil || time.Now().After(deadline) {
					mu.Lock()
					missed = append(missed, u)
					if err == nil {
						err = jerr
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(missed) > 0 {
		h.resync(missed)
	}
	return len(missed), err
}

// rejoinWorkers bounds the Joins in flight while routing users again.
const rejoinWorkers = 16

func (h *Hub) rejoin(ctx context.Context, user string) error {
	defer h.lockUser(user)()
	h.mu.RLock()
	here := len(h.users[user]) > 0
	h.mu.RUnlock()
	if !here {
		return nil // gone meanwhile: its Unregister left the route
	}
	return h.Routes.Join(ctx, user)
}

// reconciler is a Routes that keeps presence and can apply it again
// (Presence).
type reconciler interface {
	Failed() map[string]time.Time
	Reconcile(ctx context.Context, user string, connected bool, settleAt time.Time)
}

// ReconcilePresence applies again the presence changes that failed, each
// under its user's lock as the node's connections of the user now stand.
func (h *Hub) ReconcilePresence(ctx context.Context) {
	r, ok := h.Routes.(reconciler)
	if !ok {
		return
	}
	for u, settleAt := range r.Failed() {
		unlock := h.lockUser(u)
		h.mu.RLock()
		connected := len(h.users[u]) > 0
		h.mu.RUnlock()
		// Bounded: the user's connects and disconnects wait meanwhile.
		uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r.Reconcile(uctx, u, connected, settleAt)
		cancel()
		unlock()
	}
}

// Count is the number of local connections.
func (h *Hub) Count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.total
}

// Resyncer is a client that can be told to reconnect and sync.
type Resyncer interface {
	Resync(reason string)
}

// Deliver routes a delivery to the local connections of its recipients. A
// delivery that shows this node missed earlier ones (Redis lost them) closes
// every local connection with a resync request: the clients reconnect,
// sync, and get what was missed from the read model.
func (h *Hub) Deliver(d domain.Delivery) {
	if h.StreamOf != nil && h.gaps.missed(d, h.StreamOf) {
		metrics.DeliveryGaps.Inc()
		h.resync(nil)
		return // every local client gets d, and what was lost before it, by sync
	}
	metrics.DeliveriesReceived.Inc()
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := 0
	for _, u := range d.Recipients {
		for c := range h.users[u] {
			if _, ok := h.resyncing[c]; ok {
				continue
			}
			c.Deliver(d)
			n++
		}
	}
	if n > 0 {
		metrics.DeliveriesDelivered.Inc()
	}
	if n > 0 && d.EventAtUnixMs > 0 {
		metrics.DeliveryLatency.Observe(time.Since(time.UnixMilli(d.EventAtUnixMs)).Seconds())
	}
}

// ResyncAll asks every local connection to reconnect and sync, and stops
// delivering to it.
func (h *Hub) ResyncAll() { h.resync(nil) }

// resync tells the connections of users (nil: of everyone) to reconnect
// and sync.
func (h *Hub) resync(users []string) {
	var all []Resyncer
	mark := func(set map[Client]struct{}) {
		for c := range set {
			if r, ok := c.(Resyncer); ok {
				h.resyncing[c] = struct{}{}
				all = append(all, r)
			}
		}
	}
	h.mu.Lock()
	if users == nil {
		for _, set := range h.users {
			mark(set)
		}
	} else {
		for _, u := range users {
			mark(h.users[u])
		}
	}
	h.mu.Unlock()
	for _, r := range all {
		r.Resync("delivery gap: reconnect and sync")
	}
}

// Each calls f for every local connection (shutdown).
func (h *Hub) Each(f func(Client)) {
	h.mu.RLock()
	var all []Client
	for _, set := range h.users {
		for c := range set {
			all = append(all, c)
		}
	}
	h.mu.RUnlock()
	for _, c := range all {
		f(c)
	}
}

type gapDetector struct {
	mu   sync.Mutex
	last map[gapKey]int64
}

type gapKey struct {
	stream    string
	partition int32
}

// missed records d and reports whether deliveries before it were lost.
func (g *gapDetector) missed(d domain.Delivery, stream func(string) string) bool {
	if d.Seq == 0 {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last == nil {
		g.last = map[gapKey]int64{}
	}
	k := gapKey{stream(d.ConversationID), d.Partition}
	last, seen := g.last[k]
	g.last[k] = max(last, d.Seq)
	// A redelivery (seq at or below last) is no gap; a Prev above what this
	// node saw is.
	return seen && d.Seq > last && d.Prev > last
}
