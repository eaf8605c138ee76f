package commands

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Unit tests of the idempotent send (send_message.go) on the fakes of
// fakes_test.go: every state of the record (none, p:, p:/n, f:, c:, d:,
// expired or lost, intact=false after a Redis data loss), the transitions
// between them, and the two races (two nodes sending the same
// client_msg_id; a takeover racing the original's late completion).

type sendResult struct {
	m   domain.Message
	err error
}

func goSend(h SendMessageHandler, ctx context.Context, actor, conv, clientMsgID, body string) <-chan sendResult {
	ch := make(chan sendResult, 1)
	go func() {
		m, err := h.Handle(ctx, actor, SendMessage{ConversationID: conv, ClientMsgID: clientMsgID, Body: body})
		ch <- sendResult{m, err}
	}()
	return ch
}

func recv(t *testing.T, ch <-chan sendResult) sendResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(guard):
		t.Fatal("the send never returned")
		return sendResult{}
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(guard):
		t.Fatal(what)
	}
}

func send(t *testing.T, h SendMessageHandler, actor, conv, clientMsgID, body string) domain.Message {
	t.Helper()
	m, err := h.Handle(context.Background(), actor, SendMessage{ConversationID: conv, ClientMsgID: clientMsgID, Body: body})
	if err != nil {
		t.Fatalf("send %s: %v", clientMsgID, err)
	}
	return m
}

// wantAppends checks how many message_sent events with clientMsgID reached
// the log, and returns them.
func wantAppends(t *testing.T, w *world, conv, clientMsgID string, n int) []logged {
	t.Helper()
	evs := w.log.sent(conv, clientMsgID)
	if len(evs) != n {
		t.Fatalf("%d appends of %s reached the log, want %d", len(evs), clientMsgID, n)
	}
	return evs
}

// loggedMessage is the message an event of the log holds.
func loggedMessage(t *testing.T, e logged) domain.Message {
	t.Helper()
	var p domain.MessageSent
	if err := e.Payload(&p); err != nil {
		t.Fatal(err)
	}
	return domain.Message{ConversationID: e.ConversationID, MessageID: p.MessageID, Seq: e.Seq, SenderID: e.Actor,
		ClientMsgID: p.ClientMsgID, Body: p.Body, SentAt: e.At}
}

// No record: the member's send claims in one round trip, appends once and
// stores the compact record; the read model is not asked.
func TestSendNoRecord(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	m := send(t, w.node(), "alice", conv, "k1", "hello")
	e := wantAppends(t, w, conv, "k1", 1)[0]
	if want := loggedMessage(t, e); !reflect.DeepEqual(m, want) {
		t.Fatalf("ack %+v, want the logged message %+v", m, want)
	}
	if !strings.HasPrefix(m.MessageID, "m_") || !m.SentAt.Equal(w.clock.Now()) {
		t.Fatalf("ack %+v: want an m_ id sent at the clock's %v", m, w.clock.Now())
	}
	if rec := w.redis.record(conv, "alice", "k1"); rec != encodeRecord(m) {
		t.Fatalf("record %q, want %q", rec, encodeRecord(m))
	}
	if n := w.redis.count("Reserve"); n != 0 {
		t.Fatalf("%d Reserve calls: a member's send claims with ReserveMember alone", n)
	}
	if soon, cas := w.redis.count("CompleteSoon"), w.redis.count("TakeOver"); soon != 1 || cas != 0 {
		t.Fatalf("a send acked at once: %d background records, %d compare-and-sets; want the record in the background", soon, cas)
	}
	if waits, lookups := w.read.counts(); waits+lookups != 0 {
		t.Fatalf("the read model was asked (%d waits, %d lookups) for a first send", waits, lookups)
	}
}

// A send whose produce took half of PendingStale or more completes its
// record by compare and set before it answers: a waiter may be about to
// take it over.
func TestSendSlowProduceCompletesBeforeTheAck(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	plan := w.log.next(appendPlan{gate: make(chan struct{})})
	r := goSend(w.node(), context.Background(), "alice", conv, "k1", "hello")
	waitClosed(t, plan.entered, "the send never produced")
	w.clock.Advance(5 * time.Second) // half the default PendingStale
	close(plan.gate)
	m := recv(t, r)
	if m.err != nil {
		t.Fatal(m.err)
	}
	if soon, cas := w.redis.count("CompleteSoon"), w.redis.count("TakeOver"); soon != 0 || cas != 1 {
		t.Fatalf("a slow send: %d background records, %d compare-and-sets; want one compare-and-set", soon, cas)
	}
	if rec := w.redis.record(conv, "alice", "k1"); rec != encodeRecord(m.m) {
		t.Fatalf("record %q, want %q", rec, encodeRecord(m.m))
	}
}

