package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
)

// TestBrowserClient drives the browser client served at / in headless
// Chromium (tests/browser, playwright-core): alice on node 1 and bob on node 2
// chat, and bob's page survives the loss of node 2 by reconnecting to node 1.
// Each node lists the other (CHAT_WEB_NODES) and nothing else: a page opened
// from a link naming a foreign host in ?nodes= never contacts it (a listener
// on another loopback port plays that host and must see no connection), and
// its CSP refuses a WebSocket there. A missing node or chromium fails the
// test: tests/browser/setup.sh installs them.
func TestBrowserClient(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	setup(t, root)

	env := testenv.New(t)
	// As deployed: each node lists the other for its page to fail over to,
	// and admits the other's page (a cross-origin WebSocket). Node 2's
	// address is chosen before node 1 starts, which must name it.
	n2Addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env.Cfg.AllowedOrigins = []string{"http://" + n2Addr}
	env.Cfg.WebNodes = []string{"http://" + n2Addr}
	n1 := env.StartNode("gateway", "fanout", "projector")
	env.Cfg.HTTPAddr = n2Addr
	env.Cfg.AllowedOrigins = []string{n1.HTTP}
	env.Cfg.WebNodes = []string{n1.HTTP}
	n2 := env.StartNode("gateway")
	// Node 3 has no dev auth (its page asks for a token) and lists no node.
	env.Cfg.HTTPAddr = "127.0.0.1:0"
	env.Cfg.AllowedOrigins, env.Cfg.WebNodes = nil, nil
	env.Cfg.DevAuth = false
	n3 := env.StartNode("gateway")

	evil := startForeignHost(t)
	warmUp(t, env, n1, n2)

	control := startControl(t, map[string]func(){"/stop/node2": n2.Stop},
		map[string]func() any{"/foreign": func() any { return map[string]int{"connections": evil.connections()} }})
	out := filepath.Join(root, "test-output", "browser")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-concurrency=1", "--test-reporter=spec",
		"tests/browser/state.test.js", "tests/browser/conn.test.js", "tests/browser/chat.test.js")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"PARLEY_NODE1="+n1.HTTP,
		"PARLEY_NODE2="+n2.HTTP,
		"PARLEY_NODE3="+n3.HTTP,
		"PARLEY_FOREIGN="+evil.addr,
		"PARLEY_CONTROL="+control,
		"PARLEY_OUTPUT="+out,
		"PARLEY_CHROMIUM="+chromium,
	)
	cmd.WaitDelay = 10 * time.Second
	if err := runLogged(t, cmd); err != nil {
		t.Fatalf("browser tests failed: %v (screenshots in %s)", err, out)
	}
	if n := evil.connections(); n != 0 {
		t.Errorf("the foreign host named in ?nodes= got %d connection(s); first request line: %q", n, evil.firstLine())
	}
	// The pages' tokens (dev tokens, minted by the nodes) reached no log line.
	n1.Stop()
	n3.Stop()
	if !env.Logs.HasLine("connection open", "erin") {
		t.Fatal("the nodes' log lines were not captured: the check below would prove nothing")
	}
	if !strings.HasPrefix(env.Token("header_probe"), jwtHeader) {
		t.Fatal("tokens no longer start with jwtHeader: the check below would prove nothing")
	}
	if env.Logs.Contains(jwtHeader) {
		t.Error("a token reached the nodes' logs")
	}
}

// jwtHeader starts every token Parley mints: {"alg":"HS256","typ":"JWT"}.
const jwtHeader = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."

// foreignHost is a TCP listener on another loopback port that stands for a
// host an attacker names in ?nodes=: it counts the connections it gets.
type foreignHost struct {
	addr  string
	mu    sync.Mutex
	n     int
	first string
}

func startForeignHost(t *testing.T) *foreignHost {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &foreignHost{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.n++
			f.mu.Unlock()
			go func() {
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				// The request line, without its query (the token would be there).
				line, _, _ = strings.Cut(strings.TrimSpace(line), "?")
				f.mu.Lock()
				if f.first == "" {
					f.first = line
				}
				f.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return f
}

func (f *foreignHost) connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *foreignHost) firstLine() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first
}

// warmUp waits until an event goes from node 1 through the log and the
// fan-out to node 2: a fresh fan-out consumer group can take a while to join
// on a busy machine, and the browser steps should not wait on that.
func warmUp(t *testing.T, env *testenv.Env, n1, n2 *testenv.Node) {
	t.Helper()
	a := dial(t, env, n1, "warmup-a")
	b := dial(t, env, n2, "warmup-b")
	createGroup(t, a, "warmup-b")
	timeout := time.After(90 * time.Second)
	for {
		select {
		case p, ok := <-b.Pushes:
			if !ok {
				t.Fatalf("warm-up connection closed: %v", b.CloseErr)
			}
			if p.Type == domain.PushConversationCreated {
				a.Close()
				b.Close()
				return
			}
		case <-timeout:
			t.Fatal("warm-up: no conversation.created from node 1 reached node 2 within 90s")
		}
	}
}

const chromium = "/usr/bin/chromium"

// setup installs what the browser tests need (chromium, the npm packages).
func setup(t *testing.T, root string) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is needed for the browser tests (apt-get install nodejs npm): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "tests", "browser", "setup.sh"))
	cmd.Dir = root
	if err := runLogged(t, cmd); err != nil {
		t.Fatalf("tests/browser/setup.sh: %v", err)
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s is needed for the browser tests: %v", chromium, err)
	}
}

// runLogged runs cmd with its output in the test log, line by line.
func runLogged(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			t.Log(sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	wg.Wait()
	return err
}

// startControl serves POST endpoints on loopback that the JavaScript test
// calls to act on the nodes (the nodes run in this process), and GET
// endpoints that report JSON.
func startControl(t *testing.T, actions map[string]func(), reports map[string]func() any) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for path, f := range actions {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, _ *http.Request) {
			t.Logf("control: %s", path)
			f()
			w.WriteHeader(http.StatusNoContent)
		})
	}
	for path, f := range reports {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(f())
		})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + strings.TrimPrefix(l.Addr().String(), "http://")
}
