package httpapi

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// userLimiter gives each user a token bucket for the HTTP API, as each
// WebSocket connection has one. Buckets idle for a minute are dropped, so
// memory follows the users active in the last minute, not all users ever.
type userLimiter struct {
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

func newUserLimiter(perSecond float64, burst int) *userLimiter {
	if perSecond <= 0 {
		perSecond, burst = 20, 40
	}
	return &userLimiter{limit: rate.Limit(perSecond), burst: max(burst, 1), buckets: map[string]*bucket{}}
}

// allow takes a token of user's bucket; when there is none it reports how
// long until there is.
func (u *userLimiter) allow(user string, now time.Time) (bool, time.Duration) {
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
	r := b.l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}