// c: (compact): a resend with the first body is answered from the record
// alone; with another body, from the read model; both get the first
// message, and nothing more is appended.
func TestSendCompactRecord(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	n1, n2 := w.node(), w.node()
	first := send(t, n1, "alice", conv, "k1", "hello")

	same := send(t, n2, "alice", conv, "k1", "hello")
	if !reflect.DeepEqual(same, first) {
		t.Fatalf("resend with the first body: %+v, want %+v", same, first)
	}
	if waits, lookups := w.read.counts(); waits+lookups != 0 {
		t.Fatalf("a resend with the first body asked the read model (%d waits, %d lookups)", waits, lookups)
	}

	other := send(t, n2, "alice", conv, "k1", "another body")
	if !reflect.DeepEqual(other, first) {
		t.Fatalf("resend with another body: %+v, want the first message %+v", other, first)
	}
	if waits, lookups := w.read.counts(); waits != 1 || lookups != 1 {
		t.Fatalf("a resend with another body: %d waits, %d lookups; want one of each", waits, lookups)
	}
	wantAppends(t, w, conv, "k1", 1)

	// A record the read model does not back (it lost the row): unavailable,
	// not a second message.
	ghost := domain.Message{ConversationID: conv, MessageID: "m_ghost", Seq: 7, SenderID: "alice", ClientMsgID: "k2", Body: "x", SentAt: w.clock.Now()}
	w.redis.setRecord(conv, "alice", "k2", encodeRecord(ghost))
	if m := send(t, n1, "alice", conv, "k2", "x"); !reflect.DeepEqual(m, ghost) {
		t.Fatalf("resend of k2 with its body: %+v, want %+v from the record", m, ghost)
	}
	if _, err := n1.Handle(context.Background(), "alice", SendMessage{ConversationID: conv, ClientMsgID: "k2", Body: "y"}); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("resend of k2 with another body, not in the read model: err %v, want unavailable", err)
	}
	wantAppends(t, w, conv, "k2", 0)

	// A record that does not decode is an error, never a new message.
	w.redis.setRecord(conv, "alice", "k3", "c:m_1|x|0|short")
	if _, err := n1.Handle(context.Background(), "alice", SendMessage{ConversationID: conv, ClientMsgID: "k3", Body: "x"}); err == nil {
		t.Fatal("a corrupt compact record answered")
	}
	wantAppends(t, w, conv, "k3", 0)
}

// d: (the acked record of earlier versions): the stored message is the
// answer, whatever the resend's body.
func TestSendLegacyRecord(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	old := domain.Message{ConversationID: conv, MessageID: "m_old", Seq: 42, SenderID: "alice", ClientMsgID: "k1",
		Body: "before the upgrade", SentAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)}
	b, _ := json.Marshal(old)
	w.redis.setRecord(conv, "alice", "k1", donePrefix+string(b))
	for _, body := range []string{old.Body, "another body"} {
		if m := send(t, w.node(), "alice", conv, "k1", body); !reflect.DeepEqual(m, old) {
			t.Fatalf("resend (%q) over a d: record: %+v, want %+v", body, m, old)
		}
	}
	w.redis.setRecord(conv, "alice", "k2", donePrefix+"{not json")
	if _, err := w.node().Handle(context.Background(), "alice", SendMessage{ConversationID: conv, ClientMsgID: "k2", Body: "x"}); err == nil || !strings.Contains(err.Error(), "idempotency record") {
		t.Fatalf("corrupt d: record: err %v", err)
	}
	wantAppends(t, w, conv, "k1", 0)
	wantAppends(t, w, conv, "k2", 0)
}

