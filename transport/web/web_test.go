package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d", path, rec.Code)
	}
	return rec
}

// directive returns the sources of one CSP directive.
func directive(t *testing.T, csp, name string) []string {
	t.Helper()
	for d := range strings.SplitSeq(csp, ";") {
		f := strings.Fields(d)
		if len(f) > 0 && f[0] == name {
			return f[1:]
		}
	}
	t.Fatalf("no %s in %q", name, csp)
	return nil
}

// The page may connect to its own origin and the listed nodes' WebSockets,
// and to nothing else: no blanket ws: or wss:, no wildcard.
func TestCSPNamesOnlyTheListedNodes(t *testing.T) {
	h, err := New(Config{Nodes: []string{"http://127.0.0.1:8081", " https://Chat-2.Example.com ", "wss://chat-3.example.com:8443/", "", "http://127.0.0.1:8081"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/app.css", "/js/conn.js", "/config.json"} {
		rec := get(t, h, path)
		csp := rec.Header().Get("Content-Security-Policy")
		got := strings.Join(directive(t, csp, "connect-src"), " ")
		want := "'self' ws://127.0.0.1:8081 wss://chat-2.example.com wss://chat-3.example.com:8443"
		if got != want {
			t.Errorf("%s: connect-src %q, want %q", path, got, want)
		}
		for name, want := range map[string]string{"default-src": "'self'", "script-src": "'self'", "style-src": "'self'",
			"object-src": "'none'", "base-uri": "'none'", "frame-ancestors": "'none'"} {
			if got := strings.Join(directive(t, csp, name), " "); got != want {
				t.Errorf("%s: %s %q, want %q", path, name, got, want)
			}
		}
		if strings.Contains(csp, "unsafe") || strings.Contains(csp, "*") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" || rec.Header().Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", path, rec.Header())
		}
	}

	rec := get(t, h, "/config.json")
	var cfg struct{ Nodes []string }
	if err := json.Unmarshal(rec.Body.Bytes(), &cfg); err != nil {
		t.Fatal(err)
	}
	want := []string{"ws://127.0.0.1:8081/ws", "wss://chat-2.example.com/ws", "wss://chat-3.example.com:8443/ws"}
	if strings.Join(cfg.Nodes, " ") != strings.Join(want, " ") {
		t.Errorf("/config.json nodes %q, want %q", cfg.Nodes, want)
	}
	if rec.Header().Get("Cache-Control") != "no-store" || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Errorf("/config.json headers %v", rec.Header())
	}
}

func TestNoNodesMeansOwnOriginOnly(t *testing.T) {
	for name, h := range map[string]http.Handler{"Handler": Handler(), "New": must(New(Config{}))} {
		rec := get(t, h, "/")
		if got := directive(t, rec.Header().Get("Content-Security-Policy"), "connect-src"); len(got) != 1 || got[0] != "'self'" {
			t.Errorf("%s: connect-src %q, want only 'self'", name, got)
		}
		if body := get(t, h, "/config.json").Body.String(); body != `{"nodes":[]}` {
			t.Errorf("%s: /config.json %s", name, body)
		}
	}
}

func must(h http.Handler, err error) http.Handler {
	if err != nil {
		panic(err)
	}
	return h
}

// Anything but an origin is refused at start, in particular what would
// widen or break the CSP.
func TestNewRefusesWhatIsNotAnOrigin(t *testing.T) {
	for _, bad := range []string{
		"localhost:8081", // no scheme
		"chat-2.example.com",
		"ftp://chat-2.example.com",
		"javascript:alert(1)",
		"https://chat-2.example.com/ws",
		"https://chat-2.example.com?x=1",
		"https://user@chat-2.example.com",
		"https://*.example.com",
		"https://a.example.com;script-src",
		"https://a.example.com 'unsafe-inline'",
		"https://",
		"wss:",
	} {
		if _, err := New(Config{Nodes: []string{"https://ok.example.com", bad}}); err == nil || !strings.Contains(err.Error(), "CHAT_WEB_NODES") {
			t.Errorf("%q: err %v, want a CHAT_WEB_NODES error", bad, err)
		}
	}
}
