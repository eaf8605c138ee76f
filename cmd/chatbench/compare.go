package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CompareReport holds the same Socket.IO workload against Parley and the
// peer, run one after the other in one process on the same machine.
type CompareReport struct {
	Parley *Report            `json:"parley"`
	Peer   *Report            `json:"peer"`
	Ratios map[string]float64 `json:"ratios_parley_over_peer"`
}

// compareScenario drives Parley's /socket.io/ (--nodes, http://...) and the
// Node.js socket.io + redis-adapter peer (--peer-nodes) with one workload.
func compareScenario(ctx context.Context, cfg *config) error {
	c := *cfg
	c.scenario = "fanout"
	parley, err := traffic(ctx, &c, cfg.nodes, "sio", cfg.jwtSecret, "parley", serverProcs(cfg))
	if err != nil {
		return fmt.Errorf("parley: %w", err)
	}
	printReport(parley)
	peer, err := traffic(ctx, &c, cfg.peerNodes, "sio", cfg.peerSecret, "socketio-redis-peer", peerProcs(cfg))
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	printReport(peer)
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	cr := &CompareReport{Parley: parley, Peer: peer, Ratios: map[string]float64{
		"delivery_rate": ratio(parley.DeliveryRate, peer.DeliveryRate),
		"delivery_p50":  ratio(parley.Delivery.P50, peer.Delivery.P50),
		"delivery_p99":  ratio(parley.Delivery.P99, peer.Delivery.P99),
		"ack_p99":       ratio(parley.Ack.P99, peer.Ack.P99),
		"server_cpu":    ratio(sumCPU(parley.Servers), sumCPU(peer.Servers)),
		"cpu_per_msg":   ratio(cpuPerMsg(parley, allServices), cpuPerMsg(peer, redisOnly)),
		"server_rss":    ratio(sumRSS(parley.Servers), sumRSS(peer.Servers)),
	}}
	fmt.Printf("\n== compare: same Socket.IO workload (%d groups x %d, %.0f msg/s, %s) ==\n", cfg.groups, cfg.members, cfg.rate, cfg.duration)
	fmt.Printf("%-24s %14s %14s %10s\n", "", "parley", "peer", "ratio")
	row := func(n string, a, b float64) { fmt.Printf("%-24s %14.2f %14.2f %10.2f\n", n, a, b, ratio(a, b)) }
	row("deliveries/s", parley.DeliveryRate, peer.DeliveryRate)
	row("delivery p50 ms", parley.Delivery.P50, peer.Delivery.P50)
	row("delivery p99 ms", parley.Delivery.P99, peer.Delivery.P99)
	row("ack p50 ms", parley.Ack.P50, peer.Ack.P50)
	row("ack p99 ms", parley.Ack.P99, peer.Ack.P99)
	row("undelivered at end", float64(parley.Check.Lost), float64(peer.Check.Lost))
	row("server cpu % (sum)", sumCPU(parley.Servers), sumCPU(peer.Servers))
	row("server rss MiB (sum)", sumRSS(parley.Servers), sumRSS(peer.Servers))
	row("cpu µs/acked msg, app", cpuPerMsg(parley, nil), cpuPerMsg(peer, nil))
	row("cpu µs/acked msg, all", cpuPerMsg(parley, allServices), cpuPerMsg(peer, redisOnly))
	fmt.Println("(all: parley's chatd roles + Kafka + Redis + Postgres; the peer's two Node.js processes + Redis)")
	fmt.Println("(parley acks after the message is in Kafka with acks=all; the peer acks from memory)")
	return writeJSON(cfg, &Report{Scenario: "compare", Label: cfg.label, System: "both", Proto: "sio",
		StartedAt: parley.StartedAt, Host: parley.Host, Compare: cr})
}

func sumCPU(ps []ProcStat) (s float64) {
	for _, p := range ps {
		s += p.CPUPct
	}
	return s
}

// cpuPerMsg is the CPU time per acked message of r's app processes plus
// the services keep selects (nil: none).
func cpuPerMsg(r *Report, keep func(name string) bool) float64 {
	if r.AckRate == 0 {
		return 0
	}
	pct := sumCPU(r.Servers)
	for _, s := range r.Services {
		if keep != nil && keep(s.Name) {
			pct += s.CPUPct
		}
	}
	return pct / 100 * 1e6 / r.AckRate
}

// allServices are Parley's: every service but the machine line. The peer
// uses Redis alone (the idle Kafka and Postgres are not its cost).
func allServices(name string) bool { return !strings.HasPrefix(name, "machine") }
func redisOnly(name string) bool   { return strings.HasPrefix(name, "redis") }

func sumRSS(ps []ProcStat) (s float64) {
	for _, p := range ps {
		s += p.RSSMiB
	}
	return s
}

// peerProcs reads the peer's pid files (bench/.run/peer-*.pid, written by
// bench/peers/run.sh), else every process named --peer-comm.
func peerProcs(cfg *config) []*proc {
	files, _ := filepath.Glob(filepath.Join("bench", ".run", "peer-*.pid"))
	var out []*proc
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil {
			out = append(out, &proc{Name: strings.TrimSuffix(filepath.Base(f), ".pid"), pids: []int{pid}})
		}
	}
	if len(out) == 0 && cfg.peerMatch != "" {
		out = append(out, &proc{Name: cfg.peerMatch, comm: cfg.peerMatch, match: "bench/peers"})
	}
	return out
}