// p: that stays pending past PendingStale: the node is presumed dead. The
// caught-up read model says whether the log has the message: if it does,
// that message is the answer; if not, this send takes the record over
// (p:<id>/<n>) and appends with the same message id. A p:/n record (a
// takeover whose node died in turn) goes stale the same way.
func TestSendPendingGoesStale(t *testing.T) {
	t.Run("never produced", func(t *testing.T) {
		w := newWorld(t)
		conv := w.group("bob")
		w.redis.setRecord(conv, "alice", "k1", "p:m_dead")
		w.clock.setAuto()
		start := w.clock.Now()
		m := send(t, w.node(), "alice", conv, "k1", "retry")
		if waited := w.clock.Now().Sub(start); waited < 10*time.Second || waited > 10*time.Second+2*pendingPoll {
			t.Fatalf("waited %v for the pending send, want PendingStale (10s)", waited)
		}
		e := wantAppends(t, w, conv, "k1", 1)[0]
		if m.MessageID != "m_dead" || m.Body != "retry" || !reflect.DeepEqual(m, loggedMessage(t, e)) {
			t.Fatalf("takeover appended %+v, want the pending record's id m_dead with the retry's body", m)
		}
		if rec := w.redis.record(conv, "alice", "k1"); rec != encodeRecord(m) {
			t.Fatalf("record after the takeover %q, want %q", rec, encodeRecord(m))
		}
	})
	t.Run("produced, then died", func(t *testing.T) {
		w := newWorld(t)
		conv := w.group("bob")
		plan := w.log.next(appendPlan{die: true})
		ctx, kill := context.WithCancel(context.Background())
		dead := goSend(w.node(), ctx, "alice", conv, "k1", "first")
		var seq int64
		select {
		case seq = <-plan.seq:
		case <-time.After(guard):
			t.Fatal("the dying node never produced")
		}
		w.clock.setAuto()
		m := send(t, w.node(), "alice", conv, "k1", "retry")
		kill()
		if r := recv(t, dead); r.err == nil {
			t.Fatalf("the killed node answered %+v", r.m)
		}
		e := wantAppends(t, w, conv, "k1", 1)[0]
		if !reflect.DeepEqual(m, loggedMessage(t, e)) || m.Seq != seq || m.Body != "first" {
			t.Fatalf("retry got %+v, want the logged message at seq %d with the first body", m, seq)
		}
		if rec := w.redis.record(conv, "alice", "k1"); rec != encodeRecord(m) {
			t.Fatalf("record %q, want %q", rec, encodeRecord(m))
		}
	})
	t.Run("a takeover that died in turn", func(t *testing.T) {
		w := newWorld(t)
		conv := w.group("bob")
		w.redis.setRecord(conv, "alice", "k1", "p:m_dead/abcd1234")
		w.clock.setAuto()
		m := send(t, w.node(), "alice", conv, "k1", "retry")
		wantAppends(t, w, conv, "k1", 1)
		if m.MessageID != "m_dead" {
			t.Fatalf("takeover of p:m_dead/abcd1234 appended %s, want m_dead", m.MessageID)
		}
	})
	t.Run("read model down", func(t *testing.T) {
		w := newWorld(t)
		conv := w.group("bob")
		w.redis.setRecord(conv, "alice", "k1", "p:m_dead")
		w.read.waitErr = domain.ErrUnavailable
		w.clock.setAuto()
		if _, err := w.node().Handle(context.Background(), "alice", SendMessage{ConversationID: conv, ClientMsgID: "k1", Body: "x"}); !errors.Is(err, domain.ErrUnavailable) {
			t.Fatalf("stale pending send with the read model down: err %v, want unavailable", err)
		}
		wantAppends(t, w, conv, "k1", 0)
		if rec := w.redis.record(conv, "alice", "k1"); rec != "p:m_dead" {
			t.Fatalf("record %q: an unsettled send must not be taken over", rec)
		}
	})
	t.Run("context ends while waiting", func(t *testing.T) {
		w := newWorld(t)
		conv := w.group("bob")
		w.redis.setRecord(conv, "alice", "k1", "p:m_other")
		ctx, cancel := context.WithCancel(context.Background())
		r := goSend(w.node(), ctx, "alice", conv, "k1", "x")
		w.clock.waitForWaiter(t)
		cancel()
		if res := recv(t, r); !errors.Is(res.err, domain.ErrUnavailable) {
			t.Fatalf("err %v, want unavailable", res.err)
		}
		wantAppends(t, w, conv, "k1", 0)
	})
}

// f: (the produce failed): the retry goes straight (no PendingStale wait)
// to the read model: a produce that failed but was written is found there
// and returned; one that was not is appended with the same message id.
func TestSendFailedProduce(t *testing.T) {
	for _, written := range []bool{false, true} {
		name := "not written"
		if written {
			name = "failed but written"
		}
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			conv := w.group("bob")
			plan := w.log.next(appendPlan{fail: true, written: written})
			if _, err := w.node().Handle(context.Background(), "alice", SendMessage{ConversationID: conv, ClientMsgID: "k1", Body: "first"}); !errors.Is(err, domain.ErrUnavailable) {
				t.Fatalf("failed produce: err %v, want unavailable", err)
			}
			rec := w.redis.record(conv, "alice", "k1")
			if !strings.HasPrefix(rec, "f:m_") {
				t.Fatalf("record after a failed produce %q, want f:<message id>", rec)
			}
			id := strings.TrimPrefix(rec, "f:")
			before := w.clock.Now()
			m := send(t, w.node(), "alice", conv, "k1", "retry")
			if !w.clock.Now().Equal(before) {
				t.Fatal("the retry of a failed send waited")
			}
			e := wantAppends(t, w, conv, "k1", 1)[0]
			if !reflect.DeepEqual(m, loggedMessage(t, e)) || m.MessageID != id {
				t.Fatalf("retry got %+v, want the logged message with id %s", m, id)
			}
			if written {
				if m.Seq != <-plan.seq || m.Body != "first" {
					t.Fatalf("retry got %+v, want the first attempt's message", m)
				}
			} else if m.Body != "retry" {
				t.Fatalf("retry got %+v, want its own body appended", m)
			}
			if rec := w.redis.record(conv, "alice", "k1"); rec != encodeRecord(m) {
				t.Fatalf("record %q, want %q", rec, encodeRecord(m))
			}
		})
	}
	// Redis failed too as the produce failed: the record stays pending, and
	// the retry settles it after PendingStale.
	t.Run("record left pending", func(t *testing.T) {
		w := newWorld(t)
		conv := w.group("bob")
		w.log.next(appendPlan{fail: true})
		w.redis.before = func(op string) error {
			if op == "TakeOver" {
				w.redis.before = nil // fails once (no other goroutine reads it now)
				return domain.ErrUnavailable
			}
			return nil
		}
		if _, err := w.node().Handle(context.Background(), "alice", SendMessage{ConversationID: conv, ClientMsgID: "k1", Body: "first"}); err == nil {
			t.Fatal("failed produce answered")
		}
		rec := w.redis.record(conv, "alice", "k1")
		if !strings.HasPrefix(rec, "p:m_") {
			t.Fatalf("record %q, want the pending record left", rec)
		}
		w.clock.setAuto()
		start := w.clock.Now()
		m := send(t, w.node(), "alice", conv, "k1", "retry")
		if w.clock.Now().Sub(start) < 10*time.Second {
			t.Fatal("a pending record was taken over before PendingStale")
		}
		wantAppends(t, w, conv, "k1", 1)
		if m.MessageID != strings.TrimPrefix(rec, "p:") {
			t.Fatalf("retry appended %s, want %s", m.MessageID, rec)
		}
	})
}

