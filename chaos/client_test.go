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

func (l *load) sending() bool { return !closed(l.sendStop) }
func (l *load) stopped() bool { return closed(l.stop) }

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

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

// got is one message.new a client processed.
type got struct {
	MsgID, Sender, CMID string
	Seq                 int64
	Conn                int
	Gateway             int
	At                  time.Time
}

// anomaly is a violation seen by one client, with enough context to
// reproduce it.
type anomaly struct {
	Kind   string // duplicate, out_of_order, foreign
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

	mu        sync.Mutex
	pos       map[string]int64            // conv -> highest frame seq seen (lifetime)
	seqs      map[string]map[int64]string // conv -> seq -> push type (every durable push seen)
	msgs      map[string]map[int64]got    // conv -> seq -> message.new
	byMsgID   map[string]int64            // message_id -> seq first seen
	byCMID    map[string]string           // sender/cmid -> message_id first seen
	anomalies []anomaly
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
		rng: rand.New(rand.NewPCG(seed, seed*7919+1)), pos: map[string]int64{}, seqs: map[string]map[int64]string{},
		msgs: map[string]map[int64]got{}, byMsgID: map[string]int64{}, byCMID: map[string]string{}, refusals: map[string]int{}}
	for _, cv := range convs {
		c.member[cv] = true
		c.seqs[cv] = map[int64]string{}
		c.msgs[cv] = map[int64]got{}
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
		c.mu.Lock()
		pos := fmt.Sprint(c.pos)
		c.mu.Unlock()
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
		c.mu.Lock()
		pos := make(map[string]int64, len(c.convs))
		for _, cv := range c.convs {
			pos[cv] = c.pos[cv]
		}
		c.mu.Unlock()
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

type pushData struct {
	ConversationID string `json:"conversation_id"`
	Conversation   *struct {
		ConversationID string `json:"conversation_id"`
	} `json:"conversation"`
	MessageID   string `json:"message_id"`
	SenderID    string `json:"sender_id"`
	ClientMsgID string `json:"client_msg_id"`
	Seq         int64  `json:"seq"`
}

// onPush applies what a real client does with a push and checks it: a
// durable push of a conversation must be of one the user is a member of,
// and its seq must be above everything already seen of the conversation
// (across reconnects: the sync position makes the server send only what is
// after it).
func (c *simClient) onPush(p wsclient.Push, cn, gi int) {
	var d pushData
	_ = json.Unmarshal(p.Data, &d)
	conv := d.ConversationID
	if conv == "" && d.Conversation != nil {
		conv = d.Conversation.ConversationID
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if conv != "" && !c.member[conv] {
		c.anomalies = append(c.anomalies, anomaly{Kind: "foreign", User: c.user, Conv: conv, Seq: p.Seq,
			Detail: fmt.Sprintf("%s on conn %d (gw%d)", p.Type, cn, gi), At: now})
		return
	}
	if p.Seq == 0 {
		return // ephemeral (typing)
	}
	last := c.pos[conv]
	c.pushLog = append(c.pushLog, tl{At: now, What: fmt.Sprintf("conn %d push %s %s seq %d (position %d)", cn, conv, p.Type, p.Seq, last)})
	switch {
	case c.seqs[conv][p.Seq] != "":
		c.anomalies = append(c.anomalies, anomaly{Kind: "duplicate", User: c.user, Conv: conv, Seq: p.Seq,
			Detail: fmt.Sprintf("%s seq %d again on conn %d (gw%d); first as %s", p.Type, p.Seq, cn, gi, c.seqs[conv][p.Seq]), At: now})
		return
	case p.Seq < last:
		c.anomalies = append(c.anomalies, anomaly{Kind: "out_of_order", User: c.user, Conv: conv, Seq: p.Seq,
			Detail: fmt.Sprintf("%s seq %d after seq %d on conn %d (gw%d)", p.Type, p.Seq, last, cn, gi), At: now})
	default:
		c.pos[conv] = p.Seq
	}
	c.seqs[conv][p.Seq] = fmt.Sprintf("%s@conn%d", p.Type, cn)
	if p.Type != domain.PushMessageNew {
		return
	}
	if s, ok := c.byMsgID[d.MessageID]; ok && s != p.Seq {
		c.anomalies = append(c.anomalies, anomaly{Kind: "duplicate", User: c.user, Conv: conv, Seq: p.Seq,
			Detail: fmt.Sprintf("message %s at seq %d, already received at seq %d", d.MessageID, p.Seq, s), At: now})
	}
	k := d.SenderID + "/" + d.ClientMsgID
	if id, ok := c.byCMID[k]; ok && id != d.MessageID {
		c.anomalies = append(c.anomalies, anomaly{Kind: "duplicate", User: c.user, Conv: conv, Seq: p.Seq,
			Detail: fmt.Sprintf("client_msg_id %s as message %s (seq %d), already received as message %s (seq %d)",
				k, d.MessageID, p.Seq, id, c.byMsgID[id]), At: now})
	}
	if _, ok := c.byMsgID[d.MessageID]; !ok {
		c.byMsgID[d.MessageID] = p.Seq
	}
	if _, ok := c.byCMID[k]; !ok {
		c.byCMID[k] = d.MessageID
	}
	c.msgs[conv][p.Seq] = got{MsgID: d.MessageID, Sender: d.SenderID, CMID: d.ClientMsgID, Seq: p.Seq, Conn: cn, Gateway: gi, At: now}
}

// has reports whether the client processed message id at seq of conv.
func (c *simClient) has(conv string, seq int64, id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.msgs[conv][seq]
	return ok && g.MsgID == id
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
