//go:build adversary

package adversary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/wsclient"
)

// acked is one message the server acked to a client of the suite.
type acked struct {
	Conv, MessageID, ClientMsgID, Sender, Body string
	Seq                                        int64
	By                                         string // the client (good or hostile) it was acked to
}

// ledger holds every acked message of the run, once per message id.
type ledger struct {
	mu   sync.Mutex
	msgs []acked
	ids  map[string]bool
}

func (l *ledger) add(m acked) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ids == nil {
		l.ids = map[string]bool{}
	}
	if l.ids[m.MessageID] {
		return // an idempotent resend returned the first message
	}
	l.ids[m.MessageID] = true
	l.msgs = append(l.msgs, m)
}

func (l *ledger) all() []acked {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}

// inConv is every acked message of conv so far.
func (l *ledger) inConv(conv string) []acked {
	var out []acked
	for _, m := range l.all() {
		if m.Conv == conv {
			out = append(out, m)
		}
	}
	return out
}

// ackedMessage decodes the data of an ok reply to message.send.
func ackedMessage(data json.RawMessage) (acked, error) {
	var r struct {
		Message struct {
			ConversationID string `json:"conversation_id"`
			MessageID      string `json:"message_id"`
			Seq            int64  `json:"seq"`
			SenderID       string `json:"sender_id"`
			ClientMsgID    string `json:"client_msg_id"`
			Body           string `json:"body"`
		} `json:"message"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return acked{}, err
	}
	m := r.Message
	if m.MessageID == "" || m.Seq <= 0 {
		return acked{}, fmt.Errorf("ack without message_id or seq: %.200s", data)
	}
	return acked{Conv: m.ConversationID, MessageID: m.MessageID, ClientMsgID: m.ClientMsgID, Sender: m.SenderID, Body: m.Body, Seq: m.Seq}, nil
}

// got is a message.new as a client received it.
type got struct {
	id, body string
}

// goodClient is a well-behaved member of the shared groups: it keeps one
// connection (native or Socket.IO) to a node, resumes with sync from the last
// seq it saw of each conversation after every reconnect, sends messages with
// unique client_msg_ids and retries each with the same id until acked. It
// records every durable push and flags one whose seq is not above the last it
// saw of that conversation (over its whole life: every connection).
type goodClient struct {
	name, user, token string
	sio               bool
	nodes             []*chatd
	convs             []string
	led               *ledger
	rnd               *rand.Rand // used by the send loop only

	mu         sync.Mutex
	conn       chatConn
	last       map[string]int64
	got        map[string]map[int64]got
	violations []string
	events     []string // recent timeline, for failures
	connects   int
	dropped    int // connections the server ended
	syncFails  int
	sent       int
	retries    int
	retryWhy   map[string]int // why sends were retried
	kick       chan struct{}
	next       int
}

func newGoodClient(name, user, token string, sio bool, nodes []*chatd, convs []string, led *ledger, seed uint64) *goodClient {
	return &goodClient{name: name, user: user, token: token, sio: sio, nodes: nodes, convs: convs, led: led,
		rnd: rand.New(rand.NewPCG(seed, 7)), last: map[string]int64{}, got: map[string]map[int64]got{}, retryWhy: map[string]int{},
		kick: make(chan struct{}, 1)}
}

func (c *goodClient) note(format string, a ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noteLocked(format, a...)
}

func (c *goodClient) noteLocked(format string, a ...any) {
	c.events = append(c.events, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, a...))
	if len(c.events) > 60 {
		c.events = c.events[len(c.events)-60:]
	}
}

func (c *goodClient) violate(format string, a ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	msg := fmt.Sprintf(format, a...)
	c.noteLocked("VIOLATION %s", msg)
	if len(c.violations) < 50 {
		c.violations = append(c.violations, msg)
	}
}

// maintain keeps the client connected until ctx ends, moving to the next
// node whenever the connection ends or the client is kicked.
func (c *goodClient) maintain(ctx context.Context, first int) {
	node := first
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		conn, consumed, err := c.connect(ctx, node)
		if err != nil {
			c.note("connect to %s failed: %v", c.nodes[node].name, err)
			node = (node + 1) % len(c.nodes)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		c.mu.Lock()
		c.conn = conn
		c.mu.Unlock()
		select {
		case <-conn.Done():
			c.mu.Lock()
			c.dropped++
			c.mu.Unlock()
			c.note("connection to %s ended by the server", c.nodes[node].name)
		case <-c.kick:
			c.note("reconnecting from %s", c.nodes[node].name)
		case <-ctx.Done():
		}
		c.mu.Lock()
		c.conn = nil
		c.mu.Unlock()
		_ = conn.Close()
		<-consumed // every push of the old connection is recorded before the next sync
		node = (node + 1) % len(c.nodes)
	}
}

// connect dials a node and resumes: sync from the last seq seen of every
// conversation (0 for those it never saw).
func (c *goodClient) connect(ctx context.Context, node int) (chatConn, chan struct{}, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var conn chatConn
	if c.sio {
		sc, err := dialSio(dctx, c.nodes[node].sio(), c.token)
		if err != nil {
			return nil, nil, err
		}
		conn = sc
	} else {
		wc, res, err := wsclient.Dial(dctx, c.nodes[node].ws(), c.token, wsclient.Options{})
		if res != nil && res.Body != nil {
			res.Body.Close()
		}
		if err != nil {
			return nil, nil, err
		}
		conn = nativeConn{wc}
	}
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for p := range conn.PushCh() {
			c.onPush(p)
		}
	}()
	c.mu.Lock()
	c.connects++
	positions := map[string]int64{}
	for _, conv := range c.convs {
		positions[conv] = 0
	}
	for conv, seq := range c.last {
		positions[conv] = seq
	}
	c.noteLocked("connected to %s, sync %v", c.nodes[node].name, positions)
	c.mu.Unlock()
	for attempt := 0; ; attempt++ {
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := conn.Request(sctx, "sync", map[string]any{"positions": positions})
		scancel()
		if err == nil {
			return conn, consumed, nil
		}
		c.mu.Lock()
		c.syncFails++
		c.mu.Unlock()
		var we *wsclient.Error
		if attempt >= 5 || !errors.As(err, &we) || (we.Code != "unavailable" && we.Code != "rate_limited") {
			_ = conn.Close()
			<-consumed
			return nil, nil, fmt.Errorf("sync: %w", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// onPush records a push of the current connection.
func (c *goodClient) onPush(p wsclient.Push) {
	if p.Seq == 0 {
		return // ephemeral (typing)
	}
	conv := convOf(p.Data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if last := c.last[conv]; p.Seq <= last {
		msg := fmt.Sprintf("%s in %s: seq %d after %d (a duplicate or out of order)", p.Type, conv, p.Seq, last)
		c.noteLocked("VIOLATION %s", msg)
		if len(c.violations) < 50 {
			c.violations = append(c.violations, msg)
		}
		return
	}
	c.last[conv] = p.Seq
	if p.Type != "message.new" {
		return
	}
	var m struct {
		MessageID string `json:"message_id"`
		Body      string `json:"body"`
	}
	_ = json.Unmarshal(p.Data, &m)
	if c.got[conv] == nil {
		c.got[conv] = map[int64]got{}
	}
	c.got[conv][p.Seq] = got{id: m.MessageID, body: m.Body}
}

// convOf finds the conversation a push belongs to.
func convOf(data json.RawMessage) string {
	var d struct {
		ConversationID string `json:"conversation_id"`
		Conversation   struct {
			ConversationID string `json:"conversation_id"`
		} `json:"conversation"`
	}
	_ = json.Unmarshal(data, &d)
	if d.ConversationID != "" {
		return d.ConversationID
	}
	return d.Conversation.ConversationID
}

func (c *goodClient) current() chatConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// chat sends a message every about `every` until ctx ends; the send in hand
// is finished (acked) even after ctx ended.
func (c *goodClient) chat(ctx context.Context, every time.Duration, reconnectP float64) {
	for {
		wait := every/2 + time.Duration(c.rnd.Int64N(int64(every)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		c.next++
		conv := c.convs[c.rnd.IntN(len(c.convs))]
		cmid := fmt.Sprintf("%s-%05d", c.name, c.next)
		body := fmt.Sprintf("%s says hello #%d: héllo wörld ✓ 👋", c.name, c.next)
		c.sendUntilAcked(conv, cmid, body)
		if c.rnd.Float64() < reconnectP {
			select {
			case c.kick <- struct{}{}:
			default:
			}
		}
	}
}

// sendUntilAcked retries one message with the same client_msg_id (bounded).
func (c *goodClient) sendUntilAcked(conv, cmid, body string) {
	deadline := time.Now().Add(90 * time.Second)
	for attempt := 0; time.Now().Before(deadline); {
		conn := c.current()
		if conn == nil { // reconnecting
			time.Sleep(50 * time.Millisecond)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		data, err := conn.Request(ctx, "message.send", map[string]any{"conversation_id": conv, "client_msg_id": cmid, "body": body})
		cancel()
		if err == nil {
			m, perr := ackedMessage(data)
			switch {
			case perr != nil:
				c.violate("send %s: %v", cmid, perr)
			case m.Conv != conv || m.ClientMsgID != cmid || m.Body != body || m.Sender != c.user:
				c.violate("send %s: ack %+v does not match what was sent", cmid, m)
			default:
				m.By = c.name
				c.led.add(m)
			}
			c.mu.Lock()
			c.sent++
			c.retries += attempt
			c.mu.Unlock()
			return
		}
		var we *wsclient.Error
		if errors.As(err, &we) && we.Code != "unavailable" && we.Code != "rate_limited" {
			c.violate("send %s: %v (a well-behaved send must not get this)", cmid, err)
			return
		}
		attempt++
		c.note("send %s attempt %d: %v", cmid, attempt, err)
		c.mu.Lock()
		c.retryWhy[codeOf(err)]++
		c.mu.Unlock()
		time.Sleep(time.Duration(100+50*min(attempt, 10)) * time.Millisecond)
	}
	c.violate("send %s in %s never acked within 90 s", cmid, conv)
}

// missing lists, for each acked message of the client's conversations, what
// the client lacks or got differently.
func (c *goodClient) missing(msgs []acked) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range msgs {
		if !slices.Contains(c.convs, m.Conv) {
			continue
		}
		g, ok := c.got[m.Conv][m.Seq]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s lacks %s seq %d (%s by %s)", c.name, m.Conv, m.Seq, m.MessageID, m.By))
		case g.id != m.MessageID:
			out = append(out, fmt.Sprintf("%s got %s at %s seq %d, acked as %s", c.name, g.id, m.Conv, m.Seq, m.MessageID))
		case g.body != m.Body:
			out = append(out, fmt.Sprintf("%s got %s with body %q, acked with %q", c.name, m.MessageID, clip(g.body), clip(m.Body)))
		}
	}
	return out
}

func (c *goodClient) stats() (connects, dropped, syncFails, sent, retries int, viol []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connects, c.dropped, c.syncFails, c.sent, c.retries, slices.Clone(c.violations)
}

func (c *goodClient) timeline() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.events, "\n    ")
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
