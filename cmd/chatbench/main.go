// Command chatbench drives a running Parley (or a Socket.IO peer) over real
// WebSockets from many simulated users and reports throughput, latency
// percentiles (HDR histograms), loss and order checks, and the servers' CPU
// and memory. Scenarios: fanout, dm, ramp, connect, churn, compare. It only
// targets loopback addresses. See docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type config struct {
	scenario        string
	nodes           []string
	peerNodes       []string
	proto           string
	jwtSecret       string
	peerSecret      string
	groups, members int
	pairs           int
	rate            float64
	duration        time.Duration
	warmup          time.Duration
	drainWait       time.Duration
	setupWait       time.Duration
	bodyBytes       int
	srcIPs          int
	dialConcurrency int
	workers         int
	maxInflight     int
	maxMessages     int
	out             string
	label           string
	serverMatch     string
	serverPids      string
	peerMatch       string
	services        bool
	redisStats      string
	// connect
	conns  int
	hold   time.Duration
	settle time.Duration
	// ramp
	startRate, maxRate, factor float64
	step                       time.Duration
	p99Bound                   time.Duration
	retries                    int
}

const usage = `chatbench: load generator for Parley (loopback targets only)

usage: chatbench <scenario> [flags]

scenarios:
  fanout   M group conversations of K members; a target send rate
  dm       many 1:1 (direct) conversations; a target send rate
  ramp     raise the rate step by step until p99 delivery passes a bound
  connect  open N idle connections, hold them, report server memory per connection
  churn    half of each group's users disconnect and reconnect, --rate connects (and closes) a second;
           CPU per connect+close of every server process and the presence announcements made
  compare  the same Socket.IO fanout workload against Parley (--nodes) and a peer (--peer-nodes), with ratios
  cleanup  delete a bench run's Kafka topic and Redis keys (names must start with "bench")

run "chatbench <scenario> -h" for its flags.
`

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if os.Args[1] == "cleanup" {
		if err := cleanup(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "chatbench cleanup:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1], os.Args[2:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	// A hard bound on the whole run, whatever the flags say.
	ctx, cancel2 := context.WithTimeout(ctx, 2*time.Hour)
	defer cancel2()
	if err := runScenario(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(1)
	}
}

func parseFlags(scenario string, args []string) (*config, error) {
	c := &config{scenario: scenario}
	fs := flag.NewFlagSet(scenario, flag.ContinueOnError)
	nodes := fs.String("nodes", "ws://127.0.0.1:18080/ws,ws://127.0.0.1:18081/ws", "gateway URLs, comma-separated (ws://host:port/ws for native; http://host:port for --proto sio)")
	peer := fs.String("peer-nodes", "http://127.0.0.1:18380,http://127.0.0.1:18381", "compare: Socket.IO peer URLs")
	fs.StringVar(&c.proto, "proto", "native", "native (/ws) or sio (Socket.IO at /socket.io/)")
	fs.StringVar(&c.jwtSecret, "jwt-secret", "", "mint tokens locally with this HS256 secret (else POST /api/v1/dev/token on the first node)")
	fs.StringVar(&c.peerSecret, "peer-jwt-secret", "", "compare: secret of the peer's tokens (default: --jwt-secret)")
	fs.IntVar(&c.groups, "groups", 200, "fanout/ramp/compare: group conversations")
	fs.IntVar(&c.members, "members", 10, "fanout/ramp/compare: members per group")
	fs.IntVar(&c.pairs, "pairs", 1000, "dm: direct conversations (2 users each)")
	fs.Float64Var(&c.rate, "rate", 2000, "messages sent per second")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "measured load time (max 30m)")
	fs.DurationVar(&c.warmup, "warmup", 5*time.Second, "load before measuring (latencies not recorded; loss still checked)")
	fs.DurationVar(&c.drainWait, "drain", 15*time.Second, "after the load, wait at most this long for outstanding deliveries")
	fs.DurationVar(&c.setupWait, "setup-wait", 30*time.Second, "wait at most this long for conversation.created pushes")
	fs.IntVar(&c.bodyBytes, "body-bytes", 100, "message body size")
	fs.IntVar(&c.srcIPs, "src-ips", 0, "spread client sockets over 127.0.0.2.. this many source addresses (0: auto, 1 per 20k conns)")
	fs.IntVar(&c.dialConcurrency, "dial-concurrency", 64, "parallel dials and setup requests")
	fs.IntVar(&c.workers, "workers", 4, "sending goroutines")
	fs.IntVar(&c.maxInflight, "max-inflight", 50000, "sends waiting for their ack at most; past it sends are skipped")
	fs.IntVar(&c.maxMessages, "max-messages", 4_000_000, "bound on messages in one run")
	fs.StringVar(&c.out, "out", "", "JSON report file (default bench/results/<scenario>-<time>.json)")
	fs.StringVar(&c.label, "label", "", "free text stored in the report")
	fs.StringVar(&c.serverMatch, "server-env", "BENCH_RUN=", "find chatd processes with an environment entry starting with this (bench/run.sh sets BENCH_RUN)")
	fs.StringVar(&c.serverPids, "server-pids", "", "or name=pid,... of the server processes")
	fs.StringVar(&c.peerMatch, "peer-comm", "node", "compare: process name of the peer servers (pids from bench/.run/peer-*.pid when present)")
	fs.BoolVar(&c.services, "services", true, "also report CPU/RSS of redis-server, java (Kafka) and postgres")
	fs.StringVar(&c.redisStats, "redis-stats", "127.0.0.1:6379", "Redis whose INFO commandstats to report per acked message (fanout, dm; empty: none)")
	fs.IntVar(&c.conns, "conns", 10000, "connect: connections to open")
	fs.DurationVar(&c.hold, "hold", 10*time.Second, "connect: how long to hold them open")
	fs.DurationVar(&c.settle, "settle", 3*time.Second, "connect: wait after the last dial before measuring")
	fs.Float64Var(&c.startRate, "start-rate", 1000, "ramp: first rate")
	fs.Float64Var(&c.maxRate, "max-rate", 40000, "ramp: stop after this rate")
	fs.Float64Var(&c.factor, "factor", 1.5, "ramp: rate multiplier per step")
	fs.DurationVar(&c.step, "step", 10*time.Second, "ramp: duration of a step")
	fs.DurationVar(&c.p99Bound, "p99-bound", 100*time.Millisecond, "ramp: stop when a step's p99 delivery latency passes this")
	fs.IntVar(&c.retries, "retries", 1, "ramp: a failing step is run again this many times (0 or 1) before the ramp stops")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	c.nodes = splitList(*nodes)
	c.peerNodes = splitList(*peer)
	if c.peerSecret == "" {
		c.peerSecret = c.jwtSecret
	}
	var errs []error
	switch scenario {
	case "fanout", "dm", "ramp", "connect", "compare", "churn":
	default:
		errs = append(errs, fmt.Errorf("unknown scenario %q", scenario))
	}
	if c.proto != "native" && c.proto != "sio" {
		errs = append(errs, fmt.Errorf("--proto must be native or sio"))
	}
	if len(c.nodes) == 0 {
		errs = append(errs, errors.New("--nodes is empty"))
	}
	for _, n := range append(append([]string{}, c.nodes...), c.peerNodes...) {
		if err := requireLoopback(n); err != nil {
			errs = append(errs, err)
		}
	}
	if c.duration <= 0 || c.duration > 30*time.Minute || c.hold > 30*time.Minute || c.step > 10*time.Minute {
		errs = append(errs, errors.New("--duration, --hold and --step must be positive and at most 30m (10m a step)"))
	}
	if c.rate <= 0 || c.members < 2 || c.groups < 1 || c.pairs < 1 || c.conns < 1 || c.workers < 1 || c.factor <= 1 {
		errs = append(errs, errors.New("--rate, --groups, --pairs, --conns, --workers must be positive, --members >= 2, --factor > 1"))
	}
	return c, errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// requireLoopback refuses any target that is not on this machine's
// loopback: a load test never leaves the host.
func requireLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not a URL", raw)
	}
	h := u.Hostname()
	if h == "localhost" {
		return nil
	}
	ip := net.ParseIP(h)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing non-loopback target %q: chatbench only drives servers on 127.0.0.0/8 or ::1", raw)
	}
	return nil
}

// httpBase turns ws://h:p/ws or http://h:p into http://h:p.
func httpBase(raw string) string {
	u, _ := url.Parse(raw)
	scheme := "http"
	if u.Scheme == "wss" || u.Scheme == "https" {
		scheme = "https"
	}
	return scheme + "://" + u.Host
}

// dialURL is what a connection dials for a node.
func dialURL(raw, proto string) string {
	u, _ := url.Parse(raw)
	if proto == "sio" {
		scheme := "ws"
		if u.Scheme == "https" || u.Scheme == "wss" {
			scheme = "wss"
		}
		return scheme + "://" + u.Host + "/socket.io/?EIO=4&transport=websocket"
	}
	if u.Scheme == "http" {
		u.Scheme = "ws"
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ws"
	}
	return u.String()
}
