package socketio

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// Router lets nodes share sessions without sticky load balancing: every
// session id starts with its owner's key ("<key>.<random>"), and a node that
// receives a request for a session it does not hold asks the Router where the
// owner listens and forwards the request there (polls, posts and the
// WebSocket upgrade alike).
type Router interface {
	// Self is this node's key: 1-64 chars of [A-Za-z0-9_-].
	Self() string
	// Lookup returns the base URL ("http://host:port") of the node with key.
	Lookup(ctx context.Context, key string) (string, error)
}

type forwarder struct {
	router Router
	log    *slog.Logger
	proxy  *httputil.ReverseProxy
}

type targetKey struct{}

func newForwarder(router Router, log *slog.Logger) *forwarder {
	f := &forwarder{router: router, log: log}
	tr := &http.Transport{
		Proxy:                 nil, // nodes talk directly, never through an environment proxy
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(targetKey{}).(*url.URL))
			// Keep the client's Host so the owner's same-origin check sees
			// what the client sent.
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			pr.Out.Header.Set(forwardedHeader, "1")
		},
		Transport: tr,
		// This node answered the client's CORS already (Server.cors): the
		// owner's copies would reach the browser twice, and a doubled
		// Access-Control-Allow-Origin makes it refuse the response.
		ModifyResponse: func(res *http.Response) error {
			for k := range res.Header {
				if strings.HasPrefix(k, "Access-Control-") || k == "Vary" {
					res.Header.Del(k)
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				log.Warn("socket.io forward failed", "err", err)
			}
			// The owner is gone: its sessions are too. The client reconnects.
			writeEngineError(w, http.StatusBadRequest, errUnknownSID)
		},
	}
	return f
}

// serve forwards r to the node with key; false if no such node is known.
func (f *forwarder) serve(w http.ResponseWriter, r *http.Request, key string) bool {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	base, err := f.router.Lookup(ctx, key)
	cancel()
	if err != nil || base == "" {
		return false
	}
	target, err := url.Parse(base)
	if err != nil {
		return false
	}
	f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, target)))
	return true
}