// Expired or lost records: past IdemTTL a resend is a new message (the
// idempotency window); a pending record that vanishes while another send
// waits for it is settled at once through the read model.
func TestSendRecordExpiredOrLost(t *testing.T) {
	t.Run("expired", func(t *testing.T) {
		w := newWorld(t)
		conv := w.group("bob")
		first := send(t, w.node(), "alice", conv, "k1", "hello")
		w.clock.Advance(48*time.Hour - time.Millisecond)
		if m := send(t, w.node(), "alice", conv, "k1", "hello"); !reflect.DeepEqual(m, first) {
			t.Fatalf("resend within the window: %+v, want %+v", m, first)
		}
		w.clock.Advance(time.Millisecond)
		if rec := w.redis.record(conv, "alice", "k1"); rec != "" {
			t.Fatalf("record %q outlived IdemTTL", rec)
		}
		again := send(t, w.node(), "alice", conv, "k1", "hello")
		if again.MessageID == first.MessageID || again.Seq <= first.Seq {
			t.Fatalf("resend after the window: %+v, want a new message", again)
		}
		wantAppends(t, w, conv, "k1", 2)
		if _, lookups := w.read.counts(); lookups != 0 {
			t.Fatal("an intact conversation's send asked the read model")
		}
	})
	t.Run("lost while waiting", func(t *testing.T) {
		w := newWorld(t)
		conv := w.group("bob")
		w.redis.setRecord(conv, "alice", "k1", "p:m_other")
		start := w.clock.Now()
		r := goSend(w.node(), context.Background(), "alice", conv, "k1", "retry")
		w.clock.waitForWaiter(t)
		w.redis.dropRecord(conv, "alice", "k1")
		w.clock.Advance(pendingPoll)
		res := recv(t, r)
		if res.err != nil || res.m.MessageID != "m_other" {
			t.Fatalf("got %+v, %v; want the vanished record's id m_other appended", res.m, res.err)
		}
		wantAppends(t, w, conv, "k1", 1)
		if _, lookups := w.read.counts(); lookups == 0 {
			t.Fatal("appended without asking the read model")
		}
		if waited := w.clock.Now().Sub(start); waited != pendingPoll {
			t.Fatalf("waited %v, want one poll", waited)
		}
	})
}

// intact=false: Redis lost its data, so a won claim may hide a send acked
// before the loss; the read model is asked first. Within IdemTTL of the
// loss only: after that every record that could matter is back.
func TestSendAfterRedisLoss(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	n := w.node()
	first := send(t, n, "alice", conv, "k1", "hello")
	doubled := send(t, n, "alice", conv, "k2", "acked before the loss")
	w.redis.flushAll()

	// The retry of k1 rebuilds the members from the read model (the cache
	// knows nothing), wins a fresh claim and finds k1 in the read model.
	if m := send(t, n, "alice", conv, "k1", "hello"); !reflect.DeepEqual(m, first) {
		t.Fatalf("resend after the loss: %+v, want %+v", m, first)
	}
	wantAppends(t, w, conv, "k1", 1)
	if ms, complete := w.membersOf(conv); !complete || !ms["alice"].Member || !ms["bob"].Member {
		t.Fatalf("cache after the loss: %v complete %v, want rebuilt", ms, complete)
	}
	if rec := w.redis.record(conv, "alice", "k1"); rec != encodeRecord(first) {
		t.Fatalf("record %q, want %q", rec, encodeRecord(first))
	}

	// A new client_msg_id is looked up, not found, and appended.
	_, lookups := w.read.counts()
	send(t, n, "alice", conv, "k3", "new")
	wantAppends(t, w, conv, "k3", 1)
	if _, l := w.read.counts(); l != lookups+1 {
		t.Fatal("a send after the loss did not check the read model")
	}

	// With the read model down too, live chat goes on: the retry of k2
	// (acked before the loss) is appended again (docs/reliability.md), with
	// the same message id (derived from the send), so the read model keeps
	// one row, the first.
	w.read.waitErr = domain.ErrUnavailable
	if m := send(t, n, "alice", conv, "k2", "acked before the loss"); m.MessageID != doubled.MessageID || m.Seq == doubled.Seq {
		t.Fatalf("k2 with the read model down: %+v, want appended again as %s", m, doubled.MessageID)
	}
	wantAppends(t, w, conv, "k2", 2)
	w.read.waitErr = nil
	_ = w.read.WaitProjected(context.Background(), conv)
	if row, found := w.read.byClientID(conv, "alice", "k2"); !found || !reflect.DeepEqual(row, doubled) {
		t.Fatalf("read model holds %+v (%v) for k2, want the first append %+v", row, found, doubled)
	}

	// IdemTTL after the loss the conversation is intact again.
	w.clock.Advance(48*time.Hour + time.Second)
	_, lookups = w.read.counts()
	send(t, n, "alice", conv, "k4", "later")
	if _, l := w.read.counts(); l != lookups {
		t.Fatal("a send IdemTTL after the loss still checked the read model")
	}
}

