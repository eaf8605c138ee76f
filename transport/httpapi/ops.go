package httpapi

import (
	"context"
	"net/http"
	"net/http/pprof"
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
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		down := probe(r.Context(), checks)
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

// probe runs the checks, returning each failing one's error text.
func probe(ctx context.Context, checks []Check) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	down := map[string]string{}
	for _, c := range checks {
		if err := c.Ping(ctx); err != nil {
			down[c.Name] = err.Error()
		}
	}
	return down
}
