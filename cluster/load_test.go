//go:build cluster

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// load is a bounded chat load: every user keeps one connection (moving to the
// other gateway when it drops, then resuming with sync) and sends, one
// message at a time, into its conversations; the limiter bounds the total rate.
type load struct {
	env      *testenv.Env
	gateways []string // ws:// URLs
	users    []*member
	convs    map[string][]*member
	limiter  *rate.Limiter

	mu        sync.Mutex
	acked     map[string]ack // message id -> first ack
	ackSeqBad int            // a retry was acked with another seq
	errCodes  map[string]int

	ackCount   atomic.Int64
	gaveUp     atomic.Int64 // sends still not acked after maxSendTime
	reconnects atomic.Int64
}

type ack struct {
	conv string
	seq  int64
}

// maxSendTime bounds the retries of one message.send (same client_msg_id).
const maxSendTime = 90 * time.Second

// member is one user's connection and everything it received.
type member struct {
	id    string
	token string
	convs []string

	mu    sync.Mutex
	conn  *wsclient.Client
	ready chan struct{} // closed while conn is usable
	last  map[string]int64
	seen  map[string]map[int64]bool
	got   map[string]int // message id -> deliveries
	dup   int64          // pushes whose seq this user already had
	ooo   int64          // pushes below the last seq, not seen before
}

func newMember(id, token string) *member {
	return &member{id: id, token: token, ready: make(chan struct{}), last: map[string]int64{},
		seen: map[string]map[int64]bool{}, got: map[string]int{}}
}

func (m *member) join(conv string, seq int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.convs = append(m.convs, conv)
	m.last[conv] = seq
	m.seen[conv] = map[int64]bool{}
}

// push records a durable push, checking the per-conversation seq order that
// PROTOCOL.md guarantees on one connection and, through sync positions,
// across reconnects.
func (m *member) push(p wsclient.Push) {
	if p.Seq == 0 {
		return // ephemeral
	}
	var ref struct {
		ConversationID string `json:"conversation_id"`
		MessageID      string `json:"message_id"`
	}
	if json.Unmarshal(p.Data, &ref) != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen, ok := m.seen[ref.ConversationID]
	if !ok {
		return
	}
	switch {
	case seen[p.Seq]:
		m.dup++
		return
	case p.Seq < m.last[ref.ConversationID]:
		m.ooo++
	default:
		m.last[ref.ConversationID] = p.Seq
	}
	seen[p.Seq] = true
	if p.Type == domain.PushMessageNew {
		m.got[ref.MessageID]++
	}
}

func (m *member) positions() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64, len(m.last))
	for c, s := range m.last {
		out[c] = s
	}
	return out
}

func (m *member) setConn(c *wsclient.Client) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.conn = c
	if c != nil {
		close(m.ready)
	} else {
		m.ready = make(chan struct{})
	}
}

// waitConn returns the ready connection, waiting while the member reconnects.
func (m *member) waitConn(ctx context.Context) *wsclient.Client {
	m.mu.Lock()
	c, ready := m.conn, m.ready
	m.mu.Unlock()
	if c != nil {
		return c
	}
	select {
	case <-ready:
		return m.waitConn(ctx)
	case <-ctx.Done():
		return nil
	}
}

// connect keeps the member connected until ctx ends: dial a gateway (the
// other one after every drop), resume with sync from the last seen seqs,
// hand the connection to the sender, wait for it to drop.
func (l *load) connect(ctx context.Context, m *member, first int) {
	gw := first
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			l.reconnects.Add(1)
			pause(ctx, 100*time.Millisecond)
		}
		url := l.gateways[gw%len(l.gateways)]
		gw++
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, _, err := wsclient.Dial(dctx, url, m.token, wsclient.Options{})
		cancel()
		if err != nil {
			continue
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for p := range c.Pushes {
				m.push(p)
			}
		}()
		// The previous connection's pushes are all recorded: positions are exact.
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = c.Request(sctx, "sync", map[string]any{"positions": m.positions()})
		cancel()
		if err != nil {
			l.countErr("sync", err)
			_ = c.Close()
			<-done
			continue
		}
		m.setConn(c)
		select {
		case <-done:
		case <-ctx.Done():
			_ = c.Close()
			<-done
		}
		m.setConn(nil)
	}
}

// sendLoop sends until stop ends, each message retried with the same
// client_msg_id until acked (idempotent send) or maxSendTime passes.
func (l *load) sendLoop(stop, hard context.Context, m *member) {
	for i := 0; ; i++ {
		if l.limiter.Wait(stop) != nil {
			return
		}
		conv := m.convs[i%len(m.convs)]
		l.sendOne(hard, m, conv, fmt.Sprintf("%s-%d", m.id, i))
	}
}

func (l *load) sendOne(ctx context.Context, m *member, conv, cmid string) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		if time.Since(start) > maxSendTime {
			l.gaveUp.Add(1)
			return
		}
		c := m.waitConn(ctx)
		if c == nil {
			l.gaveUp.Add(1)
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		raw, err := c.Request(rctx, "message.send", map[string]any{
			"conversation_id": conv, "client_msg_id": cmid, "body": "m " + cmid})
		cancel()
		if err == nil {
			var r struct {
				Message domain.Message `json:"message"`
			}
			if json.Unmarshal(raw, &r) == nil {
				l.recordAck(r.Message)
				return
			}
		}
		l.countErr("send", err)
		pause(ctx, min(time.Duration(attempt+1)*100*time.Millisecond, time.Second))
	}
}