// A send's message id is derived from the idempotency window it was
// claimed in: after a Redis loss, a retry in the next window still finds a
// send claimed at the end of the previous one, and a send after the window
// is a new message.
func TestSendAfterRedisLossAcrossWindows(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	n := w.node()
	ttl := int64(48 * time.Hour) // SendConfig's default IdemTTL
	boundary := time.Unix(0, (w.clock.Now().UnixNano()/ttl+1)*ttl)
	w.clock.Advance(boundary.Sub(w.clock.Now()) - time.Millisecond)
	first := send(t, n, "alice", conv, "k1", "hello")
	w.redis.flushAll()
	w.clock.Advance(2 * time.Millisecond) // the next window
	if m := send(t, n, "alice", conv, "k1", "hello"); !reflect.DeepEqual(m, first) {
		t.Fatalf("resend after the loss, in the next window: %+v, want %+v", m, first)
	}
	wantAppends(t, w, conv, "k1", 1)

	w.redis.flushAll()
	w.clock.Advance(48 * time.Hour) // two windows after the first send
	if m := send(t, n, "alice", conv, "k1", "hello"); m.MessageID == first.MessageID {
		t.Fatalf("a send %v after the first: %+v, want a new message", 48*time.Hour, m)
	}
	wantAppends(t, w, conv, "k1", 2)
}

// A client_msg_id reused after the window is a new message, and after a
// Redis loss its retry is answered with that message: not with the older
// one of the same client_msg_id in the previous window, and not with one
// older than the window (whose record would have expired).
func TestSendAfterRedisLossFindsTheLatestSend(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	n := w.node()
	first := send(t, n, "alice", conv, "k1", "first")
	w.clock.Advance(48*time.Hour + time.Second)
	second := send(t, n, "alice", conv, "k1", "second")
	if second.MessageID == first.MessageID {
		t.Fatalf("k1 reused after the window: %+v, want a new message", second)
	}
	w.clock.Advance(time.Hour)
	w.redis.flushAll()
	if m := send(t, n, "alice", conv, "k1", "second"); !reflect.DeepEqual(m, second) {
		t.Fatalf("retry after the loss: %+v, want the latest send %+v", m, second)
	}
	wantAppends(t, w, conv, "k1", 2)

	w.clock.Advance(48 * time.Hour) // second's record would have expired
	w.redis.flushAll()
	third := send(t, n, "alice", conv, "k1", "third")
	if third.MessageID == second.MessageID || third.Body != "third" {
		t.Fatalf("k1 reused past the window, after a loss: %+v, want a new message", third)
	}
	wantAppends(t, w, conv, "k1", 3)
}

// A node whose clock runs ahead claims a send in the next window; after a
// Redis loss, a retry on a node whose clock is right still finds it.
func TestSendAfterRedisLossWithClockSkew(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	ttl := int64(48 * time.Hour)
	boundary := time.Unix(0, (w.clock.Now().UnixNano()/ttl+1)*ttl)
	w.clock.Advance(boundary.Sub(w.clock.Now()) - 2*time.Millisecond)
	ahead := NewSendMessageHandler(w.log, w.redis, w.access(), w.read, w.read,
		SendConfig{Clock: skewedClock{w.clock, 5 * time.Millisecond}})
	first := send(t, ahead, "alice", conv, "k1", "hello")
	w.redis.flushAll()
	if m := send(t, w.node(), "alice", conv, "k1", "hello"); !reflect.DeepEqual(m, first) {
		t.Fatalf("resend after the loss on a node 5 ms behind the claim's: %+v, want %+v", m, first)
	}
	wantAppends(t, w, conv, "k1", 1)
}

// skewedClock is the world's clock, off by a fixed amount.
type skewedClock struct {
	*fakeClock
	by time.Duration
}

