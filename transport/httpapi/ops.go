package httpapi

import (
	"context"
	"maps"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Ops is the operational endpoint of a node, served on its own listener
// (CHAT_OPS_ADDR, loopback by default) so that nothing on the public one
// tells clients about internals: /metrics, /readyz with each dependency's
// error, /healthz, and, when enabled, /debug/pprof/.
func Ops(nodeID string, checks []Check, pprofOn bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "node_id": nodeID})
	})
	checked := &prober{checks: checks}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		down := checked.probe(r.Context())
		if len(down) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "down": down, "node_id": nodeID})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "node_id": nodeID})
	})
	mux.Handle("GET /metrics", promhttp.Handler())
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	}
	return mux
}

// OpsServer serves Ops with deadlines that still let a 30 s CPU profile
// or trace through.
func OpsServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 90 * time.Second, IdleTimeout: time.Minute}
}

// prober runs the checks for /readyz, at most one probe at a time and once
// per probeFresh: the public /readyz needs no credentials, and a probe
// costs a Kafka metadata request, a Redis PING and a Postgres connection
// of the pool the commands use, so a flood of requests must not become a
// flood of probes. Requests meanwhile wait for the probe in flight and
// share its answer.
type prober struct {
	checks []Check
	mu     sync.Mutex
	at     time.Time
	down   map[string]string // nil: no probe yet
}

// probeFresh is how long a probe's answer serves later requests: well
// under any load balancer's check interval.
const probeFresh = time.Second

// probe returns each failing check's error text: the cached dependency
// probe, and the live checks as they stand now.
func (p *prober) probe(ctx context.Context) map[string]string {
	down := p.dependencies(ctx)
	for _, c := range p.checks {
		if !c.Live {
			continue
		}
		if err := c.Ping(ctx); err != nil {
			down = maps.Clone(down) // the cached map is shared
			down[c.Name] = err.Error()
		}
	}
	return down
}

// dependencies probes the checks that are not live, at most once per
// probeFresh. The probe is not the request's: a client hanging up does not
// cut it short for the others.
func (p *prober) dependencies(ctx context.Context) map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down != nil && time.Since(p.at) < probeFresh {
		return p.down
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	down := map[string]string{}
	for _, c := range p.checks {
		if c.Live {
			continue
		}
		if err := c.Ping(ctx); err != nil {
			down[c.Name] = err.Error()
		}
	}
	p.down, p.at = down, time.Now()
	return down
}
