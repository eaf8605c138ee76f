package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ChurnReport is the result of the churn scenario: users connecting and
// disconnecting at --rate each per second while their groups' other halves
// stay connected and receive their presence.
type ChurnReport struct {
	Rate        float64            `json:"target_connects_per_s"`
	Churners    int                `json:"churners"`
	Observers   int                `json:"observers"`
	Connects    int64              `json:"connects"`
	Disconnects int64              `json:"disconnects"`
	Failed      int64              `json:"failed"`
	MeasuredS   float64            `json:"measured_s"`
	Presence    map[string]float64 `json:"presence_counters"` // summed over the nodes, during the run
	Processes   []ProcStat         `json:"processes"`
}

var presenceCounters = []string{
	`parley_presence_announced_total{status="online"}`,
	`parley_presence_announced_total{status="offline"}`,
	"parley_presence_dropped_total",
}

// churnScenario connects every user of --groups groups of --members, then
// for --duration closes and reopens the connections of the first half of
// each group (the churners) so that --rate connections open and --rate
// close each second; each churner is away and back for churners/rate
// seconds at a time. It reports CPU per connect+disconnect of every
// server process, and the presence announcements the nodes made.
func churnScenario(ctx context.Context, cfg *config) error {
	_, groups, users := groupsFor(cfg)
	autoSrcIPs(cfg, users)
	dialURLs := make([]string, len(cfg.nodes))
	for i, n := range cfg.nodes {
		dialURLs[i] = dialURL(n, cfg.proto)
	}
	r := newRun(cfg, dialURLs, 0)
	defer r.closeAll()
	fmt.Fprintf(os.Stderr, "churn: %d users in %d groups of %d, run id %s\n", users, len(groups), cfg.members, r.id)
	if err := r.connectAll(ctx, users, 1024); err != nil {
		return err
	}
	r.release(ctx)
	if err := r.createConversations(ctx, "group", groups); err != nil {
		return err
	}
	var churners []int
	for _, g := range groups {
		churners = append(churners, g[:len(g)/2]...)
	}
	rep := &ChurnReport{Rate: cfg.rate, Churners: len(churners), Observers: users - len(churners)}
	servers := serverProcs(cfg)
	before := presenceTotals(ctx, cfg, servers)
	w := watchProcs(append(append(servers, serviceProcs(cfg)...), &proc{Name: "chatbench", pids: []int{os.Getpid()}}))
	t0 := time.Now()
	r.churn(ctx, churners, rep)
	rep.MeasuredS = time.Since(t0).Seconds()
	rep.Processes = w.finish()
	after := presenceTotals(ctx, cfg, servers)
	rep.Presence = map[string]float64{}
	for _, n := range presenceCounters {
		rep.Presence[n] = after[n] - before[n]
	}
	out := &Report{Scenario: "churn", Label: cfg.label, System: "parley", Proto: cfg.proto, Nodes: cfg.nodes,
		StartedAt: t0.UTC(), Host: hostInfo(), Users: users, Conversations: len(groups), Members: cfg.members,
		Churn: rep, Errors: r.errorsCopy()}
	return finish(cfg, out)
}

// churn toggles churners round-robin at 2 × rate a second (a close, then
// later a dial), for cfg.duration, at most 256 toggles in flight.
func (r *run) churn(ctx context.Context, churners []int, rep *ChurnReport) {
	var connects, disconnects, failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	busy := make([]atomic.Bool, len(r.conns)) // a toggle still in flight is skipped
	stop := progressTicker("churn", func() string {
		return fmt.Sprintf("%d connects, %d disconnects, %d failed", connects.Load(), disconnects.Load(), failed.Load())
	})
	start := time.Now()
	done := 0
	for next := 0; ctx.Err() == nil; {
		el := time.Since(start)
		if el >= r.cfg.duration {
			break
		}
		due := int(el.Seconds() * 2 * r.cfg.rate)
		for ; done < due; done++ {
			i := churners[next]
			next = (next + 1) % len(churners)
			if !busy[i].CompareAndSwap(false, true) {
				continue
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem; busy[i].Store(false) }()
				if c := r.conns[i]; c != nil {
					c.close()
					r.conns[i] = nil
					disconnects.Add(1)
					return
				}
				if err := r.redial(ctx, i); err != nil {
					failed.Add(1)
					r.addError("dial: " + shortErr(err))
					return
				}
				connects.Add(1)
			}()
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	stop()
	rep.Connects, rep.Disconnects, rep.Failed = connects.Load(), disconnects.Load(), failed.Load()
}

// redial opens user i's connection again and sends its first request.
func (r *run) redial(ctx context.Context, i int) error {
	tok, err := r.token(ctx, r.users[i])
	if err != nil {
		return err
	}
	node := i % len(r.nodes)
	c, err := dial(ctx, dialOpts{url: r.nodes[node], token: tok, localAddr: srcAddr(i, r.cfg.srcIPs),
		sio: r.cfg.proto == "sio", bufSize: 1024}, i, node, r)
	if err != nil {
		return err
	}
	r.conns[i] = c
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = r.call(cctx, c, "sync", map[string]any{"positions": map[string]int64{}})
	return err
}

// presenceTotals sums the presence counters over the server processes'
// /metrics.
func presenceTotals(ctx context.Context, cfg *config, servers []*proc) map[string]float64 {
	sum := map[string]float64{}
	seen := map[string]bool{}
	for _, n := range cfg.nodes {
		var p *proc
		for _, s := range servers {
			if s.addr != "" && httpBase(n) == "http://"+s.addr {
				p = s
			}
		}
		base := metricsBase(p, n)
		if seen[base] {
			continue
		}
		seen[base] = true
		for k, v := range nodeMetrics(ctx, base, presenceCounters...) {
			sum[k] += v
		}
	}
	return sum
}

func printChurn(c *ChurnReport) {
	fmt.Printf("churners %d (observers %d), target %.0f connects/s and as many disconnects, measured %.1f s\n",
		c.Churners, c.Observers, c.Rate, c.MeasuredS)
	fmt.Printf("connects %d (%.0f/s), disconnects %d, failed %d\n", c.Connects, float64(c.Connects)/c.MeasuredS, c.Disconnects, c.Failed)
	fmt.Printf("presence announced: online %.0f, offline %.0f; dropped %.0f\n", c.Presence[presenceCounters[0]],
		c.Presence[presenceCounters[1]], c.Presence[presenceCounters[2]])
	fmt.Printf("%-24s %8s %10s %10s %22s\n", "process", "cpu %", "rss MiB", "max MiB", "cpu µs/(connect+close)")
	for _, p := range c.Processes {
		per := 0.0
		if c.Connects > 0 {
			per = p.CPUSec * 1e6 / float64(c.Connects)
		}
		fmt.Printf("%-24s %8.1f %10.1f %10.1f %22.0f\n", p.Name, p.CPUPct, p.RSSMiB, p.MaxRSS, per)
	}
}
