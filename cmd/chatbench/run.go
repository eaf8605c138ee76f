package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/transport/auth"
)

// Message states.
const (
	stPending int32 = iota
	stAcked
	stFailed
)

// msgRec is one sent message; its index in run.msgs is in its
// client_msg_id and is its request id, so replies and pushes find it
// without a lookup table.
type msgRec struct {
	// sentNs is stored (atomically) after the other fields and before the
	// send; readers load it first, which makes those fields visible to them.
	sentNs    atomic.Int64
	conv      int32
	sender    int32
	state     atomic.Int32
	delivered atomic.Int32
	step      int16
	measured  bool
}

type convInfo struct {
	id      string
	members []int
}

// setupBase separates setup request ids from message ids.
const setupBase = int64(1) << 40

type setupReply struct {
	code string
	data []byte
}

// run is the state of one bench run over one system.
type run struct {
	cfg    *config
	id     string
	nodes  []string // dial URLs
	users  []string
	conns  []*benchConn
	convs  []convInfo
	convIx map[string]int32

	msgs []msgRec
	next atomic.Int64

	ack, del, cross, win *shardedHist
	steps                []*shardedHist

	sent, acked, failed, delivered, expected atomic.Int64
	dup, ooo, foreign, created, skipped      atomic.Int64
	curStep                                  atomic.Int32
	measuring                                atomic.Bool

	emu    sync.Mutex
	errors map[string]int64

	pmu     sync.Mutex
	pending map[int64]chan setupReply
	reqID   atomic.Int64
}

func newRun(cfg *config, nodes []string, capacity int) *run {
	r := &run{cfg: cfg, id: strconv.FormatInt(time.Now().UnixMilli()%1e9, 36), nodes: nodes,
		msgs: make([]msgRec, capacity), ack: newShardedHist(), del: newShardedHist(), cross: newShardedHist(),
		win: newShardedHist(), errors: map[string]int64{}, pending: map[int64]chan setupReply{}, convIx: map[string]int32{}}
	return r
}

func (r *run) addError(code string) {
	r.emu.Lock()
	r.errors[code]++
	r.emu.Unlock()
}

func (r *run) errorsCopy() map[string]int64 {
	r.emu.Lock()
	defer r.emu.Unlock()
	out := make(map[string]int64, len(r.errors))
	for k, v := range r.errors {
		out[k] = v
	}
	return out
}

// --- handler ---

func (r *run) onReply(c *benchConn, id int64, code string, data []byte) {
	if id >= setupBase {
		r.pmu.Lock()
		ch := r.pending[id]
		delete(r.pending, id)
		r.pmu.Unlock()
		if ch != nil {
			ch <- setupReply{code: code, data: data}
		}
		return
	}
	i := id - 1
	if i < 0 || i >= r.next.Load() || i >= int64(len(r.msgs)) {
		return
	}
	m := &r.msgs[i]
	sent := m.sentNs.Load()
	if sent == 0 {
		return
	}
	if code != "" {
		m.state.Store(stFailed)
		r.failed.Add(1)
		r.addError(code)
		return
	}
	m.state.Store(stAcked)
	r.acked.Add(1)
	r.expected.Add(int64(len(r.convs[m.conv].members)))
	if m.measured {
		r.ack.record(c.idx, time.Duration(time.Now().UnixNano()-sent))
	}
}

type newMsg struct {
	ConversationID string `json:"conversation_id"`
	ClientMsgID    string `json:"client_msg_id"`
	Seq            int64  `json:"seq"`
}

