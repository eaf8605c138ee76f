//go:build chaos

package chaos

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/internal/testenv"
)

// proc is one child process that can be killed and started again with the
// same command line. Every child gets SIGKILL if the test binary dies, so a
// crashed run leaves nothing behind (Postgres included: it runs as a direct
// child, not daemonized by pg_ctl).
type proc struct {
	name string
	log  string
	mk   func() *exec.Cmd

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is already running", p.name)
		}
	}
	f, err := os.OpenFile(p.log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== chaos: start %s at %s\n", p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := p.mk()
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true // a ^C on the terminal reaches the test only
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "=== chaos: %s exited at %s: %v\n", p.name, time.Now().UTC().Format(time.RFC3339Nano), err)
		f.Close()
		close(done)
	}()
	return nil
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// signal sends sig without waiting (SIGSTOP, SIGCONT).
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return fmt.Errorf("%s not started", p.name)
	}
	return p.cmd.Process.Signal(sig)
}

// stop sends sig and waits up to wait for the exit, then SIGKILLs.
func (p *proc) stop(sig syscall.Signal, wait time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || done == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return
	case <-time.After(wait):
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// repoRoot is the module root (this file lives in <root>/chaos).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// poll calls cond until it returns nil or limit passes; it returns the last
// error. Every wait of the harness goes through here, so each is bounded.
func poll(ctx context.Context, limit time.Duration, cond func() error) error {
	deadline := time.Now().Add(limit)
	delay := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// ---------------------------------------------------------------- Postgres

type privatePG struct {
	proc
	bin  string
	dir  string
	port int
}

func newPG(dir string) (*privatePG, error) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		return nil, errors.New("no PostgreSQL server binaries under /usr/lib/postgresql")
	}
	sort.Strings(bins)
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("no postgres OS user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	pgdir := filepath.Join(dir, "pg")
	if err := os.MkdirAll(pgdir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chown(pgdir, uid, gid); err != nil {
		return nil, err
	}
	port, err := testenv.PickPort()
	if err != nil {
		return nil, err
	}
	p := &privatePG{bin: filepath.Dir(bins[len(bins)-1]), dir: pgdir, port: port}
	init := exec.Command("runuser", "-u", "postgres", "--", filepath.Join(p.bin, "initdb"), "-D", p.data(),
		"-U", "root", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N")
	init.Dir = "/"
	if out, err := init.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	p.name, p.log = "postgres", filepath.Join(dir, "logs", "postgres.log")
	p.mk = func() *exec.Cmd {
		cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.data(),
			"-c", "port="+strconv.Itoa(p.port), "-c", "listen_addresses=127.0.0.1",
			"-c", "unix_socket_directories="+p.dir, "-c", "max_connections=300",
			"-c", "shared_buffers=64MB", "-c", "fsync=off", "-c", "log_min_messages=warning")
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		return cmd
	}
	return p, nil
}

func (p *privatePG) data() string { return filepath.Join(p.dir, "data") }

func (p *privatePG) url(db string) string {
	return fmt.Sprintf("postgres://root@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

func (p *privatePG) waitReady(ctx context.Context, limit time.Duration) error {
	return poll(ctx, limit, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, p.url("postgres"))
		if err != nil {
			return err
		}
		return c.Close(cctx)
	})
}

func (p *privatePG) createDB(ctx context.Context) error {
	c, err := pgx.Connect(ctx, p.url("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "CREATE DATABASE chat")
	return err
}

// stopFast is `pg_ctl stop -m fast`: SIGINT to the postmaster, which aborts
// open transactions, disconnects clients and shuts down cleanly.
func (p *privatePG) stopFast() { p.stop(syscall.SIGINT, 60*time.Second) }

// ------------------------------------------------------------------- Redis

type privateRedis struct {
	proc
	port int
}

func newRedis(dir string) (*privateRedis, error) {
	port, err := testenv.PickPort()
	if err != nil {
		return nil, err
	}
	rdir := filepath.Join(dir, "redis")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return nil, err
	}
	r := &privateRedis{port: port}
	r.name, r.log = "redis", filepath.Join(dir, "logs", "redis.log")
	// No persistence: a restart loses every key, which Parley must survive
	// (Redis is rebuildable).
	r.mk = func() *exec.Cmd {
		return exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", rdir, "--daemonize", "no", "--protected-mode", "no")
	}
	return r, nil
}

func (r *privateRedis) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *privateRedis) waitReady(ctx context.Context, limit time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.port), MaxRetries: -1})
	defer c.Close()
	return poll(ctx, limit, func() error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return c.Ping(cctx).Err()
	})
}