func (c skewedClock) Now() time.Time { return c.fakeClock.Now().Add(c.by) }

// A record names its message: a resend with another body is answered with
// that message, not with an older one of the same client_msg_id (the
// client reused it after the window).
func TestSendRecordNamesItsMessage(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	n := w.node()
	old := send(t, n, "alice", conv, "k1", "first")
	w.clock.Advance(48*time.Hour + time.Second) // the record expired
	second := send(t, n, "alice", conv, "k1", "second")
	if second.MessageID == old.MessageID {
		t.Fatalf("a send after the window reused %s", old.MessageID)
	}
	if m := send(t, n, "alice", conv, "k1", "another body"); !reflect.DeepEqual(m, second) {
		t.Fatalf("resend with another body: %+v, want the record's message %+v (not the older %s)", m, second, old.MessageID)
	}
	wantAppends(t, w, conv, "k1", 2)
}

// Only members send: a former member gets forbidden, anyone else not
// found; neither claims a record or appends. A Redis error is an error.
func TestSendAccess(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	leave := NewLeaveConversationHandler(w.log, w.redis, w.access(), w.clock)
	if err := leave.Handle(context.Background(), "bob", LeaveConversation{ConversationID: conv}); err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]error{"bob": domain.ErrForbidden, "mallory": domain.ErrNotFound} {
		if _, err := w.node().Handle(context.Background(), user, SendMessage{ConversationID: conv, ClientMsgID: "k1", Body: "x"}); !errors.Is(err, want) {
			t.Errorf("%s: err %v, want %v", user, err, want)
		}
		if rec := w.redis.record(conv, user, "k1"); rec != "" {
			t.Errorf("%s: refused send left record %q", user, rec)
		}
	}
	w.redis.before = func(string) error { return domain.ErrUnavailable }
	if _, err := w.node().Handle(context.Background(), "alice", SendMessage{ConversationID: conv, ClientMsgID: "k1", Body: "x"}); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("Redis down: err %v, want unavailable", err)
	}
	wantAppends(t, w, conv, "k1", 0)
}

// Race 1: the same client_msg_id sent on two nodes at once. One claims and
// appends; the other waits for its outcome: the acked record (same body:
// from the record; another body: the first message from the read model),
// or a failed record, which it settles by appending with the first id.
func TestSendRaceTwoNodes(t *testing.T) {
	for _, body := range []string{"first", "another body"} {
		t.Run("second body "+body, func(t *testing.T) {
			w := newWorld(t)
			conv := w.group("bob")
			plan := w.log.next(appendPlan{gate: make(chan struct{})})
			ra := goSend(w.node(), context.Background(), "alice", conv, "k1", "first")
			waitClosed(t, plan.entered, "node 1 never produced")
			rb := goSend(w.node(), context.Background(), "alice", conv, "k1", body)
			w.clock.waitForWaiter(t) // node 2 polls node 1's pending record
			close(plan.gate)
			a := recv(t, ra)
			w.clock.Advance(pendingPoll)
			b := recv(t, rb)
			if a.err != nil || b.err != nil {
				t.Fatalf("errors %v, %v", a.err, b.err)
			}
			e := wantAppends(t, w, conv, "k1", 1)[0]
			if !reflect.DeepEqual(a.m, loggedMessage(t, e)) || !reflect.DeepEqual(b.m, a.m) {
				t.Fatalf("node 1 got %+v, node 2 %+v; want both the logged message", a.m, b.m)
			}
		})
	}
	t.Run("first produce fails", func(t *testing.T) {
		w := newWorld(t)
		conv := w.group("bob")
		plan := w.log.next(appendPlan{gate: make(chan struct{}), fail: true})
		ra := goSend(w.node(), context.Background(), "alice", conv, "k1", "first")
		waitClosed(t, plan.entered, "node 1 never produced")
		rb := goSend(w.node(), context.Background(), "alice", conv, "k1", "second")
		w.clock.waitForWaiter(t)
		close(plan.gate)
		if a := recv(t, ra); !errors.Is(a.err, domain.ErrUnavailable) {
			t.Fatalf("node 1: %+v, %v; want unavailable", a.m, a.err)
		}
		id := strings.TrimPrefix(w.redis.record(conv, "alice", "k1"), "f:")
		w.clock.Advance(pendingPoll)
		b := recv(t, rb)
		e := wantAppends(t, w, conv, "k1", 1)[0]
		if b.err != nil || !reflect.DeepEqual(b.m, loggedMessage(t, e)) || b.m.MessageID != id {
			t.Fatalf("node 2 got %+v, %v; want the failed send's id %s appended", b.m, b.err, id)
		}
	})
}

