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
	"time"

	"golang.org/x/time/rate"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/harness"
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

	ledger *harness.Ledger // the acks and every member's inbox

	mu       sync.Mutex
	errCodes map[string]int

	ackCount   atomic.Int64
	gaveUp     atomic.Int64 // sends still not acked after maxSendTime
	reconnects atomic.Int64
}

// maxSendTime bounds the retries of one message.send (same client_msg_id).
const maxSendTime = 90 * time.Second

// member is one user's connection and everything it received.
type member struct {
	id    string
	token string
	convs []string

	// inbox checks every push (member, seq order, exactly once) and holds
	// the positions the next sync resumes from.
	inbox *harness.Inbox

	mu    sync.Mutex
	conn  *wsclient.Client
	ready chan struct{} // closed while conn is usable
}

func newMember(id, token string) *member {
	return &member{id: id, token: token, ready: make(chan struct{}), inbox: harness.NewInbox(id)}
}

func (m *member) join(conv string, seq int64) {
	m.convs = append(m.convs, conv) // before the load starts: no lock needed
	m.inbox.Join(conv, seq)
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
				m.inbox.Add(harness.ParsePush(p), "", time.Now())
			}
		}()
		// The previous connection's pushes are all recorded: positions are exact.
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = c.Request(sctx, "sync", map[string]any{"positions": m.inbox.Positions()})
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
	if l.ledger.Ack(harness.Ack{MsgID: msg.MessageID, Conv: msg.ConversationID, Sender: msg.SenderID, CMID: msg.ClientMsgID,
		Seq: msg.Seq, At: time.Now()}) {
		l.ackCount.Add(1)
	}
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
