package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/internal/testenv"
)

// Build builds the module's commands (chatd, chatctl, ...) into dir with
// one go build, so that a suite compiles each binary once.
func Build(ctx context.Context, dir string, cmds ...string) error {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, c := range cmds {
		args = append(args, "./cmd/"+c)
	}
	build := exec.CommandContext(ctx, "go", args...)
	build.Dir = RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(cmds, " "), err, out)
	}
	return nil
}

// Chatd is a chatd process: one node of a deployment, with its roles, on
// a port of its own; it logs to its Log file.
type Chatd struct {
	Proc
	NodeID string
	Roles  string
	Port   int
}

// NewChatd prepares node id with roles (comma-separated), running bin with
// env plus its own CHAT_NODE_ID, CHAT_ROLES and listen addresses; it logs
// to logDir/<id>.log. It does not start it.
func NewChatd(bin, logDir, id, roles string, env []string) (*Chatd, error) {
	port, err := testenv.PickPort()
	if err != nil {
		return nil, err
	}
	n := &Chatd{NodeID: id, Roles: roles, Port: port}
	n.Name, n.Log = id, filepath.Join(logDir, id+".log")
	// Later entries win (exec dedups the environment): the node's own last.
	env = append(append([]string{}, env...), "CHAT_NODE_ID="+id, "CHAT_ROLES="+roles,
		"CHAT_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port), "CHAT_OPS_ADDR=127.0.0.1:0")
	n.Mk = func() *exec.Cmd {
		cmd := exec.Command(bin)
		cmd.Env = env
		return cmd
	}
	return n, nil
}

// Base is the node's http:// base URL.
func (n *Chatd) Base() string { return fmt.Sprintf("http://127.0.0.1:%d", n.Port) }

// WS is the node's WebSocket URL.
func (n *Chatd) WS() string { return fmt.Sprintf("ws://127.0.0.1:%d/ws", n.Port) }

// WaitReady polls /readyz until 200.
func (n *Chatd) WaitReady(ctx context.Context, limit time.Duration) error {
	return poll.Err(ctx, limit, func() error {
		if !n.Running() {
			return fmt.Errorf("%s is not running", n.Name)
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(cctx, http.MethodGet, n.Base()+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /readyz: %d", n.Name, resp.StatusCode)
		}
		return nil
	})
}

// Tail is the last n lines of the node's log.
func (n *Chatd) Tail(lines int) string {
	b, _ := os.ReadFile(n.Log)
	all := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// ChatEnv is the environment of a Parley process that must reach only the
// given configuration: the parent's minus any CHAT_*, plus extra.
func ChatEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHAT_") {
			env = append(env, kv)
		}
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+extra[k])
	}
	return env
}
