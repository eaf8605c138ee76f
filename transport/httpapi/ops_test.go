package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
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

// A node that starts draining leaves the rotation on the next /readyz, not
// a cached probe later, and a live check costs the stores no probe.
func TestReadyzShowsDrainingAtOnce(t *testing.T) {
	var pings atomic.Int64
	var draining atomic.Bool
	checks := []Check{
		{Name: "redis", Ping: func(context.Context) error { pings.Add(1); return nil }},
		{Name: "draining", Live: true, Ping: func(context.Context) error {
			if draining.Load() {
				return errors.New("the node is shutting down")
			}
			return nil
		}},
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for name, h := range map[string]http.Handler{"public": New(Config{Checks: checks}, nil, nil, quiet), "ops": Ops("n1", checks, false)} {
		pings.Store(0)
		draining.Store(false)
		hs := httptest.NewServer(h)
		status := func() int {
			res, err := http.Get(hs.URL + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK && !strings.Contains(string(body), "draining") {
				t.Errorf("%s: /readyz %d does not name draining: %s", name, res.StatusCode, body)
			}
			return res.StatusCode
		}
		if st := status(); st != http.StatusOK {
			t.Fatalf("%s: /readyz %d before draining", name, st)
		}
		draining.Store(true)
		if st := status(); st != http.StatusServiceUnavailable {
			t.Fatalf("%s: /readyz %d right after draining began, want 503", name, st)
		}
		if n := pings.Load(); n != 1 {
			t.Fatalf("%s: two requests within a second cost %d dependency probes, want 1", name, n)
		}
		hs.Close()
	}
}
