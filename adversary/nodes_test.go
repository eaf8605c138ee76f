//go:build adversary

package adversary

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
)

// chatd is one chatd process of the run (every role).
type chatd struct {
	name string
	addr string // 127.0.0.1:port, from its "node started" log line
	ops  string // its ops listener (/metrics), from the same line
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the exit, once done is closed

	mu      sync.Mutex
	peakRSS int64 // largest VmRSS sampled (bytes)
}

func (n *chatd) ws() string   { return "ws://" + n.addr + "/ws" }
func (n *chatd) http() string { return "http://" + n.addr }
func (n *chatd) sio() string {
	return "ws://" + n.addr + "/socket.io/?EIO=4&transport=websocket"
}

// buildChatd compiles ./cmd/chatd into dir.
func buildChatd(t *testing.T, dir string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	bin := filepath.Join(dir, "chatd")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/chatd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/chatd: %v\n%s", err, out)
	}
	return bin
}

// chatdEnv is the environment of a node: the parent's without CHAT_*, then
// env's isolation (topic, schema, prefixes) and the suite's settings.
func chatdEnv(env *testenv.Env, name string) []string {
	c := env.Cfg
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHAT_") {
			out = append(out, kv)
		}
	}
	return append(out,
		"CHAT_NODE_ID="+name, "CHAT_HTTP_ADDR=127.0.0.1:0", "CHAT_OPS_ADDR=127.0.0.1:0",
		"CHAT_DEV_AUTH=true", "CHAT_JWT_SECRET="+c.JWTSecret,
		"CHAT_KAFKA_BROKERS="+strings.Join(c.KafkaBrokers, ","), "CHAT_REDIS_URL="+c.RedisURL,
		"CHAT_DATABASE_URL="+c.DatabaseURL, "CHAT_KAFKA_TOPIC="+c.Topic,
		"CHAT_KAFKA_PARTITIONS="+strconv.Itoa(int(c.Partitions)), "CHAT_DB_SCHEMA="+c.DBSchema,
		"CHAT_REDIS_PREFIX="+c.RedisPrefix, "CHAT_GROUP_PREFIX="+c.GroupPrefix,
		"CHAT_PROJECTOR_WAIT="+c.BatchWait.String(),
		// The documented defaults except these two, shortened so that
		// half-open connections are reaped within a short run: a WebSocket
		// that answers no ping is dropped after two intervals, a TCP
		// connection that sends no request headers after the header timeout.
		"CHAT_WS_PING_INTERVAL="+wsPingInterval.String(), "CHAT_HTTP_HEADER_TIMEOUT="+headerTimeout.String(),
		"CHAT_SHUTDOWN_TIMEOUT=5s", "CHAT_LOG_FORMAT=json", "CHAT_LOG_LEVEL=info")
}

const (
	wsPingInterval = 2 * time.Second
	headerTimeout  = 3 * time.Second
)

// startChatd runs bin and waits until it listens and /readyz answers 200.
func startChatd(t *testing.T, env *testenv.Env, bin, dir, name string) *chatd {
	t.Helper()
	n := &chatd{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(n.log)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(bin)
	n.cmd.Env = chatdEnv(env, name)
	n.cmd.Stdout, n.cmd.Stderr = f, f
	// The node dies with the test binary, so a crashed run leaves nothing.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		n.err = n.cmd.Wait()
		f.Close()
		close(n.done)
	}()
	t.Cleanup(n.stop)
	testenv.WaitFor(t, 60*time.Second, name+" listening", func() bool {
		if !n.running() {
			t.Fatalf("%s exited at start: %v\n%s", name, n.err, n.tail(30))
		}
		n.addr, n.ops = n.startedAddr()
		return n.addr != ""
	})
	testenv.WaitFor(t, 60*time.Second, name+" ready", func() bool {
		code, _ := n.get("/readyz")
		return code == http.StatusOK
	})
	return n
}

// startedAddr reads the listen and ops addresses from the "node started"
// log line.
func (n *chatd) startedAddr() (string, string) {
	b, _ := os.ReadFile(n.log)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
			Ops  string `json:"ops_addr"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "node started" {
			return l.Addr, l.Ops
		}
	}
	return "", ""
}

func (n *chatd) running() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// stop ends the node gracefully (SIGTERM), then kills it after 15 s.
func (n *chatd) stop() {
	if !n.running() {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(15 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// get fetches a path of the node's HTTP listener (bounded).
func (n *chatd) get(path string) (int, string) { return n.getURL(n.http() + path) }

// getURL fetches url (bounded).
func (n *chatd) getURL(url string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	return res.StatusCode, string(b)
}

// metric sums the samples of a Prometheus metric whose labels contain every
// one of labels (e.g. `code="internal"`); -1 when /metrics cannot be read.
func (n *chatd) metric(name string, labels ...string) float64 {
	code, body := n.getURL("http://" + n.ops + "/metrics")
	if code != http.StatusOK {
		return -1
	}
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// memStatus reads VmRSS and VmHWM (peak RSS since start) in bytes.
func (n *chatd) memStatus() (rss, hwm int64, err error) {
	if !n.running() {
		return 0, 0, fmt.Errorf("%s is not running", n.name)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	if rss == 0 {
		return 0, 0, errors.New("no VmRSS")
	}
	return rss, hwm, nil
}

// sample records the current RSS in the node's sampled peak.
func (n *chatd) sample() int64 {
	rss, _, err := n.memStatus()
	if err != nil {
		return 0
	}
	n.mu.Lock()
	n.peakRSS = max(n.peakRSS, rss)
	n.mu.Unlock()
	return rss
}

// takePeak returns the sampled peak since the last call and resets it.
func (n *chatd) takePeak() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.peakRSS
	n.peakRSS = 0
	return p
}

// tail returns the last lines of the node's log.
func (n *chatd) tail(lines int) string {
	b, _ := os.ReadFile(n.log)
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}

// logLines returns up to limit log lines for which match holds.
func (n *chatd) logLines(limit int, match func(string) bool) []string {
	b, _ := os.ReadFile(n.log)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if match(l) {
			out = append(out, l)
			if len(out) == limit {
				break
			}
		}
	}
	return out
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