// Two retries recover the same send at once, after a failed produce (f:)
// or a dead node (p: gone stale for both): both find nothing in the read
// model and both try to take the record over; one wins and appends, the
// other waits for it and gets the same message.
func TestSendRaceTwoRecoveries(t *testing.T) {
	for _, failed := range []bool{true, false} {
		name := "dead node"
		if failed {
			name = "failed produce"
		}
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			conv := w.group("bob")
			id := "m_dead"
			if failed {
				w.log.next(appendPlan{fail: true})
				if _, err := w.node().Handle(context.Background(), "alice", SendMessage{ConversationID: conv, ClientMsgID: "k1", Body: "first"}); err == nil {
					t.Fatal("failed produce answered")
				}
				id = strings.TrimPrefix(w.redis.record(conv, "alice", "k1"), "f:")
			} else {
				w.redis.setRecord(conv, "alice", "k1", "p:"+id)
			}

			// Both take-overs start together (each waits for the other to
			// arrive) and both have run before either node goes on.
			arrive, done := barrier(2), barrier(2)
			w.redis.before = func(op string) error {
				if op == "TakeOver" {
					arrive()
				}
				return nil
			}
			w.redis.after = func(op string) {
				if op == "TakeOver" {
					done()
				}
			}
			r := w.drive(t, w.sendFn("alice", conv, "k1", "retry 1"), w.sendFn("alice", conv, "k1", "retry 2"))
			a, b := r[0], r[1]
			if a.err != nil || b.err != nil {
				t.Fatalf("errors %v, %v", a.err, b.err)
			}
			e := wantAppends(t, w, conv, "k1", 1)[0]
			if !reflect.DeepEqual(a.m, b.m) || !reflect.DeepEqual(a.m, loggedMessage(t, e)) || a.m.MessageID != id {
				t.Fatalf("recoveries got %+v and %+v; want one message with id %s", a.m, b.m, id)
			}
			if n := w.redis.count("TakeOver"); n < 2 {
				t.Fatalf("%d take-overs, want the two racing", n)
			}
		})
	}
}

// barrier returns a func that blocks its first n callers until all n have
// called it; later callers pass.
func barrier(n int) func() {
	var mu sync.Mutex
	all := make(chan struct{})
	return func() {
		mu.Lock()
		if n--; n == 0 {
			close(all)
		}
		mu.Unlock()
		<-all
	}
}

// Race 2: the original send was only slow, not dead. Its late write and
// completion race the takeover.
func TestSendRaceTakeoverAndLateCompletion(t *testing.T) {
	// The original's append lands after the takeover's: the log holds the
	// message twice under one id (a duplicate produce, accepted by design),
	// the read model one row (the first), and both answers carry that id
	// and body. Which seq each answer and the final record carry is not
	// asserted: see the report of this change (the original's Complete
	// overwrites the takeover's record).
	t.Run("late append after the takeover's", func(t *testing.T) {
		w := newWorld(t)
		conv := w.group("bob")
		plan := w.log.next(appendPlan{gate: make(chan struct{})})
		ra := goSend(w.node(), context.Background(), "alice", conv, "k1", "hello")
		waitClosed(t, plan.entered, "the original never produced")
		b := w.drive(t, w.sendFn("alice", conv, "k1", "hello"))[0] // PendingStale passes; the takeover appends
		close(plan.gate)
		a := recv(t, ra)
		if a.err != nil || b.err != nil {
			t.Fatalf("errors %v, %v", a.err, b.err)
		}
		evs := wantAppends(t, w, conv, "k1", 2)
		first := loggedMessage(t, evs[0])
		if second := loggedMessage(t, evs[1]); second.MessageID != first.MessageID {
			t.Fatalf("the two appends carry ids %s and %s", first.MessageID, second.MessageID)
		}
		if !reflect.DeepEqual(b.m, first) {
			t.Fatalf("takeover got %+v, want its append %+v", b.m, first)
		}
		if a.m.MessageID != first.MessageID || a.m.Body != first.Body {
			t.Fatalf("original got %+v, want message %s", a.m, first.MessageID)
		}
		if err := w.read.WaitProjected(context.Background(), conv); err != nil {
			t.Fatal(err)
		}
		row, found := w.read.byClientID(conv, "alice", "k1")
		if !found || !reflect.DeepEqual(row, first) || len(w.read.messages(conv)) != 1 {
			t.Fatalf("read model holds %+v (%v), want the one row of the first append %+v", row, found, first)
		}
	})
	// The original writes and completes after the takeover's read-model
	// check but before its TakeOver: the takeover loses and answers the
	// original's message; the log holds it once.
	t.Run("late completion before the takeover", func(t *testing.T) {
		w := newWorld(t)
		conv := w.group("bob")
		plan := w.log.next(appendPlan{gate: make(chan struct{})})
		ra := goSend(w.node(), context.Background(), "alice", conv, "k1", "hello")
		waitClosed(t, plan.entered, "the original never produced")
		var a sendResult
		var once sync.Once
		w.read.afterWait = func() {
			once.Do(func() {
				close(plan.gate)
				a = <-ra
			})
		}
		b := w.drive(t, w.sendFn("alice", conv, "k1", "hello"))[0]
		if a.err != nil || b.err != nil {
			t.Fatalf("errors %v, %v", a.err, b.err)
		}
		e := wantAppends(t, w, conv, "k1", 1)[0]
		if !reflect.DeepEqual(a.m, loggedMessage(t, e)) || !reflect.DeepEqual(b.m, a.m) {
			t.Fatalf("original got %+v, takeover %+v; want both the one logged message", a.m, b.m)
		}
		if rec := w.redis.record(conv, "alice", "k1"); rec != encodeRecord(a.m) {
			t.Fatalf("record %q, want the original's %q", rec, encodeRecord(a.m))
		}
	})
}

