package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Report is the JSON file a run writes (and the table it prints).
type Report struct {
	Scenario      string           `json:"scenario"`
	Label         string           `json:"label,omitempty"`
	System        string           `json:"system"`
	Proto         string           `json:"proto"`
	Nodes         []string         `json:"nodes"`
	StartedAt     time.Time        `json:"started_at"`
	Host          HostInfo         `json:"host"`
	Users         int              `json:"users"`
	Conversations int              `json:"conversations"`
	Members       int              `json:"members_per_conversation"`
	TargetRate    float64          `json:"target_rate"`
	MeasuredS     float64          `json:"measured_s"`
	Sent          int64            `json:"sent"`
	Acked         int64            `json:"acked"`
	Failed        int64            `json:"failed"`
	Skipped       int64            `json:"skipped"`
	Delivered     int64            `json:"delivered"`
	SendRate      float64          `json:"send_rate"`
	AckRate       float64          `json:"ack_rate"`
	DeliveryRate  float64          `json:"delivery_rate"`
	Ack           Percentiles      `json:"send_to_ack"`
	Delivery      Percentiles      `json:"send_to_delivery"`
	CrossNode     Percentiles      `json:"send_to_delivery_cross_node"`
	Errors        map[string]int64 `json:"errors"`
	Check         Check            `json:"check"`
	Servers       []ProcStat       `json:"servers"`
	Services      []ProcStat       `json:"services,omitempty"`
	Client        ProcStat         `json:"client"`
	Steps         []StepReport     `json:"steps,omitempty"`
	BestRate      float64          `json:"best_rate_under_bound,omitempty"`
	Connect       *ConnectReport   `json:"connect,omitempty"`
	Churn         *ChurnReport     `json:"churn,omitempty"`
	// WorkMsgs is the messages acked while processes were watched (after
	// the warmup, through the drain): CPU per message is cpu_s / work_msgs,
	// a figure a noisy shared machine disturbs less than latency.
	WorkMsgs int64          `json:"work_msgs"`
	Compare  *CompareReport `json:"compare,omitempty"`
	// RedisCommands: what the measured window cost the Redis at
	// --redis-stats, per acked message (fanout and dm scenarios).
	RedisCommands []RedisCommand `json:"redis_commands,omitempty"`
}

// HostInfo names the machine a figure came from.
type HostInfo struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	MemGiB   int    `json:"mem_gib"`
	Kernel   string `json:"kernel"`
	GoVer    string `json:"go"`
}

