package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/poll"
)

// A flood of /readyz requests, which need no credentials, costs a probe of
// the stores at most once a second, not one per request; a store that goes
// down still shows within a second or so.
func TestReadyzProbesOnceForManyRequests(t *testing.T) {
	var pings atomic.Int64
	var failing atomic.Bool
	ping := func(context.Context) error {
		pings.Add(1)
		time.Sleep(5 * time.Millisecond) // a store's round trip
		if failing.Load() {
			return errors.New("down")
		}
		return nil
	}
	checks := []Check{{Name: "kafka", Ping: ping}, {Name: "redis", Ping: ping}, {Name: "postgres", Ping: ping}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for name, h := range map[string]http.Handler{"public": New(Config{Checks: checks}, nil, nil, quiet), "ops": Ops("n1", checks, false)} {
		pings.Store(0)
		failing.Store(false)
		hs := httptest.NewServer(h)
		status := func() int {
			res, err := http.Get(hs.URL + "/readyz")
			if err != nil {
				t.Error(err)
				return 0
			}
			res.Body.Close()
			return res.StatusCode
		}
		var wg sync.WaitGroup
		for range 200 {
			wg.Go(func() {
				if st := status(); st != http.StatusOK {
					t.Errorf("%s: /readyz %d with every store up", name, st)
				}
			})
		}
		wg.Wait()
		// One probe (three pings) a second at most: a run this slow would
		// have taken ten seconds.
		if n := pings.Load(); n > 30 {
			t.Fatalf("%s: 200 requests cost %d pings", name, n)
		}
		failing.Store(true)
		poll.Until(t, 10*time.Second, name+" /readyz to see a store down", func() bool { return status() == http.StatusServiceUnavailable })
		hs.Close()
	}
}