// A record that would expire before a waiter gives up on it is refused at
// construction, as is a stale wait shorter than ten polls.
func TestSendConfigValidate(t *testing.T) {
	for _, c := range []SendConfig{{PendingStale: time.Millisecond}, {PendingStale: time.Minute, IdemTTL: time.Minute}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: accepted", c)
		}
	}
	if err := (SendConfig{PendingStale: 10 * time.Second, IdemTTL: 48 * time.Hour}).Validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
}

// aheadLog is the fake log as one that gathers sends (SendsAhead): it
// counts the sends announced and not withdrawn, and the appends made under
// an announcement.
type aheadLog struct {
	*fakeLog
	mu          sync.Mutex
	outstanding int
	announced   int // appends made under an announcement
}

type aheadKey struct{}

func (l *aheadLog) Expect(ctx context.Context) (context.Context, func()) {
	l.mu.Lock()
	l.outstanding++
	l.mu.Unlock()
	var once sync.Once
	release := func() {
		once.Do(func() {
			l.mu.Lock()
			l.outstanding--
			l.mu.Unlock()
		})
	}
	return context.WithValue(ctx, aheadKey{}, release), release
}

func (l *aheadLog) Append(ctx context.Context, e domain.Event) (int64, error) {
	if release, ok := ctx.Value(aheadKey{}).(func()); ok {
		l.mu.Lock()
		l.announced++
		l.mu.Unlock()
		release()
	}
	return l.fakeLog.Append(ctx, e)
}

func (l *aheadLog) counts() (outstanding, announced int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.outstanding, l.announced
}

// A send announces itself to a log that gathers sends before its claim,
// appends under the announcement, and withdraws it on every way out: a
// first send, a resend answered from the record, a refused send and a
// claim Redis failed. An announcement left behind would hold every later
// produce request of the node for the wait's bound.
func TestSendAnnouncesItselfToTheLog(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	log := &aheadLog{fakeLog: w.log}
	h := NewSendMessageHandler(log, w.redis, w.access(), w.read, w.read, SendConfig{Clock: w.clock})
	check := func(what string, wantAnnounced int) {
		t.Helper()
		if out, ann := log.counts(); out != 0 || ann != wantAnnounced {
			t.Fatalf("%s: %d announcements outstanding, %d appends announced; want 0 and %d", what, out, ann, wantAnnounced)
		}
	}
	first := send(t, h, "alice", conv, "k1", "hello")
	check("a first send", 1)
	if again := send(t, h, "alice", conv, "k1", "hello"); again.Seq != first.Seq {
		t.Fatalf("resend acked at seq %d, want the first's %d", again.Seq, first.Seq)
	}
	check("a resend answered from its record", 1)
	if _, err := h.Handle(context.Background(), "mallory", SendMessage{ConversationID: conv, ClientMsgID: "k2", Body: "x"}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("a stranger's send: %v, want not found", err)
	}
	check("a refused send", 1)
	w.redis.before = func(string) error { return domain.ErrUnavailable }
	if _, err := h.Handle(context.Background(), "alice", SendMessage{ConversationID: conv, ClientMsgID: "k3", Body: "x"}); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("Redis down: %v, want unavailable", err)
	}
	check("a claim Redis failed", 1)
}

// A resend that waits for another node's send in flight withdraws its
// announcement before it waits (up to PendingStale), not after: until it
// does, each produce request of its node waits for it.
func TestSendWithdrawsItsAnnouncementBeforeWaiting(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	log := &aheadLog{fakeLog: w.log}
	h := NewSendMessageHandler(log, w.redis, w.access(), w.read, w.read, SendConfig{Clock: w.clock})
	plan := w.log.next(appendPlan{gate: make(chan struct{})})
	ra := goSend(h, context.Background(), "alice", conv, "k1", "first")
	waitClosed(t, plan.entered, "the first send never produced")
	rb := goSend(h, context.Background(), "alice", conv, "k1", "first")
	w.clock.waitForWaiter(t) // the resend polls the pending record
	if out, _ := log.counts(); out != 0 {
		t.Fatalf("%d announcements outstanding while the resend waits, want 0", out)
	}
	close(plan.gate)
	a := recv(t, ra)
	w.clock.Advance(pendingPoll)
	if b := recv(t, rb); a.err != nil || b.err != nil || b.m.Seq != a.m.Seq {
		t.Fatalf("first %+v %v, resend %+v %v: want one message", a.m, a.err, b.m, b.err)
	}
}
