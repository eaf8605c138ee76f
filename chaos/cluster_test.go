//go:build chaos

package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/harness"
	"github.com/parley-chat/parley/transport/auth"
)

// cluster is the private deployment of one chaos run.
type cluster struct {
	t      testing.TB
	dir    string
	bin    string
	secret string

	pg *harness.PG
	rd *harness.Redis
	kf *harness.Kafka

	gateways   []*harness.Chatd
	fanouts    []*harness.Chatd
	projectors []*harness.Chatd

	tokMu  sync.Mutex
	tokens map[string]string
}

const (
	chaosTopic  = "chat.events"
	chaosSchema = "chat"
	partitions  = 8
)

// startCluster builds chatd and chatctl, starts Postgres, Redis and Kafka
// on random ports with data under dir, migrates, creates the topic, and
// starts three gateways, two fanouts and two projectors. On error it still
// returns the cluster (when it got that far) so that the caller can shut
// down what started.
func startCluster(ctx context.Context, t testing.TB, dir string) (*cluster, error) {
	secretB := make([]byte, 24)
	_, _ = rand.Read(secretB)
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the chaos test runs its own Postgres as the postgres OS user: run it as root")
	}
	c := &cluster{t: t, dir: dir, bin: filepath.Join(dir, "bin"), secret: hex.EncodeToString(secretB), tokens: map[string]string{}}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	// Kafka takes longest to come up: start it first, build meanwhile.
	var err error
	if c.kf, err = harness.NewKafka(ctx, dir); err != nil {
		return c, err
	}
	if err := c.kf.Start(); err != nil {
		return c, err
	}
	if c.pg, err = harness.NewPG(ctx, dir); err != nil {
		return c, err
	}
	if err := c.pg.Start(); err != nil {
		return c, err
	}
	if c.rd, err = harness.NewRedis(dir); err != nil {
		return c, err
	}
	if err := c.rd.Start(); err != nil {
		return c, err
	}
	t0 := time.Now()
	if err := harness.Build(ctx, c.bin, "chatd", "chatctl"); err != nil {
		return c, err
	}
	t.Logf("built chatd and chatctl in %v", time.Since(t0).Round(time.Millisecond))
	if err := c.pg.WaitReady(ctx, 60*time.Second); err != nil {
		return c, fmt.Errorf("postgres: %w (log %s)", err, c.pg.Log)
	}
	if err := c.pg.CreateDB(ctx, "chat"); err != nil {
		return c, err
	}
	if err := c.rd.WaitReady(ctx, 30*time.Second); err != nil {
		return c, fmt.Errorf("redis: %w (log %s)", err, c.rd.Log)
	}
	if err := c.kf.WaitReady(ctx, 120*time.Second, ""); err != nil {
		return c, fmt.Errorf("kafka: %w (log %s)", err, c.kf.Log)
	}
	t.Logf("services up: postgres :%d, redis :%d, kafka :%d (controller :%d) after %v",
		c.pg.Port, c.rd.Port, c.kf.Port, c.kf.CtrlPort, time.Since(t0).Round(time.Millisecond))
	if err := c.chatctl(ctx, "migrate"); err != nil {
		return c, err
	}
	if err := c.chatctl(ctx, "topics"); err != nil {
		return c, err
	}
	if err := c.kf.WaitReady(ctx, 60*time.Second, chaosTopic); err != nil {
		return c, fmt.Errorf("topic: %w", err)
	}
	for i := range 3 {
		n, err := c.newNode(fmt.Sprintf("gateway-%d", i+1), "gateway")
		if err != nil {
			return c, err
		}
		c.gateways = append(c.gateways, n)
	}
	for i := range 2 {
		f, err := c.newNode(fmt.Sprintf("fanout-%d", i+1), "fanout")
		if err != nil {
			return c, err
		}
		p, err := c.newNode(fmt.Sprintf("projector-%d", i+1), "projector")
		if err != nil {
			return c, err
		}
		c.fanouts, c.projectors = append(c.fanouts, f), append(c.projectors, p)
	}
	for _, n := range c.nodes() {
		if err := n.Start(); err != nil {
			return c, err
		}
	}
	for _, n := range c.nodes() {
		if err := n.WaitReady(ctx, 60*time.Second); err != nil {
			return c, fmt.Errorf("%s: %w (log %s)", n.Name, err, n.Log)
		}
	}
	t.Logf("cluster up after %v: gateways %v", time.Since(t0).Round(time.Millisecond), c.gatewayURLs())
	return c, nil
}

