package gateway

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// UserLimits gives each user one token bucket on this node, whatever the
// number of their connections: a per-connection bucket would let one user
// multiply the rate by the connections the hub allows them (32), and
// the WebSocket and Socket.IO servers of a node share one (the HTTP API
// has its own). Buckets idle for a minute are dropped, so memory follows
// the users active in the last minute, not all users ever.
type UserLimits struct {
	limit rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

const bucketIdle = time.Minute

// NewUserLimits allows each user perSecond commands, burst at once (20 and
// 40 if perSecond is not positive).
func NewUserLimits(perSecond float64, burst int) *UserLimits {
	if perSecond <= 0 {
		perSecond, burst = 20, 40
	}
	return &UserLimits{limit: rate.Limit(perSecond), burst: max(burst, 1), buckets: map[string]*bucket{}}
}

// Allow takes cost tokens (at most the burst) of user's bucket; when there
// are not enough it takes none and reports how long until there are.
func (u *UserLimits) Allow(user string, cost int, now time.Time) (bool, time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if now.Sub(u.lastSweep) > bucketIdle {
		for k, b := range u.buckets {
			if now.Sub(b.seen) > bucketIdle {
				delete(u.buckets, k)
			}
		}
		u.lastSweep = now
	}
	b := u.buckets[user]
	if b == nil {
		b = &bucket{l: rate.NewLimiter(u.limit, u.burst)}
		u.buckets[user] = b
	}
	b.seen = now
	r := b.l.ReserveN(now, min(max(cost, 1), u.burst))
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// For is a pipeline's Limit for user's commands (Call.Limit).
func (u *UserLimits) For(user string) func(cost int) error {
	return func(cost int) error {
		if ok, _ := u.Allow(user, cost, time.Now()); !ok {
			return ErrRateLimited
		}
		return nil
	}
}
