package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// proc is a watched process group: one server node (one pid) or a shared
// service (all processes of one name, e.g. every postgres backend).
type proc struct {
	Name string
	addr string // CHAT_HTTP_ADDR of a discovered chatd
	ops  string // and its CHAT_OPS_ADDR (/metrics), if set
	pids []int
	comm string // re-discovered at each sample when set
	// with comm: only processes whose command line contains match, and
	// (children) their child processes too (postgres backends).
	match    string
	children bool
	machine  bool // the whole machine, from /proc/stat
}

// ProcStat is what the report shows of a process group.
type ProcStat struct {
	Name    string  `json:"name"`
	Pids    []int   `json:"pids"`
	CPUPct  float64 `json:"cpu_pct"` // of one core, over the measured phase
	CPUSec  float64 `json:"cpu_s"`
	RSSMiB  float64 `json:"rss_mib"` // at the end
	MaxRSS  float64 `json:"max_rss_mib"`
	StartMB float64 `json:"rss_start_mib"`
}

type procSample struct {
	ticks int64
	rss   int64         // bytes
	per   map[int]int64 // ticks per pid (groups whose members come and go)
}

// cpuSince is the CPU ticks spent since first by the processes alive now: a
// process that started in between counts whole, one that exited is lost.
func (s procSample) cpuSince(first procSample) int64 {
	if s.per == nil {
		return s.ticks - first.ticks
	}
	var t int64
	for pid, v := range s.per {
		t += v - first.per[pid]
	}
	return t
}

// readProc reads utime+stime and VmRSS of one pid.
func readProc(pid int) (procSample, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, false
	}
	// Fields after the parenthesised comm, which may contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procSample{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22 {
		return procSample{}, false
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	rssPages, _ := strconv.ParseInt(f[21], 10, 64)
	return procSample{ticks: ut + st, rss: rssPages * int64(os.Getpagesize())}, true
}

func (p *proc) sample() procSample {
	if p.machine {
		return machineSample()
	}
	if p.comm != "" {
		p.pids = pidsByComm(p.comm, p.match, p.children)
	}
	var s procSample
	if p.comm != "" {
		s.per = map[int]int64{}
	}
	for _, pid := range p.pids {
		if x, ok := readProc(pid); ok {
			s.ticks += x.ticks
			s.rss += x.rss
			if s.per != nil {
				s.per[pid] = x.ticks
			}
		}
	}
	return s
}

// pidsByComm lists processes named comm whose command line contains match
// (any when match is ""), and with children their direct children.
func pidsByComm(comm, match string, children bool) []int {
	var out []int
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(b)) != comm {
			continue
		}
		if children {
			if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
				if i := bytes.LastIndexByte(st, ')'); i > 0 {
					if f := strings.Fields(string(st[i+1:])); len(f) > 1 {
						parent[pid], _ = strconv.Atoi(f[1])
					}
				}
			}
		}
		if match != "" {
			cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if !strings.Contains(strings.ReplaceAll(string(cl), "\x00", " "), match) {
				continue
			}
		}
		out = append(out, pid)
	}
	if children {
		roots := map[int]bool{}
		for _, p := range out {
			roots[p] = true
		}
		for pid, pp := range parent {
			if roots[pp] && !roots[pid] {
				out = append(out, pid)
			}
		}
	}
	return out
}

// machineSample is the busy time of every CPU (all but idle and iowait).
func machineSample() procSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return procSample{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest is inside user
			busy += n
		}
	}
	return procSample{ticks: busy}
}

// discoverServers finds chatd processes with an environment variable that
// starts with match (e.g. BENCH_RUN=, set by bench/run.sh), named by their
// CHAT_NODE_ID.
func discoverServers(match string) []*proc {
	var out []*proc
	for _, pid := range pidsByComm("chatd", "", false) {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		vars := strings.Split(string(env), "\x00")
		found, name, addr, ops := false, strconv.Itoa(pid), "", ""
		for _, v := range vars {
			if a, ok := strings.CutPrefix(v, "CHAT_HTTP_ADDR="); ok {
				addr = a
			}
			if a, ok := strings.CutPrefix(v, "CHAT_OPS_ADDR="); ok {
				ops = a
			}
			if strings.HasPrefix(v, match) {
				found = true
			}
			if n, ok := strings.CutPrefix(v, "CHAT_NODE_ID="); ok {
				name = n
			}
		}
		if found {
			out = append(out, &proc{Name: name, addr: addr, ops: ops, pids: []int{pid}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// parsePids reads "name=pid,name=pid".
func parsePids(s string) ([]*proc, error) {
	var out []*proc
	for _, kv := range strings.Split(s, ",") {
		if kv == "" {
			continue
		}
		name, v, ok := strings.Cut(kv, "=")
		if !ok {
			name, v = kv, kv
		}
		pid, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("--server-pids: %q is not name=pid", kv)
		}
		out = append(out, &proc{Name: name, pids: []int{pid}})
	}
	return out, nil
}

// procWatch samples process groups once a second between start and stop.
type procWatch struct {
	procs []*proc
	first []procSample
	maxRS []int64
	t0    time.Time
	stop  chan struct{}
	done  chan struct{}
}

func watchProcs(procs []*proc) *procWatch {
	w := &procWatch{procs: procs, t0: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	for _, p := range procs {
		s := p.sample()
		w.first = append(w.first, s)
		w.maxRS = append(w.maxRS, s.rss)
	}
	go func() {
		defer close(w.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				for i, p := range w.procs {
					w.maxRS[i] = max(w.maxRS[i], p.sample().rss)
				}
			}
		}
	}()
	return w
}

// finish stops sampling and reports CPU over the watched interval.
func (w *procWatch) finish() []ProcStat {
	close(w.stop)
	<-w.done
	el := time.Since(w.t0).Seconds()
	var out []ProcStat
	for i, p := range w.procs {
		s := p.sample()
		ticks := s.cpuSince(w.first[i])
		cpu := float64(ticks) / clockTicks / el * 100
		out = append(out, ProcStat{Name: p.Name, Pids: p.pids, CPUPct: cpu, CPUSec: float64(ticks) / clockTicks, RSSMiB: mib(s.rss),
			MaxRSS: mib(max(w.maxRS[i], s.rss)), StartMB: mib(w.first[i].rss)})
	}
	return out
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