func (c *cluster) nodes() []*harness.Chatd {
	out := append([]*harness.Chatd{}, c.gateways...)
	out = append(out, c.fanouts...)
	return append(out, c.projectors...)
}

// env is the Parley configuration of every process of the run.
func (c *cluster) env(extra map[string]string) []string {
	m := map[string]string{
		"CHAT_DATABASE_URL":  c.pg.URL("chat"),
		"CHAT_REDIS_URL":     c.rd.URL(),
		"CHAT_KAFKA_BROKERS": c.kf.Broker(),
		"CHAT_JWT_SECRET":    c.secret,
		"CHAT_KAFKA_TOPIC":   chaosTopic,
		"CHAT_DB_SCHEMA":     chaosSchema,
		"CHAT_LOG_FORMAT":    "json",
	}
	for k, v := range extra {
		m[k] = v
	}
	return harness.ChatEnv(m)
}

func (c *cluster) chatctl(ctx context.Context, args ...string) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, filepath.Join(c.bin, "chatctl"), args...)
	cmd.Env = c.env(nil)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("chatctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	c.t.Logf("chatctl %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	return nil
}

func (c *cluster) newNode(name, roles string) (*harness.Chatd, error) {
	return harness.NewChatd(filepath.Join(c.bin, "chatd"), filepath.Join(c.dir, "logs"), name, roles, c.env(nil))
}

// gatewayURLs lists every gateway, running or not: a client does not know
// which node is down until it tries.
func (c *cluster) gatewayURLs() []string {
	out := make([]string, len(c.gateways))
	for i, g := range c.gateways {
		out[i] = g.WS()
	}
	return out
}

// aliveGateways are the indices of the running gateways.
func (c *cluster) aliveGateways() []int {
	var out []int
	for i, g := range c.gateways {
		if g.Running() {
			out = append(out, i)
		}
	}
	return out
}

func (c *cluster) token(user string) string {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	if tok, ok := c.tokens[user]; ok {
		return tok
	}
	tok, err := auth.Mint(c.secret, user, 24*time.Hour)
	if err != nil {
		c.t.Errorf("mint token for %s: %v", user, err)
	}
	c.tokens[user] = tok
	return tok
}

// shutdown stops every process of the run.
func (c *cluster) shutdown() {
	var wg sync.WaitGroup
	for _, n := range c.nodes() {
		wg.Add(1)
		go func() { defer wg.Done(); n.Stop(15, 10*time.Second) }() // SIGTERM
	}
	wg.Wait()
	if c.kf != nil {
		c.kf.Stop(15, 20*time.Second)
	}
	if c.rd != nil {
		c.rd.Stop(9, time.Second)
	}
	if c.pg != nil {
		c.pg.Stop(3, 20*time.Second) // SIGQUIT: immediate shutdown
	}
}

// errorLines returns up to n log lines at level ERROR (or WARN when warn is
// set) of every chatd process, for the report.
func (c *cluster) logLines(n int, match func(string) bool) []string {
	var out []string
	for _, nd := range c.nodes() {
		b, err := os.ReadFile(nd.Log)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if match(l) {
				out = append(out, nd.Name+": "+l)
				if len(out) >= n {
					return out
				}
			}
		}
	}
	return out
}
