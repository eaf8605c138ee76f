package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// ConnectReport is the result of the connect scenario.
type ConnectReport struct {
	Target      int        `json:"target"`
	Opened      int        `json:"opened"`
	Failed      int64      `json:"failed"`
	AliveAtEnd  int        `json:"alive_at_end"`
	DialSeconds float64    `json:"dial_seconds"`
	DialRate    float64    `json:"dials_per_s"`
	HeldSeconds float64    `json:"held_seconds"`
	Nodes       []NodeMem  `json:"nodes"`
	ClientRSS   float64    `json:"client_rss_mib"`
	Processes   []ProcStat `json:"processes"`
}

// NodeMem is a node's memory before and with the connections open.
type NodeMem struct {
	Node            string  `json:"node"`
	Process         string  `json:"process"`
	Conns           int     `json:"conns"`
	RSSBeforeMiB    float64 `json:"rss_before_mib"`
	RSSAfterMiB     float64 `json:"rss_after_mib"`
	RSSPerConnKiB   float64 `json:"rss_per_conn_kib"`
	GoPerConnKiB    float64 `json:"go_heap_and_stacks_per_conn_kib"`
	GoroutinesAfter float64 `json:"goroutines_after"`
}

var memGauges = []string{"go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines"}

// connectScenario opens --conns idle connections spread over the nodes and
// source addresses, holds them, and reports server memory per connection.
func connectScenario(ctx context.Context, cfg *config) error {
	autoSrcIPs(cfg, cfg.conns)
	dialURLs := make([]string, len(cfg.nodes))
	for i, n := range cfg.nodes {
		dialURLs[i] = dialURL(n, cfg.proto)
	}
	servers := serverProcs(cfg)
	byNode := make([]*proc, len(cfg.nodes))
	for i, n := range cfg.nodes {
		u, _ := url.Parse(n)
		for _, p := range servers {
			if p.addr != "" && strings.HasSuffix(p.addr, ":"+u.Port()) {
				byNode[i] = p
			}
		}
	}
	before := make([]procSample, len(cfg.nodes))
	gBefore := make([]map[string]float64, len(cfg.nodes))
	for i, n := range cfg.nodes {
		if byNode[i] != nil {
			before[i] = byNode[i].sample()
		}
		gBefore[i] = nodeMetrics(ctx, metricsBase(byNode[i], n), memGauges...)
	}
	r := newRun(cfg, dialURLs, 0)
	fmt.Fprintf(os.Stderr, "connect: %d connections over %d node(s) from %d source address(es)\n", cfg.conns, len(cfg.nodes), cfg.srcIPs)
	w := watchProcs(append(servers, &proc{Name: "chatbench", pids: []int{os.Getpid()}}))
	t0 := time.Now()
	defer r.closeAll()
	if err := r.connectAll(ctx, cfg.conns, 1024); err != nil {
		return err
	}
	dialS := time.Since(t0).Seconds()
	opened := 0
	perNode := make([]int, len(cfg.nodes))
	for _, c := range r.conns {
		if c != nil {
			opened++
			perNode[c.node]++
		}
	}
	select {
	case <-time.After(cfg.settle):
	case <-ctx.Done():
	}
	rep := &ConnectReport{Target: cfg.conns, Opened: opened, Failed: r.failed.Load(), DialSeconds: dialS,
		DialRate: float64(opened) / dialS}
	for i, n := range cfg.nodes {
		nm := NodeMem{Node: n, Conns: perNode[i]}
		g := nodeMetrics(ctx, metricsBase(byNode[i], n), memGauges...)
		if byNode[i] != nil {
			after := byNode[i].sample()
			nm.Process = byNode[i].Name
			nm.RSSBeforeMiB, nm.RSSAfterMiB = mib(before[i].rss), mib(after.rss)
			if perNode[i] > 0 {
				nm.RSSPerConnKiB = float64(after.rss-before[i].rss) / 1024 / float64(perNode[i])
			}
		}
		if perNode[i] > 0 && len(g) == len(memGauges) && len(gBefore[i]) == len(memGauges) {
			d := g[memGauges[0]] + g[memGauges[1]] - gBefore[i][memGauges[0]] - gBefore[i][memGauges[1]]
			nm.GoPerConnKiB = d / 1024 / float64(perNode[i])
		}
		nm.GoroutinesAfter = g["go_goroutines"]
		rep.Nodes = append(rep.Nodes, nm)
	}
	stop := progressTicker("hold", func() string {
		alive := 0
		for _, c := range r.conns {
			if c != nil && c.alive() {
				alive++
			}
		}
		return fmt.Sprintf("%d/%d connections alive", alive, opened)
	})
	select {
	case <-time.After(cfg.hold):
	case <-ctx.Done():
	}
	stop()
	rep.HeldSeconds = cfg.hold.Seconds()
	for _, c := range r.conns {
		if c != nil && c.alive() {
			rep.AliveAtEnd++
		}
	}
	rep.Processes = w.finish()
	rep.ClientRSS = rep.Processes[len(rep.Processes)-1].RSSMiB
	out := &Report{Scenario: "connect", Label: cfg.label, System: "parley", Proto: cfg.proto, Nodes: cfg.nodes,
		StartedAt: t0.UTC(), Host: hostInfo(), Users: cfg.conns, Connect: rep, Errors: r.errorsCopy()}
	return finish(cfg, out)
}

func printConnect(c *ConnectReport) {
	fmt.Printf("connections: target %d, opened %d, failed %d, alive after %.0f s hold: %d; dialled in %.1f s (%.0f/s)\n",
		c.Target, c.Opened, c.Failed, c.HeldSeconds, c.AliveAtEnd, c.DialSeconds, c.DialRate)
	fmt.Printf("%-28s %-12s %7s %11s %11s %14s %16s %11s\n", "node", "process", "conns", "rss before", "rss after",
		"rss/conn KiB", "go heap+stk/conn", "goroutines")
	for _, n := range c.Nodes {
		fmt.Printf("%-28s %-12s %7d %10.1fM %10.1fM %14.2f %16.2f %11.0f\n", n.Node, n.Process, n.Conns, n.RSSBeforeMiB,
			n.RSSAfterMiB, n.RSSPerConnKiB, n.GoPerConnKiB, n.GoroutinesAfter)
	}
	fmt.Printf("chatbench's own RSS: %.1f MiB\n", c.ClientRSS)
	fmt.Printf("%-22s %8s %10s %10s\n", "process", "cpu %", "rss MiB", "max MiB")
	for _, p := range c.Processes {
		fmt.Printf("%-22s %8.1f %10.1f %10.1f\n", p.Name, p.CPUPct, p.RSSMiB, p.MaxRSS)
	}
}

// metricsBase is where node n serves /metrics: its ops listener when the
// process was found with one, else (builds before it) its HTTP address.
func metricsBase(p *proc, n string) string {
	if p != nil && p.ops != "" && p.ops != "off" {
		return "http://" + p.ops
	}
	return httpBase(n)
}