func (r *run) onPush(c *benchConn, typ string, seq int64, data []byte) {
	switch typ {
	case "conversation.created":
		r.created.Add(1)
		return
	case "message.new":
	default:
		return
	}
	now := time.Now().UnixNano()
	var p newMsg
	if json.Unmarshal(data, &p) != nil {
		return
	}
	if seq == 0 {
		seq = p.Seq
	}
	idx, ok := r.msgIndex(p.ClientMsgID)
	if !ok {
		r.foreign.Add(1)
		return
	}
	if seq > 0 {
		last := c.last[p.ConversationID]
		switch {
		case seq == last:
			r.dup.Add(1)
			return
		case seq < last:
			r.ooo.Add(1)
		default:
			c.last[p.ConversationID] = seq
		}
	}
	m := &r.msgs[idx]
	sent := m.sentNs.Load()
	if sent == 0 {
		r.foreign.Add(1)
		return
	}
	m.delivered.Add(1)
	r.delivered.Add(1)
	if !m.measured {
		return
	}
	d := time.Duration(now - sent)
	r.del.record(c.idx, d)
	r.win.record(c.idx, d)
	if int(m.step) < len(r.steps) {
		r.steps[m.step].record(c.idx, d)
	}
	if r.conns[m.sender].node != c.node {
		r.cross.record(c.idx, d)
	}
}

// client_msg_id is "<run id>-<index>".
func (r *run) msgIndex(cmid string) (int64, bool) {
	rest, ok := strings.CutPrefix(cmid, r.id)
	if !ok || len(rest) < 2 || rest[0] != '-' {
		return 0, false
	}
	i, err := strconv.ParseInt(rest[1:], 10, 64)
	if err != nil || i < 0 || i >= r.next.Load() || i >= int64(len(r.msgs)) {
		return 0, false
	}
	return i, true
}

// --- setup ---

// call sends a setup request and waits for its reply.
func (r *run) call(ctx context.Context, c *benchConn, typ string, data any) (setupReply, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return setupReply{}, err
	}
	id := setupBase + r.reqID.Add(1)
	ch := make(chan setupReply, 1)
	r.pmu.Lock()
	r.pending[id] = ch
	r.pmu.Unlock()
	defer func() { r.pmu.Lock(); delete(r.pending, id); r.pmu.Unlock() }()
	if err := c.request(id, typ, b); err != nil {
		return setupReply{}, err
	}
	select {
	case rep := <-ch:
		if rep.code != "" {
			return rep, fmt.Errorf("%s: %s", typ, rep.code)
		}
		return rep, nil
	case <-c.done:
		return setupReply{}, fmt.Errorf("%s: connection closed: %v", typ, c.err)
	case <-ctx.Done():
		return setupReply{}, fmt.Errorf("%s: %w", typ, ctx.Err())
	}
}

// token mints a JWT locally (--jwt-secret) or asks the dev endpoint.
func (r *run) token(ctx context.Context, user string) (string, error) {
	if r.cfg.jwtSecret != "" {
		return auth.Mint(r.cfg.jwtSecret, user, 6*time.Hour)
	}
	base := httpBase(r.cfg.nodes[0])
	body, _ := json.Marshal(map[string]string{"user_id": user})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/dev/token", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		return "", fmt.Errorf("dev token: HTTP %d (is CHAT_DEV_AUTH on? else pass --jwt-secret)", resp.StatusCode)
	}
	return out.Token, nil
}

// connectAll opens one connection per user, users spread over the nodes
// and the source addresses, with bounded concurrency.
func (r *run) connectAll(ctx context.Context, n int, bufSize int) error {
	r.users = make([]string, n)
	r.conns = make([]*benchConn, n)
	for i := range r.users {
		r.users[i] = fmt.Sprintf("b%s_u%d", r.id, i)
	}
	var (
		wg       sync.WaitGroup
		firstErr atomic.Value
		opened   atomic.Int64
	)
	sem := make(chan struct{}, r.cfg.dialConcurrency)
	stop := progressTicker("connect", func() string {
		return fmt.Sprintf("%d/%d connections open", opened.Load(), n)
	})
	defer stop()
	for i := range n {
		if firstErr.Load() != nil || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			node := i % len(r.nodes)
			tok, err := r.token(ctx, r.users[i])
			if err == nil {
				var c *benchConn
				c, err = dial(ctx, dialOpts{url: r.nodes[node], token: tok, localAddr: srcAddr(i, r.cfg.srcIPs),
					sio: r.cfg.proto == "sio", bufSize: bufSize}, i, node, r)
				r.conns[i] = c
			}
			if err != nil {
				if r.cfg.scenario == "connect" { // count and go on: how many a node takes is the result
					r.failed.Add(1)
					r.addError("dial: " + shortErr(err))
					return
				}
				firstErr.CompareAndSwap(nil, fmt.Errorf("user %d: %w", i, err))
				return
			}
			opened.Add(1)
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return e.(error)
	}
	return ctx.Err()
}

