package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
)

// TestRunScript runs infra/run.sh, what `go tool task run` (the README's
// first command) starts after the services and the build, on free ports
// with the test's own schema, topic, Redis prefix and consumer groups: every
// node must become ready, and the script must say so. The script was once
// broken for a whole session (an ops port that was Kafka's) with every
// other test green.
func TestRunScript(t *testing.T) {
	env := testenv.New(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/chatd", "./cmd/chatctl")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ports := runPorts(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "infra", "run.sh"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cfg := env.Cfg
	cmd.Env = append(os.Environ(),
		"PARLEY_BIN="+bin, "PARLEY_RUN_LOGS="+t.TempDir(), "PARLEY_RUN_PORTS="+strings.Trim(fmt.Sprint(ports), "[]"),
		"CHAT_DATABASE_URL="+cfg.DatabaseURL, "CHAT_REDIS_URL="+cfg.RedisURL,
		"CHAT_KAFKA_BROKERS="+strings.Join(cfg.KafkaBrokers, ","), "CHAT_KAFKA_TOPIC="+cfg.Topic,
		"CHAT_DB_SCHEMA="+cfg.DBSchema, "CHAT_REDIS_PREFIX="+cfg.RedisPrefix, "CHAT_GROUP_PREFIX="+cfg.GroupPrefix,
		"CHAT_JWT_SECRET=", "CHAT_DEV_AUTH=true")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var said []string
	running := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		said = append(said, sc.Text())
		if strings.Contains(sc.Text(), "Parley is running.") {
			running = true
			break
		}
	}
	if !running {
		_ = cmd.Wait()
		t.Fatalf("run.sh did not start Parley:\n%s", strings.Join(said, "\n"))
	}
	for _, p := range ports[:4] {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", p))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("node on :%d not ready after the script said so: %v %v", p, resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	// Ctrl-C stops every node.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	done := make(chan error, 1)
	go func() {
		for sc.Scan() { // drain what the script says while it stops
		}
		done <- cmd.Wait()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("run.sh did not stop within 30 s of Ctrl-C")
	}
	for _, p := range ports[:4] {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
			c.Close()
			t.Errorf("a node still listens on :%d after Ctrl-C", p)
		}
	}
}

// runPorts picks n distinct free ports below Linux's ephemeral range, so
// that no outgoing connection takes one before a node binds it.
func runPorts(t *testing.T, n int) []int {
	t.Helper()
	seen := map[int]bool{}
	var out []int
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		p := 20000 + rand.IntN(12000)
		if seen[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		seen[p] = true
		out = append(out, p)
	}
	if len(out) < n {
		t.Fatalf("only %d free ports found", len(out))
	}
	return out
}
