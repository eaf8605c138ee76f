// Package testenv runs Parley nodes in-process against the real Postgres,
// Redis and Kafka, each test in its own topic, schema, Redis prefix and
// consumer groups, on random ports.
package testenv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/infra/config"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/web"
)

// Env is one test's isolated slice of the shared services.
type Env struct {
	T      testing.TB
	Cfg    config.Config
	Pool   *pgxpool.Pool
	Suffix string
	Logs   *LogSink
}

// New prepares a fresh topic, schema and Redis prefix.
func New(t testing.TB) *Env {
	t.Helper()
	t.Setenv("CHAT_DEV_AUTH", "true")
	cfg, err := config.Load()
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	suffix := RandHex(5)
	cfg.Topic = "test." + suffix
	cfg.Partitions = 4
	cfg.DBSchema = "t_" + suffix
	cfg.RedisPrefix = "t" + suffix
	cfg.GroupPrefix = "t" + suffix + "."
	cfg.BatchWait = 5 * time.Millisecond
	cfg.RateLimit, cfg.RateBurst = 100000, 100000 // tests of the limit set their own
	cfg.APIRateLimit, cfg.APIRateBurst = 100000, 100000
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.OpsAddr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 3 * time.Second
	e := &Env{T: t, Cfg: cfg, Suffix: suffix, Logs: &LogSink{}}
	ctx := context.Background()
	if _, err := kafkalog.EnsureTopic(app.KafkaConfig(cfg)); err != nil {
		t.Fatalf("kafka is needed (run `go tool task services:up`): %v", err)
	}
	if err := pgstore.Migrate(ctx, cfg.DatabaseURL, cfg.DBSchema); err != nil {
		t.Fatalf("postgres is needed (run `go tool task services:up`): %v", err)
	}
	e.Pool, err = pgstore.Open(ctx, cfg.DatabaseURL, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Runs after the nodes stopped: no token this env minted may be in their logs.
		for _, tok := range e.Logs.forbidden() {
			if strings.Contains(e.Logs.String(), tok) {
				t.Errorf("a token minted by env.Token reached the logs")
			}
		}
		// The read model whole: its pointer and analytics schema too.
		_ = projections.DropReadModel(context.Background(), e.Pool, cfg.DBSchema, func(s string) error {
			if !strings.HasPrefix(s, "t_") {
				return fmt.Errorf("not a test schema: %s", s)
			}
			return nil
		})
		e.Pool.Close()
		deleteTopic(cfg)
		deleteKeys(cfg)
	})
	return e
}

// deleteKeys drops the env's Redis keys (idempotency keys would otherwise
// stay 48 hours and swell every snapshot of the shared Redis).
func deleteKeys(cfg config.Config) {
	rdb, err := redisstore.NewClient(cfg.RedisURL)
	if err != nil {
		return
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = redisstore.DeletePrefix(ctx, rdb, cfg.RedisPrefix)
}

func deleteTopic(cfg config.Config) {
	admin, err := kafkalog.NewAdmin(app.KafkaConfig(cfg).WithClientID("parley-test"))
	if err != nil {
		return
	}
	defer admin.Close()
	_ = admin.DeleteTopic(cfg.Topic)
}

// Node is a running in-process chatd.
type Node struct {
	App    *app.App
	Addr   string
	HTTP   string
	WS     string
	Ops    string // http:// base of the ops listener (/metrics, detailed /readyz)
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// StartNode runs a node with the given roles (all when none).
func (e *Env) StartNode(roles ...string) *Node {
	e.T.Helper()
	cfg := e.Cfg
	if len(roles) > 0 {
		cfg.Roles = roles
	}
	cfg.NodeID = fmt.Sprintf("test-%s-%s", e.Suffix, RandHex(2))
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(e.Logs, logOut()), &slog.HandlerOptions{Level: slog.LevelInfo})).With("node_id", cfg.NodeID)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		cancel()
		e.T.Fatalf("start node: %v", err)
	}
	a.Web, err = web.New(web.Config{Nodes: cfg.WebNodes}) // as cmd/chatd does: every node serves the browser client
	if err != nil {
		cancel()
		a.Close()
		e.T.Fatalf("start node: %v", err)
	}
	addr, err := a.Listen()
	if err != nil {
		cancel()
		e.T.Fatal(err)
	}
	n := &Node{App: a, Addr: addr, HTTP: "http://" + addr, WS: "ws://" + addr + "/ws", Ops: "http://" + a.OpsAddr(),
		cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		if err := a.Run(ctx); err != nil {
			e.T.Logf("node %s: %v", cfg.NodeID, err)
		}
		a.Close()
	}()
	e.T.Cleanup(n.Stop)
	return n
}

// Stop shuts the node down gracefully and waits for it.
func (n *Node) Stop() {
	n.once.Do(func() {
		n.cancel()
		<-n.done
	})
}

// Token mints a token for user with the env's secret.
func (e *Env) Token(user string) string {
	tok, err := auth.Mint(e.Cfg.JWTSecret, user, time.Hour)
	if err != nil {
		e.T.Fatal(err)
	}
	e.Logs.forbid(tok)
	return tok
}

// Count runs a count query in the env's schema ({s} is replaced).
func (e *Env) Count(sql string, args ...any) int {
	var n int
	q := strings.ReplaceAll(sql, "{s}", pgx.Identifier{e.Cfg.DBSchema}.Sanitize())
	if err := e.Pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		e.T.Fatalf("count: %v", err)
	}
	return n
}

// WaitFor polls cond until it holds or the timeout passes (poll.Until).
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, timeout, what, cond)
}

func logOut() io.Writer {
	if os.Getenv("PARLEY_TEST_LOGS") != "" {
		return os.Stderr
	}
	return io.Discard
}

// LogSink keeps every log line a test's nodes wrote (to check for leaks).
type LogSink struct {
	mu     sync.Mutex
	b      strings.Builder
	secret []string // strings no line may contain (checked at cleanup)
}

func (s *LogSink) forbid(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secret = append(s.secret, secret)
}

func (s *LogSink) forbidden() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.secret)
}

func (s *LogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Contains reports whether any line written so far contains sub.
func (s *LogSink) Contains(sub string) bool { return strings.Contains(s.String(), sub) }

// HasLine reports whether one line contains every one of subs.
func (s *LogSink) HasLine(subs ...string) bool {
	for _, line := range strings.Split(s.String(), "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if all {
			return true
		}
	}
	return false
}

// String returns everything written.
func (s *LogSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