func hostInfo() HostInfo {
	h := HostInfo{CPUs: runtime.NumCPU(), GoVer: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
				h.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		h.MemGiB = (kb + 512*1024) / (1024 * 1024)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

func runScenario(ctx context.Context, cfg *config) error {
	switch cfg.scenario {
	case "connect":
		return connectScenario(ctx, cfg)
	case "churn":
		return churnScenario(ctx, cfg)
	case "compare":
		return compareScenario(ctx, cfg)
	}
	rep, err := traffic(ctx, cfg, cfg.nodes, cfg.proto, cfg.jwtSecret, "parley", serverProcs(cfg))
	if err != nil {
		return err
	}
	return finish(cfg, rep)
}

func finish(cfg *config, rep *Report) error {
	printReport(rep)
	return writeJSON(cfg, rep)
}

func serverProcs(cfg *config) []*proc {
	if cfg.serverPids != "" {
		p, err := parsePids(cfg.serverPids)
		if err == nil {
			return p
		}
		fmt.Fprintln(os.Stderr, "warning:", err)
	}
	return discoverServers(cfg.serverMatch)
}

func serviceProcs(cfg *config) []*proc {
	if !cfg.services {
		return nil
	}
	// The shared services of infra/services (other engineers' private
	// instances are left out; their load still shows in "machine").
	return []*proc{{Name: "redis :6379", comm: "redis-server", match: ":6379"},
		{Name: "kafka :9092", comm: "java", match: ".data/kafka/server.properties"},
		{Name: "postgres (all backends)", comm: "postgres", match: ".data/postgres/data", children: true},
		{Name: "machine (all CPUs)", machine: true}}
}

// groupsFor lays out the conversations of a scenario: member lists of user
// indexes. Consecutive users sit on alternating nodes, so every group spans
// the nodes and most deliveries cross nodes.
func groupsFor(cfg *config) (kind string, groups [][]int, users int) {
	if cfg.scenario == "dm" {
		for p := range cfg.pairs {
			groups = append(groups, []int{2 * p, 2*p + 1})
		}
		return "direct", groups, 2 * cfg.pairs
	}
	for g := range cfg.groups {
		var m []int
		for k := range cfg.members {
			m = append(m, g*cfg.members+k)
		}
		groups = append(groups, m)
	}
	return "group", groups, cfg.groups * cfg.members
}

func autoSrcIPs(cfg *config, users int) {
	if cfg.srcIPs == 0 {
		cfg.srcIPs = (users + 19999) / 20000
	}
}

// traffic runs fanout, dm or ramp against one system.
func traffic(ctx context.Context, cfg *config, nodes []string, proto, secret, system string, servers []*proc) (*Report, error) {
	kind, groups, users := groupsFor(cfg)
	autoSrcIPs(cfg, users)
	capacity := int(cfg.rate*(cfg.duration+cfg.warmup).Seconds()*1.05) + 1000
	var rates []float64
	if cfg.scenario == "ramp" {
		capacity = 1000
		for r := cfg.startRate; r <= cfg.maxRate*1.0001; r *= cfg.factor {
			rates = append(rates, r)
			capacity += int(r*cfg.step.Seconds()*1.05) + 100
		}
	}
	capacity = min(capacity, cfg.maxMessages)
	dialURLs := make([]string, len(nodes))
	for i, n := range nodes {
		dialURLs[i] = dialURL(n, proto)
	}
	c2 := *cfg
	c2.nodes, c2.jwtSecret, c2.proto = nodes, secret, proto
	r := newRun(&c2, dialURLs, capacity)
	rep := &Report{Scenario: cfg.scenario, Label: cfg.label, System: system, Proto: proto, Nodes: nodes,
		StartedAt: time.Now().UTC(), Host: hostInfo(), Users: users, Conversations: len(groups), Members: len(groups[0]),
		TargetRate: cfg.rate}
	fmt.Fprintf(os.Stderr, "%s: %s over %s, %d users, %d %s conversations, run id %s\n", system, cfg.scenario, proto,
		users, len(groups), kind, r.id)
	defer r.closeAll()
	if err := r.connectAll(ctx, users, 4096); err != nil {
		return nil, err
	}
	r.release(ctx)
	if err := r.createConversations(ctx, kind, groups); err != nil {
		return nil, err
	}
	procs := append(servers, serviceProcs(cfg)...)
	self := &proc{Name: "chatbench", pids: []int{os.Getpid()}}
	procs = append(procs, self)
	if cfg.scenario == "ramp" {
		rep.TargetRate = 0 // per step
		rampSteps(ctx, r, rep, rates, procs)
	} else {
		steady(ctx, r, rep, procs)
	}
	fillTotals(r, rep)
	stats := rep.Servers
	rep.Servers, rep.Services = nil, nil
	for i, s := range stats {
		switch {
		case i < len(servers):
			rep.Servers = append(rep.Servers, s)
		case i == len(stats)-1:
			rep.Client = s
		default:
			rep.Services = append(rep.Services, s)
		}
	}
	return rep, nil
}

func steady(ctx context.Context, r *run, rep *Report, procs []*proc) {
	stop := r.progress(rep.System)
	// Processes are measured over the measured window only.
	var w *procWatch
	var rw *redisWatch
	var ackedAtWatch int64
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	started := make(chan struct{})
	go func() {
		select {
		case <-time.After(r.cfg.warmup):
		case <-wctx.Done():
		}
		w = watchProcs(procs)
		rw = watchRedis(ctx, r.cfg.redisStats)
		ackedAtWatch = r.acked.Load()
		close(started)
	}()
	t0 := time.Now()
	r.loadPhase(ctx, r.cfg.rate, r.cfg.warmup+r.cfg.duration, 0, r.cfg.warmup)
	<-started
	rep.MeasuredS = time.Since(t0).Seconds() - r.cfg.warmup.Seconds()
	r.drain(ctx, r.cfg.drainWait)
	rep.Servers = w.finish()
	rep.WorkMsgs = r.acked.Load() - ackedAtWatch
	rep.RedisCommands = rw.finish(ctx, rep.WorkMsgs)
	stop()
}

// fillTotals copies counters, histograms and the loss check into rep.
func fillTotals(r *run, rep *Report) {
	var mSent, mDeliv int64
	n := min(r.next.Load(), int64(len(r.msgs)))
	for i := range n {
		if r.msgs[i].measured {
			mSent++
			mDeliv += int64(r.msgs[i].delivered.Load())
		}
	}
	rep.Sent, rep.Acked, rep.Failed, rep.Skipped = r.sent.Load(), r.acked.Load(), r.failed.Load(), r.skipped.Load()
	rep.Delivered = r.delivered.Load()
	ackH := r.ack.snapshot(false)
	if rep.MeasuredS > 0 {
		rep.SendRate = float64(mSent) / rep.MeasuredS
		rep.AckRate = float64(ackH.TotalCount()) / rep.MeasuredS
		rep.DeliveryRate = float64(mDeliv) / rep.MeasuredS
	}
	rep.Ack = summarize(ackH)
	rep.Delivery = summarize(r.del.snapshot(false))
	rep.CrossNode = summarize(r.cross.snapshot(false))
	r.emu.Lock()
	rep.Errors = maps.Clone(r.errors)
	r.emu.Unlock()
	rep.Check = r.check()
}

// StepReport is one ramp step.
type StepReport struct {
	TargetRate   float64     `json:"target_rate"`
	SendRate     float64     `json:"send_rate"`
	AckRate      float64     `json:"ack_rate"`
	DeliveryRate float64     `json:"delivery_rate"`
	Delivery     Percentiles `json:"send_to_delivery"`
	Ack          Percentiles `json:"send_to_ack"`
	Failed       int64       `json:"failed"`
	Skipped      int64       `json:"skipped"`
	Lost         int64       `json:"lost_so_far"`
	Servers      []ProcStat  `json:"processes"`
	Pass         bool        `json:"pass"`
	Why          string      `json:"why,omitempty"`
}

// rampSteps raises the rate step by step; between steps it lets the system
// drain so a backlog of one step does not count against the next. It stops
// at the first step whose p99 passes the bound, that cannot reach 90 % of
// its target rate, or that fails sends.
func rampSteps(ctx context.Context, r *run, rep *Report, rates []float64, procs []*proc) {
	for range rates {
		r.steps = append(r.steps, newShardedHist())
	}
	t0 := time.Now()
	retried := false
	for i := 0; i < len(rates); i++ {
		rate := rates[i]
		if ctx.Err() != nil {
			break
		}
		r.steps[i].snapshot(true) // a retried step starts empty
		s0, f0, k0 := r.sent.Load(), r.failed.Load(), r.skipped.Load()
		ack0 := r.ack.snapshot(false).TotalCount()
		stop := r.progress(fmt.Sprintf("step %d %.0f/s", i+1, rate))
		w := watchProcs(procs)
		st := time.Now()
		// The first second of each step is not measured (connections warm).
		r.loadPhase(ctx, rate, r.cfg.step, i, min(time.Second, r.cfg.step/4))
		el := time.Since(st).Seconds()
		stats := w.finish()
		r.drain(ctx, r.cfg.drainWait)
		stop()
		var mSent, mDeliv int64
		n := min(r.next.Load(), int64(len(r.msgs)))
		for j := range n {
			if m := &r.msgs[j]; int(m.step) == i && m.measured && m.sentNs.Load() >= st.UnixNano() {
				mSent++
				mDeliv += int64(m.delivered.Load())
			}
		}
		measured := el - min(1, r.cfg.step.Seconds()/4)
		sr := StepReport{TargetRate: rate, SendRate: float64(mSent) / measured, DeliveryRate: float64(mDeliv) / measured,
			AckRate:  float64(r.ack.snapshot(false).TotalCount()-ack0) / measured,
			Delivery: summarize(r.steps[i].snapshot(false)), Failed: r.failed.Load() - f0, Skipped: r.skipped.Load() - k0,
			Servers: stats, Lost: r.check().Lost}
		sent := r.sent.Load() - s0
		switch {
		case sr.Delivery.P99 > float64(r.cfg.p99Bound.Microseconds())/1000:
			sr.Why = fmt.Sprintf("p99 %.1f ms > %s", sr.Delivery.P99, r.cfg.p99Bound)
		case sr.SendRate < 0.9*rate:
			sr.Why = fmt.Sprintf("sent only %.0f/s of %.0f/s", sr.SendRate, rate)
		case sr.Failed > sent/100:
			sr.Why = fmt.Sprintf("%d of %d sends failed", sr.Failed, sent)
		case sr.Lost > 0:
			sr.Why = fmt.Sprintf("%d deliveries lost", sr.Lost)
		default:
			sr.Pass = true
			rep.BestRate = rate
		}
		rep.Steps = append(rep.Steps, sr)
		fmt.Fprintf(os.Stderr, "step %d: target %.0f/s sent %.0f/s delivered %.0f/s p50 %.1f ms p99 %.1f ms %s\n",
			i+1, rate, sr.SendRate, sr.DeliveryRate, sr.Delivery.P50, sr.Delivery.P99, passWord(sr))
		if !sr.Pass {
			// A shared machine has spikes: a failing step gets one more try.
			if !retried && r.cfg.retries > 0 {
				retried = true
				sr.Why += " (retrying once)"
				rep.Steps[len(rep.Steps)-1] = sr
				i--
				continue
			}
			break
		}
		retried = false
	}
	rep.MeasuredS = time.Since(t0).Seconds()
	if len(rep.Steps) > 0 {
		rep.Servers = rep.Steps[len(rep.Steps)-1].Servers
	}
}

func passWord(s StepReport) string {
	if s.Pass {
		return "PASS"
	}
	return "STOP: " + s.Why
}

func writeJSON(cfg *config, v any) error {
	path := cfg.out
	if path == "" {
		path = filepath.Join("bench", "results", fmt.Sprintf("%s-%s.json", cfg.scenario, time.Now().Format("20060102-150405")))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	fmt.Println("report:", path)
	return nil
}

func printReport(r *Report) {
	fmt.Printf("\n== %s %s (%s) on %d CPUs (%s) ==\n", r.System, r.Scenario, r.Proto, r.Host.CPUs, r.Host.CPUModel)
	if r.Churn != nil {
		printChurn(r.Churn)
	} else if r.Connect != nil {
		printConnect(r.Connect)
	} else {
		target := fmt.Sprintf("%.0f msg/s", r.TargetRate)
		if r.TargetRate == 0 {
			target = "per step"
		}
		fmt.Printf("users %d, conversations %d x %d members, target %s, measured %.1f s\n",
			r.Users, r.Conversations, r.Members, target, r.MeasuredS)
		fmt.Printf("sent %d  acked %d  failed %d  skipped %d  delivered %d\n", r.Sent, r.Acked, r.Failed, r.Skipped, r.Delivered)
		fmt.Printf("throughput: send %.0f/s  ack %.0f/s  delivery %.0f/s\n", r.SendRate, r.AckRate, r.DeliveryRate)
		fmt.Printf("%-26s %8s %8s %8s %8s %8s %8s %10s\n", "latency (ms)", "p50", "p90", "p99", "p99.9", "max", "mean", "count")
		for _, row := range []struct {
			n string
			p Percentiles
		}{{"send->ack", r.Ack}, {"send->delivery", r.Delivery}, {"send->delivery cross-node", r.CrossNode}} {
			fmt.Printf("%-26s %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %10d\n", row.n, row.p.P50, row.p.P90, row.p.P99, row.p.P999,
				row.p.Max, row.p.Mean, row.p.Count)
		}
		c := r.Check
		fmt.Printf("check: acked %d, expected deliveries %d, delivered %d, undelivered at drain end %d, duplicated %d, out of order %d, "+
			"no reply %d, disconnects %d, unchecked %d\n", c.Acked, c.ExpectedDeliv, c.Delivered, c.Lost, c.Duplicated,
			c.OutOfOrder, c.NoReply, c.Disconnects, c.UncheckedMessages)
	}
	if len(r.Errors) > 0 {
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Print("errors:")
		for _, k := range keys {
			fmt.Printf("  %s=%d", k, r.Errors[k])
		}
		fmt.Println()
	}
	if len(r.Steps) > 0 {
		fmt.Printf("%-6s %9s %9s %11s %8s %8s %8s  %s\n", "step", "target/s", "sent/s", "delivered/s", "p50 ms", "p99 ms", "max ms", "verdict")
		for i, s := range r.Steps {
			fmt.Printf("%-6d %9.0f %9.0f %11.0f %8.2f %8.2f %8.2f  %s\n", i+1, s.TargetRate, s.SendRate, s.DeliveryRate,
				s.Delivery.P50, s.Delivery.P99, s.Delivery.Max, passWord(s))
		}
		fmt.Printf("highest rate with p99 delivery under the bound: %.0f msg/s\n", r.BestRate)
	}
	if r.Churn == nil {
		printProcs(r)
		printRedisCommands(r.RedisCommands)
	}
}

func printProcs(r *Report) {
	rows := append(append([]ProcStat{}, r.Servers...), r.Services...)
	if r.Client.Name != "" {
		rows = append(rows, r.Client)
	}
	if len(rows) == 0 {
		return
	}
	fmt.Printf("%-24s %8s %10s %10s %12s\n", "process", "cpu %", "rss MiB", "max MiB", "cpu µs/msg")
	for _, p := range rows {
		per := 0.0
		if r.WorkMsgs > 0 {
			per = p.CPUSec * 1e6 / float64(r.WorkMsgs)
		}
		fmt.Printf("%-24s %8.1f %10.1f %10.1f %12.0f\n", p.Name, p.CPUPct, p.RSSMiB, p.MaxRSS, per)
	}
}

// nodeMetrics reads a few gauges from a node's /metrics.
func nodeMetrics(ctx context.Context, base string, names ...string) map[string]float64 {
	out := map[string]float64{}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, n := range names {
			if v, ok := strings.CutPrefix(line, n+" "); ok {
				out[n], _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
	}
	return out
}
