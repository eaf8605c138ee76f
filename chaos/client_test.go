//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/harness"
	"github.com/parley-chat/parley/internal/wsclient"
)

// gateways is what a client knows of the cluster: the gateway URLs (a real
// client has a list of nodes, or one load-balanced name) and a token.
type gateways interface {
	gatewayURLs() []string
	token(user string) string
}

// load holds the switches every client reads.
type load struct {
	sendStop chan struct{} // closed: no new messages (pending ones are still retried)
	stop     chan struct{} // closed: clients close their connections and return
	since    time.Time
}

func (l *load) sending() bool { return !harness.Closed(l.sendStop) }
func (l *load) stopped() bool { return harness.Closed(l.stop) }

// clientConfig is the behaviour of a simulated client.
type clientConfig struct {
	SendEvery      time.Duration // mean pause between two messages
	DisconnectProb float64       // after an ack: close the connection and reconnect
	DropMidSend    float64       // before a send: write it, then drop the connection without waiting
	RequestTimeout time.Duration
}

// ack is one message the server acked.
type ack struct {
	Conv, CMID, MsgID, Sender string
	Seq                       int64
	At                        time.Time
	Attempts                  int
}

// latency is one successful send attempt: when it started and how long
// the request took.
type latency struct {
	At time.Time
	D  time.Duration
}

// anomaly is an ack the client could not accept, with enough context to
// reproduce it (what it received is checked by its inbox).
type anomaly struct {
	Kind   string // bad_ack
	User   string
	Conv   string
	Seq    int64
	Detail string
	At     time.Time
}

// tl is one line of a client's timeline (connects, syncs, closes).
type tl struct {
	At   time.Time
	What string
}

// simClient is one user with one device: it connects to a random gateway,
// resumes with sync (positions = the last frame-level seq it saw per
// conversation), sends messages one at a time (retrying the same
// client_msg_id until acked), and sometimes drops its connection.
type simClient struct {
	user   string
	convs  []string
	member map[string]bool
	cfg    clientConfig
	gw     gateways
	ld     *load
	rng    *rand.Rand

	// inbox checks every push (member, seq order, exactly once) and holds
	// the positions the next sync resumes from.
	inbox *harness.Inbox

	mu        sync.Mutex
	anomalies []anomaly // bad acks
	acks      []ack
	pending   *ack
	refusals  map[string]int
	timeouts  int
	syncFails int
	timeline  []tl
	pushLog   []tl        // every durable push, for the timeline files
	drops     []time.Time // connections lost not by the client's choice
	syncs     []time.Time // successful syncs
	sendErrs  []time.Time // failed send attempts (any reason)
	sendLat   []latency   // successful send attempts
	cur       *wsclient.Client
	blipped   bool      // the harness cut the connection (a network blip)
	blipUntil time.Time // and the network stays down until then
	// synced: a connection is open and its sync succeeded.
	synced  atomic.Bool
	conns   int
	sent    int
	counter int
}

func newSimClient(user string, convs []string, cfg clientConfig, gw gateways, ld *load, seed uint64) *simClient {
	c := &simClient{user: user, convs: convs, member: map[string]bool{}, cfg: cfg, gw: gw, ld: ld,
		rng: rand.New(rand.NewPCG(seed, seed*7919+1)), inbox: harness.NewInbox(user), refusals: map[string]int{}}
	for _, cv := range convs {
		c.member[cv] = true
		c.inbox.Join(cv, 0)
	}
	return c
}

func (c *simClient) note(format string, a ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timeline = append(c.timeline, tl{At: time.Now(), What: fmt.Sprintf(format, a...)})
}

