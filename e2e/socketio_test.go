package e2e

// The Socket.IO endpoint tested with the official socket.io-client from npm:
// tests/socketio/*.test.js run under `node --test` against two real nodes
// (node 1 runs every role, node 2 only the gateway). The Go side starts the
// nodes, installs the npm packages and serves a control endpoint the scripts
// use to make a node cut a user's transport.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/transport/gateway"
)

func TestSocketIOClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed for the Socket.IO client tests (apt-get install nodejs npm): %v", err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm is needed for the Socket.IO client tests (apt-get install nodejs npm): %v", err)
	}
	dir := sioTestsDir(t)
	sioInstall(t, dir, npm)

	env := testenv.New(t)
	env.Cfg.PresenceDebounce = 500 * time.Millisecond // presence.test.js waits for an offline
	n1 := env.StartNode("gateway", "fanout", "projector")
	n2 := env.StartNode("gateway")
	control := httptest.NewServer(sioControl(n1, n2))
	t.Cleanup(control.Close)
	sioWarmUp(t, env, n1, n2)

	vars := []string{"NODE1=" + n1.HTTP, "NODE2=" + n2.HTTP, "CONTROL=" + control.URL}
	args := []string{"--test", "--test-reporter=spec"}
	// PARLEY_SIO_TESTS="chat.test.js ..." runs only those files.
	args = append(args, strings.Fields(os.Getenv("PARLEY_SIO_TESTS"))...)
	sioRun(t, 5*time.Minute, dir, vars, node, args...)
}

// sioWarmUp waits until an event produced through node 1 reaches a client
// of node 2: on a loaded machine the fan-out's consumer group can take a
// while to get its partitions, and the scripts' timeouts are for the
// Socket.IO path, not for that.
func sioWarmUp(t *testing.T, env *testenv.Env, n1, n2 *testenv.Node) {
	t.Helper()
	a, b := dial(t, env, n1, "sio-warm-a"), dial(t, env, n2, "sio-warm-b")
	createGroup(t, a, "sio-warm-b")
	deadline := time.After(90 * time.Second)
	for {
		select {
		case p, ok := <-b.Pushes:
			if !ok {
				t.Fatalf("warm-up connection closed: %v", b.CloseErr)
			}
			if p.Type == "conversation.created" {
				a.Close()
				b.Close()
				return
			}
		case <-deadline:
			t.Fatal("no event crossed from node 1 to node 2 within 90 s")
		}
	}
}

// sioInstall runs `npm ci` unless node_modules already matches the lock
// file. A file lock keeps concurrent runs of this test (two `go test` in one
// tree) from reinstalling under each other: the installer holds it
// exclusively, then every run holds it shared until its scripts end.
func sioInstall(t *testing.T, dir, npm string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "parley-socketio-npm.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if !sioInstalled(dir) {
		sioRun(t, 5*time.Minute, dir, nil, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
}

// sioInstalled: npm writes node_modules/.package-lock.json last; newer than
// package.json and package-lock.json, the install is complete and current.
func sioInstalled(dir string) bool {
	done, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil {
		return false
	}
	for _, f := range []string{"package.json", "package-lock.json"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.ModTime().After(done.ModTime()) {
			return false
		}
	}
	return true
}

// sioTestsDir is tests/socketio at the repository root.
func sioTestsDir(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test file")
	}
	return filepath.Join(filepath.Dir(file), "..", "tests", "socketio")
}

// sioRun runs a command in dir, bounded by limit, and fails the test if it
// fails; its output goes to the test log.
func sioRun(t *testing.T, limit time.Duration, dir string, vars []string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), vars...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("%s %v:\n%s", filepath.Base(name), args, out.String())
	if err != nil {
		t.Fatalf("%s %v: %v", filepath.Base(name), args, err)
	}
}

// sioControl serves POST /kill?user=U: every node cuts the transport of
// U's Socket.IO connections, as a network failure would.
func sioControl(nodes ...*testenv.Node) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /kill", func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		killed := 0
		for _, n := range nodes {
			n.App.Hub.Each(func(c gateway.Client) {
				k, ok := c.(interface{ CloseTransport() })
				if ok && c.UserID() == user {
					k.CloseTransport()
					killed++
				}
			})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int{"killed": killed})
	})
	return mux
}

// A session lives on the node that created it; any node forwards to it, and
// once that node is gone every node answers "Session ID unknown", which makes
// clients reconnect (to a live node) and sync.
func TestSocketIOOwnerGone(t *testing.T) {
	env := testenv.New(t)
	n1 := env.StartNode("gateway", "fanout", "projector")
	n2 := env.StartNode("gateway")

	poll := func(base, sid, method, body string) (int, string) {
		t.Helper()
		u := base + "/socket.io/?EIO=4&transport=polling"
		if sid != "" {
			u += "&sid=" + sid
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	_, open := poll(n2.HTTP, "", http.MethodGet, "")
	var o struct{ SID string }
	if err := json.Unmarshal([]byte(strings.TrimPrefix(open, "0")), &o); err != nil {
		t.Fatalf("open %q: %v", open, err)
	}
	// Through node 1: forwarded to node 2, which holds the session.
	if status, body := poll(n1.HTTP, o.SID, http.MethodPost, `40{"token":"`+env.Token("owner1")+`"}`); status != 200 || body != "ok" {
		t.Fatalf("POST via node 1: %d %s", status, body)
	}
	if status, body := poll(n1.HTTP, o.SID, http.MethodGet, ""); status != 200 || !strings.HasPrefix(body, `40{"sid":`) {
		t.Fatalf("GET via node 1: %d %s", status, body)
	}
	if n2.App.Hub.Count() != 1 || n1.App.Hub.Count() != 0 {
		t.Fatalf("hub counts: node 1 %d, node 2 %d", n1.App.Hub.Count(), n2.App.Hub.Count())
	}
	key := env.Cfg.RedisPrefix + ":sio:nodes:" + n2.App.SIO.Nodes.Self()
	if n := n1.App.Redis.Client().Exists(context.Background(), key).Val(); n != 1 {
		t.Fatalf("node 2 is not registered under %s", key)
	}

	n2.Stop()
	if n := n1.App.Redis.Client().Exists(context.Background(), key).Val(); n != 0 {
		t.Fatal("node 2's registration outlived it")
	}
	if status, body := poll(n1.HTTP, o.SID, http.MethodGet, ""); status != http.StatusBadRequest || !strings.Contains(body, `"code":1`) {
		t.Fatalf("GET for a dead node's session: %d %s", status, body)
	}
}