// ------------------------------------------------------------------- Kafka

type privateKafka struct {
	proc
	port, ctrlPort int
	props          string
}

func newKafka(dir string) (*privateKafka, error) {
	root := repoRoot()
	libs := filepath.Join(root, ".data", "kafka", "libs")
	if m, _ := filepath.Glob(filepath.Join(libs, "kafka_2.13-*.jar")); len(m) == 0 {
		return nil, fmt.Errorf("no Kafka jars in %s: run `bash infra/services/up.sh kafka` once", libs)
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("java: %w", err)
	}
	port, err := testenv.PickPort()
	if err != nil {
		return nil, err
	}
	ctrl, err := testenv.PickPort()
	if err != nil {
		return nil, err
	}
	kdir := filepath.Join(dir, "kafka")
	for _, d := range []string{kdir, filepath.Join(kdir, "data"), filepath.Join(kdir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	k := &privateKafka{port: port, ctrlPort: ctrl, props: filepath.Join(kdir, "server.properties")}
	props := fmt.Sprintf(`# private broker of the chaos test (KRaft combined mode, one node)
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:%[2]d
listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[1]d
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=%[3]s
auto.create.topics.enable=false
num.partitions=8
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=2000
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
`, port, ctrl, filepath.Join(kdir, "data"))
	if err := os.WriteFile(k.props, []byte(props), 0o644); err != nil {
		return nil, err
	}
	jvm := func(class string, heap string, args ...string) *exec.Cmd {
		a := []string{heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
			"-Dkafka.logs.dir=" + filepath.Join(kdir, "logs"),
			"-Dlog4j2.configurationFile=" + filepath.Join(root, "infra", "kafka", "log4j2.xml"),
			"-cp", filepath.Join(libs, "*"), class}
		return exec.Command(java, append(a, args...)...)
	}
	format := jvm("kafka.tools.StorageTool", "-Xmx256m", "format", "-t", kafkaClusterID(), "-c", k.props, "--ignore-formatted")
	if out, err := format.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kafka storage format: %v\n%s", err, out)
	}
	k.name, k.log = "kafka", filepath.Join(dir, "logs", "kafka.out")
	k.mk = func() *exec.Cmd { return jvm("kafka.Kafka", "-Xmx512m", k.props) }
	return k, nil
}

// kafkaClusterID is a Kafka Uuid: 16 random bytes, base64url, no padding,
// not starting with '-'.
func kafkaClusterID() string {
	for {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		id := base64.RawURLEncoding.EncodeToString(b)
		if id[0] != '-' {
			return id
		}
	}
}

func (k *privateKafka) broker() string { return fmt.Sprintf("127.0.0.1:%d", k.port) }

// waitReady waits until the broker answers metadata and, if topic is set,
// every partition of it has a leader.
func (k *privateKafka) waitReady(ctx context.Context, limit time.Duration, topic string) error {
	return poll(ctx, limit, func() error {
		cfg := sarama.NewConfig()
		cfg.Version = sarama.V4_0_0_0
		cfg.Net.DialTimeout = 2 * time.Second
		cfg.Metadata.Retry.Max = 0
		c, err := sarama.NewClient([]string{k.broker()}, cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		if topic == "" {
			return nil
		}
		if err := c.RefreshMetadata(topic); err != nil {
			return err
		}
		parts, err := c.Partitions(topic)
		if err != nil {
			return err
		}
		for _, p := range parts {
			if _, err := c.Leader(topic, p); err != nil {
				return fmt.Errorf("partition %d: %w", p, err)
			}
		}
		return nil
	})
}

// ------------------------------------------------------------------- chatd

type node struct {
	proc
	roles string
	port  int
}

func (n *node) base() string { return fmt.Sprintf("http://127.0.0.1:%d", n.port) }
func (n *node) ws() string   { return fmt.Sprintf("ws://127.0.0.1:%d/ws", n.port) }

// waitReady polls /readyz until 200.
func (n *node) waitReady(ctx context.Context, limit time.Duration) error {
	return poll(ctx, limit, func() error {
		if !n.running() {
			return fmt.Errorf("%s is not running", n.name)
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(cctx, http.MethodGet, n.base()+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /readyz: %d", n.name, resp.StatusCode)
		}
		return nil
	})
}

// chatEnv is the environment of every Parley process of the run: the
// parent's, minus any CHAT_* (the run must not reach the shared services).
func chatEnv(extra map[string]string) []string {
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
