// Package web embeds the browser chat client served at /.
package web

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

//go:embed static
var static embed.FS

// Config of the browser client.
type Config struct {
	// Nodes are the origins of the other gateway nodes the page may fail
	// over to (CHAT_WEB_NODES), e.g. "https://chat-2.example.com". The page's
	// own origin is always allowed and tried first; listing it too is
	// harmless, so every node can have the same list. The page connects to
	// nothing else, and its Content-Security-Policy names nothing else.
	Nodes []string
}

// Handler serves the client with no node besides the page's own (behind a
// load balancer that is the whole cluster).
func Handler() http.Handler {
	h, _ := New(Config{}) // no nodes: nothing to refuse
	return h
}

// New serves the client at /, and its settings at /config.json:
// {"nodes": ["wss://chat-2.example.com/ws", ...]}, the WebSocket URLs of
// Config.Nodes. It refuses a node that is not an http(s) or ws(s) origin.
func New(cfg Config) (http.Handler, error) {
	nodes, err := wsOrigins(cfg.Nodes)
	if err != nil {
		return nil, err
	}
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n + "/ws"
	}
	settings, err := json.Marshal(map[string]any{"nodes": urls})
	if err != nil {
		return nil, err
	}
	policy := csp(nodes)
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", policy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.URL.Path == "/config.json" {
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			_, _ = w.Write(settings)
			return
		}
		files.ServeHTTP(w, r)
	}), nil
}

// csp allows only the client's own scripts and styles, and connections to
// its own origin ('self' covers its ws: or wss: too) and the listed nodes'
// WebSockets: no inline script, so injected markup cannot run, and no other
// host, so a script that did run could not send the token elsewhere.
func csp(nodes []string) string {
	connect := append([]string{"'self'"}, nodes...)
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src " + strings.Join(connect, " ") + "; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
}

// wsOrigins turns each origin into the ws:// or wss:// origin of its
// WebSocket (http → ws, https → wss), deduplicated, blanks skipped.
func wsOrigins(origins []string) ([]string, error) {
	var out []string
	var errs []error
	for _, o := range origins {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		n, err := wsOrigin(o)
		if err != nil {
			errs = append(errs, fmt.Errorf("CHAT_WEB_NODES: %q: %w", o, err))
			continue
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, errors.Join(errs...)
}

func wsOrigin(origin string) (string, error) {
	u, err := url.Parse(origin)
	if err != nil {
		return "", errors.New("not a URL")
	}
	scheme := map[string]string{"http": "ws", "ws": "ws", "https": "wss", "wss": "wss"}[strings.ToLower(u.Scheme)]
	switch {
	case scheme == "":
		return "", errors.New("want an origin such as https://chat-2.example.com (scheme http, https, ws or wss)")
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "", errors.New("want an origin only: no user, path, query or fragment")
	case u.Hostname() == "" || !hostChars(u.Host):
		return "", errors.New("want a host name or IP address, with an optional port (no wildcard)")
	}
	return scheme + "://" + strings.ToLower(u.Host), nil
}

// hostChars admits what a host[:port] or [IPv6]:port is made of, and so
// nothing that could end a CSP source (space, ';', ',', quotes, '*').
func hostChars(h string) bool {
	for _, c := range h {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]", c)
		if !ok {
			return false
		}
	}
	return true
}