// run is the client's life: connect, resume, send; again, until stop.
func (c *simClient) run() {
	backoff := 50 * time.Millisecond
	for !c.ld.stopped() {
		urls := c.gw.gatewayURLs()
		gi := c.rng.IntN(len(urls))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		conn, _, err := wsclient.Dial(ctx, urls[gi], c.gw.token(c.user), wsclient.Options{PushBuf: 200000})
		cancel()
		if err != nil {
			c.note("dial gw%d failed: %v", gi, err)
			if !c.pause(backoff) {
				return
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		c.session(conn, gi)
		c.mu.Lock()
		down := time.Until(c.blipUntil)
		c.mu.Unlock()
		if !c.pause(max(down, time.Duration(c.rng.IntN(200))*time.Millisecond)) {
			return
		}
	}
}

// pause waits d unless the run stops; it reports whether to go on.
func (c *simClient) pause(d time.Duration) bool {
	select {
	case <-c.ld.stop:
		return false
	case <-time.After(d):
		return true
	}
}

// session runs one connection to its end. Every push of the connection is
// processed before it returns, so the next sync's positions include them.
func (c *simClient) session(conn *wsclient.Client, gi int) {
	c.mu.Lock()
	c.conns++
	cn := c.conns
	c.mu.Unlock()
	c.note("conn %d open on gw%d", cn, gi)
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for p := range conn.Pushes {
			c.onPush(p, cn, gi)
		}
	}()
	voluntary := false
	c.mu.Lock()
	c.cur = conn
	c.mu.Unlock()
	defer func() {
		c.synced.Store(false)
		c.mu.Lock()
		c.cur = nil
		voluntary = voluntary || c.blipped
		c.blipped = false
		c.mu.Unlock()
		if !voluntary && !c.ld.stopped() {
			c.mu.Lock()
			c.drops = append(c.drops, time.Now())
			c.mu.Unlock()
		}
		_ = conn.Close()
		<-conn.Done()
		<-consumed
		pos := fmt.Sprint(c.inbox.Positions())
		c.note("conn %d closed (voluntary %v) at positions %s: %v", cn, voluntary, pos, conn.CloseErr)
	}()
	if !c.resume(conn, cn) {
		return
	}
	c.synced.Store(true)
	voluntary = c.sendLoop(conn)
}

// resume sends sync with the positions seen so far, retrying on the same
// connection while it is open.
func (c *simClient) resume(conn *wsclient.Client, cn int) bool {
	backoff := 200 * time.Millisecond
	for !c.ld.stopped() {
		pos := c.inbox.Positions()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := conn.Request(ctx, "sync", map[string]any{"positions": pos})
		cancel()
		if err == nil {
			c.mu.Lock()
			c.syncs = append(c.syncs, time.Now())
			c.mu.Unlock()
			c.note("conn %d sync ok from %v", cn, pos)
			return true
		}
		c.mu.Lock()
		c.syncFails++
		c.mu.Unlock()
		c.note("conn %d sync failed: %v", cn, err)
		if errors.Is(err, wsclient.ErrClosed) || closedConn(conn) {
			return false
		}
		if !c.pause(backoff) {
			return false
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	return false
}

func closedConn(conn *wsclient.Client) bool {
	select {
	case <-conn.Done():
		return true
	default:
		return false
	}
}

// sendLoop sends one message at a time until the connection ends, the
// client decides to drop it (it then reports true), or the run stops.
func (c *simClient) sendLoop(conn *wsclient.Client) bool {
	backoff := 100 * time.Millisecond
	for !c.ld.stopped() {
		c.mu.Lock()
		p := c.pending
		c.mu.Unlock()
		if p == nil {
			if !c.ld.sending() || len(c.convs) == 0 {
				// Nothing left to send: stay connected and receive.
				select {
				case <-conn.Done():
				case <-c.ld.stop:
				}
				return false
			}
			wait := time.Duration(float64(c.cfg.SendEvery) * (0.5 + c.rng.Float64()))
			select {
			case <-conn.Done():
				return false
			case <-c.ld.stop:
				return false
			case <-time.After(wait):
			}
			if !c.ld.sending() {
				continue
			}
			p = c.newPending()
		}
		data := map[string]any{"conversation_id": p.Conv, "client_msg_id": p.CMID, "body": "chaos " + p.CMID}
		c.mu.Lock()
		p.Attempts++
		c.mu.Unlock()
		if c.ld.sending() && c.rng.Float64() < c.cfg.DropMidSend {
			// The network drops right after the request left: the client
			// never sees the reply and retries on its next connection.
			b, _ := json.Marshal(map[string]any{"id": 1 << 40, "type": "message.send", "data": data})
			_ = conn.WriteRaw(b)
			c.note("dropped the connection with %s in flight", p.CMID)
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RequestTimeout)
		t0 := time.Now()
		raw, err := conn.Request(ctx, "message.send", data)
		took := time.Since(t0)
		cancel()
		if err != nil {
			if !c.sendFailed(conn, p, err) {
				return false
			}
			if !c.pause(backoff) {
				return false
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		c.mu.Lock()
		c.sendLat = append(c.sendLat, latency{At: t0, D: took})
		c.mu.Unlock()
		if took > 2*time.Second {
			c.note("slow send %s (attempt %d) took %v", p.CMID, p.Attempts, took)
		}
		c.acked(p, raw)
		if c.ld.sending() && c.rng.Float64() < c.cfg.DisconnectProb {
			c.note("voluntary disconnect")
			return true
		}
	}
	return false
}

func (c *simClient) newPending() *ack {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counter++
	p := &ack{Conv: c.convs[c.rng.IntN(len(c.convs))], CMID: fmt.Sprintf("%s-%05d", c.user, c.counter), Sender: c.user}
	c.pending = p
	return p
}

// blip cuts the client's connection as a network failure would, and keeps
// it offline for d; false if it was not connected.
func (c *simClient) blip(d time.Duration) bool {
	c.mu.Lock()
	conn := c.cur
	if conn == nil || c.ld.stopped() {
		c.mu.Unlock()
		return false
	}
	c.blipped, c.blipUntil = true, time.Now().Add(d)
	c.mu.Unlock()
	c.note("network blip for %v", d)
	_ = conn.Close()
	return true
}

// sendFailed classifies a failed send; it reports whether to retry on the
// same connection.
func (c *simClient) sendFailed(conn *wsclient.Client, p *ack, err error) bool {
	c.mu.Lock()
	c.sendErrs = append(c.sendErrs, time.Now())
	c.mu.Unlock()
	var we *wsclient.Error
	switch {
	case errors.As(err, &we):
		c.mu.Lock()
		c.refusals[we.Code]++
		c.mu.Unlock()
		if we.Code != "unavailable" && we.Code != "rate_limited" && we.Code != "internal" {
			c.note("send %s refused: %v", p.CMID, err)
		}
		return !closedConn(conn)
	case errors.Is(err, context.DeadlineExceeded):
		c.mu.Lock()
		c.timeouts++
		c.mu.Unlock()
		c.note("send %s: no reply within %v; reconnecting", p.CMID, c.cfg.RequestTimeout)
		return false
	default:
		return false // closed
	}
}

func (c *simClient) acked(p *ack, raw json.RawMessage) {
	var r struct {
		Message domain.Message `json:"message"`
	}
	err := json.Unmarshal(raw, &r)
	c.mu.Lock()
	defer c.mu.Unlock()
	m := r.Message
	if err != nil || m.ConversationID != p.Conv || m.ClientMsgID != p.CMID || m.SenderID != c.user || m.Seq <= 0 || m.MessageID == "" {
		c.anomalies = append(c.anomalies, anomaly{Kind: "bad_ack", User: c.user, Conv: p.Conv, Detail: fmt.Sprintf("%s: %s", p.CMID, raw), At: time.Now()})
		c.pending = nil
		return
	}
	p.MsgID, p.Seq, p.At = m.MessageID, m.Seq, time.Now()
	c.acks = append(c.acks, *p)
	c.pending = nil
	c.sent++
}

// onPush applies what a real client does with a push; its inbox checks it.
// A violation goes to the timeline too, next to the connection events.
func (c *simClient) onPush(p wsclient.Push, cn, gi int) {
	push := harness.ParsePush(p)
	now := time.Now()
	pos := c.inbox.Positions()[push.Conv]
	v := c.inbox.Add(push, fmt.Sprintf("on conn %d (gw%d)", cn, gi), now)
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.Seq > 0 && push.Conv != "" && c.member[push.Conv] {
		c.pushLog = append(c.pushLog, tl{At: now, What: fmt.Sprintf("conn %d push %s %s seq %d (position %d)", cn, push.Conv, p.Type, p.Seq, pos)})
	}
	if v != nil {
		c.timeline = append(c.timeline, tl{At: now, What: fmt.Sprintf("%s: conv %s seq %d: %s", v.Kind, v.Conv, v.Seq, v.Detail)})
	}
}

// snapshot copies what the checks read.
func (c *simClient) snapshot() (acks []ack, pending *ack, anomalies []anomaly) {
	c.mu.Lock()
	defer c.mu.Unlock()
	acks = append(acks, c.acks...)
	if c.pending != nil {
		p := *c.pending
		pending = &p
	}
	return acks, pending, append(anomalies, c.anomalies...)
}

// timelineAround returns the client's timeline lines within d of t.
func (c *simClient) timelineAround(t time.Time, d time.Duration) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.timeline {
		if e.At.After(t.Add(-d)) && e.At.Before(t.Add(d)) {
			out = append(out, fmt.Sprintf("%s %s", e.At.UTC().Format("15:04:05.000"), e.What))
		}
	}
	return out
}

// writeTimeline writes the client's whole timeline, pushes included, to
// dir/<user>.log.
func (c *simClient) writeTimeline(dir string) error {
	c.mu.Lock()
	all := append(append([]tl{}, c.timeline...), c.pushLog...)
	c.mu.Unlock()
	sort.SliceStable(all, func(i, j int) bool { return all[i].At.Before(all[j].At) })
	var b strings.Builder
	for _, e := range all {
		fmt.Fprintf(&b, "%s %s\n", e.At.UTC().Format("15:04:05.000000"), e.What)
	}
	return os.WriteFile(filepath.Join(dir, c.user+".log"), []byte(b.String()), 0o644)
}

// stats sums counters of every client.
func clientStats(cs []*simClient) (conns, syncFails, timeouts int, refusals string) {
	r := map[string]int{}
	for _, c := range cs {
		c.mu.Lock()
		conns += c.conns
		syncFails += c.syncFails
		timeouts += c.timeouts
		for k, v := range c.refusals {
			r[k] += v
		}
		c.mu.Unlock()
	}
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, r[k])
	}
	return conns, syncFails, timeouts, strings.TrimSpace(b.String())
}