// srcAddr spreads connections over 127.0.0.2 ... 127.0.0.(1+n): one
// source address has only ~28k ephemeral ports towards one server port.
func srcAddr(i, n int) string {
	if n <= 0 {
		return ""
	}
	k := 2 + i%n
	return fmt.Sprintf("127.0.%d.%d", k/256, k%256)
}

// release sends each connection its first request (an empty sync), which
// ends the gateway's initial hold of pushes.
func (r *run) release(ctx context.Context) {
	r.parallel(ctx, len(r.conns), func(i int) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := r.call(ctx, r.conns[i], "sync", map[string]any{"positions": map[string]int64{}})
		return err
	})
}

// createConversations makes r.convs real; kind is "group" or "direct".
func (r *run) createConversations(ctx context.Context, kind string, groups [][]int) error {
	r.convs = make([]convInfo, len(groups))
	var want int64
	for _, g := range groups {
		want += int64(len(g))
	}
	var done atomic.Int64
	stop := progressTicker("setup", func() string {
		return fmt.Sprintf("%d/%d conversations created, %d/%d conversation.created pushes", done.Load(), len(groups),
			r.created.Load(), want)
	})
	defer stop()
	errs := r.parallel(ctx, len(groups), func(i int) error {
		g := groups[i]
		var others []string
		for _, u := range g[1:] {
			others = append(others, r.users[u])
		}
		data := map[string]any{"kind": kind, "members": others}
		if kind == "group" {
			data["title"] = "bench " + strconv.Itoa(i)
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		rep, err := r.call(cctx, r.conns[g[0]], "conversation.create", data)
		if err != nil {
			return err
		}
		var out struct {
			Conversation struct {
				ID string `json:"conversation_id"`
			} `json:"conversation"`
		}
		if err := json.Unmarshal(rep.data, &out); err != nil || out.Conversation.ID == "" {
			return fmt.Errorf("conversation.create: unexpected reply %s", rep.data)
		}
		r.convs[i] = convInfo{id: out.Conversation.ID, members: g}
		done.Add(1)
		return nil
	})
	if errs > 0 {
		return fmt.Errorf("%d of %d conversation.create failed (first error counted under errors)", errs, len(groups))
	}
	for i, c := range r.convs {
		r.convIx[c.id] = int32(i)
	}
	// Every member hears of its new conversation through the fan-out: this
	// proves the path works before the clock starts. Bounded wait.
	deadline := time.Now().Add(r.cfg.setupWait)
	for r.created.Load() < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	if got := r.created.Load(); got < want {
		fmt.Printf("warning: %d of %d conversation.created pushes arrived within %s\n", got, want, r.cfg.setupWait)
	}
	return ctx.Err()
}

// parallel runs f(0..n-1) with the dial concurrency; it returns how many
// failed (their errors are counted under "setup:<error>").
func (r *run) parallel(ctx context.Context, n int, f func(i int) error) int {
	var wg sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, r.cfg.dialConcurrency)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				failed.Add(1)
				r.addError("setup: " + shortErr(err))
			}
		}()
	}
	wg.Wait()
	return int(failed.Load())
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

func (r *run) closeAll() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range r.conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() { defer wg.Done(); defer func() { <-sem }(); c.close() }()
	}
	wg.Wait()
}