func (l *load) recordAck(msg domain.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.acked[msg.MessageID]; ok {
		if prev.seq != msg.Seq {
			l.ackSeqBad++
		}
		return
	}
	l.acked[msg.MessageID] = ack{conv: msg.ConversationID, seq: msg.Seq}
	l.ackCount.Add(1)
}

func (l *load) badAcks() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ackSeqBad
}

func (l *load) countErr(what string, err error) {
	code := "closed"
	var we *wsclient.Error
	switch {
	case errors.As(err, &we):
		code = we.Code
	case errors.Is(err, context.DeadlineExceeded):
		code = "timeout"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errCodes[what+":"+code]++
}

func (l *load) errSummary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for k, n := range l.errCodes {
		parts = append(parts, fmt.Sprintf("%s=%d", k, n))
	}
	return strings.Join(parts, " ")
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// tally is one row of the loss table.
type tally struct {
	acked, expected, delivered, lost, duplicated, outOfOrder int64
	lostIDs                                                  []string // message ids (read-model tally only)
}

// liveTally counts, per acked message, its deliveries to every member of
// its conversation.
func (l *load) liveTally() tally {
	l.mu.Lock()
	acked := make(map[string]ack, len(l.acked))
	for id, a := range l.acked {
		acked[id] = a
	}
	l.mu.Unlock()
	var t tally
	t.acked = int64(len(acked))
	for _, m := range l.users {
		m.mu.Lock()
		t.duplicated += m.dup
		t.outOfOrder += m.ooo
		m.mu.Unlock()
	}
	for id, a := range acked {
		for _, m := range l.convs[a.conv] {
			t.expected++
			m.mu.Lock()
			d := int64(m.got[id])
			m.mu.Unlock()
			t.delivered += min(d, 1)
			t.lost += max(0, 1-d)
			t.duplicated += max(0, d-1)
		}
	}
	return t
}

// projectedTally compares the acked messages with the read model: each must
// be one row of messages, at its acked seq, and one message_sent event.
func (l *load) projectedTally(ctx context.Context) (tally, error) {
	l.mu.Lock()
	acked := make(map[string]ack, len(l.acked))
	for id, a := range l.acked {
		acked[id] = a
	}
	l.mu.Unlock()
	type row struct {
		seqs   []int64
		events int64
	}
	rows := map[string]*row{}
	s := l.env.Cfg.DBSchema
	r, err := l.env.Pool.Query(ctx, fmt.Sprintf(`SELECT message_id, seq FROM %q.messages`, s))
	if err != nil {
		return tally{}, err
	}
	for r.Next() {
		var id string
		var seq int64
		if err := r.Scan(&id, &seq); err != nil {
			return tally{}, err
		}
		if rows[id] == nil {
			rows[id] = &row{}
		}
		rows[id].seqs = append(rows[id].seqs, seq)
	}
	if err := r.Err(); err != nil {
		return tally{}, err
	}
	r, err = l.env.Pool.Query(ctx, fmt.Sprintf(`SELECT data->>'message_id', count(*) FROM %q.events
		WHERE type = $1 GROUP BY 1`, s), domain.EvMessageSent)
	if err != nil {
		return tally{}, err
	}
	for r.Next() {
		var id string
		var n int64
		if err := r.Scan(&id, &n); err != nil {
			return tally{}, err
		}
		if rows[id] != nil {
			rows[id].events = n
		}
	}
	if err := r.Err(); err != nil {
		return tally{}, err
	}
	t := tally{acked: int64(len(acked)), expected: int64(len(acked))}
	for id, a := range acked {
		got := rows[id]
		switch {
		case got == nil:
			t.lost++
			t.lostIDs = append(t.lostIDs, id)
			continue
		case len(got.seqs) > 1 || got.events > 1:
			t.duplicated++
		}
		t.delivered++
		if got.seqs[0] != a.seq {
			t.outOfOrder++ // projected at another place in the conversation
		}
	}
	return t, nil
}

// printTable prints the loss table in the chaos test's layout
// (chaos/check_test.go), with the read model's rows after the live ones.
func printTable(t *testing.T, l *load, live, proj tally) {
	var b strings.Builder
	row := func(k string, v any) { fmt.Fprintf(&b, "  %-44s %v\n", k, v) }
	row("messages acked", live.acked)
	row("deliveries expected (acked x members)", live.expected)
	row("delivered", live.delivered)
	row("lost", live.lost)
	row("duplicated", live.duplicated)
	row("out of order", live.outOfOrder)
	row("bad acks (a resend acked with another seq)", l.badAcks())
	row("sends never acked (gave up)", l.gaveUp.Load())
	row("acked but missing in Postgres", proj.lost)
	row("acked and projected twice", proj.duplicated)
	row("acked but projected at another seq", proj.outOfOrder)
	row("reconnects (resumed with sync)", l.reconnects.Load())
	t.Logf("loss table:\n%s", b.String())
}
