package harness

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// run is a tiny ledger: two members of conversation c, each message acked
// at seq 1, 2, ... and received as deliver says.
type run struct {
	l      *Ledger
	alice  *Inbox
	bob    *Inbox
	outsid *Inbox
	proj   *Projection
}

func newRun(t *testing.T, msgs ...string) *run {
	t.Helper()
	r := &run{l: NewLedger(), alice: NewInbox("alice"), bob: NewInbox("bob"), outsid: NewInbox("carol"),
		proj: &Projection{Messages: map[string][]Row{}, Events: map[string]int{}}}
	for _, in := range []*Inbox{r.alice, r.bob} {
		in.Join("c", 0)
		r.l.Enroll(in)
	}
	r.l.Enroll(r.outsid)
	for i, id := range msgs {
		a := Ack{MsgID: id, Conv: "c", Sender: "alice", CMID: "cm-" + id, Seq: int64(i + 1), At: time.Unix(int64(i), 0)}
		if !r.l.Ack(a) {
			t.Fatalf("ack %s not new", id)
		}
		r.proj.Messages[id] = []Row{{Conv: "c", Sender: "alice", CMID: "cm-" + id, Seq: a.Seq}}
		r.proj.Events[id] = 1
	}
	return r
}

func (r *run) push(in *Inbox, conv, id string, seq int64) *Violation {
	return in.Add(Push{Type: domain.PushMessageNew, Conv: conv, Seq: seq, MsgID: id, Sender: "alice", CMID: "cm-" + id}, "conn 1", time.Now())
}

// deliverAll gives every member every message, in order.
func (r *run) deliverAll(ids ...string) {
	for _, in := range []*Inbox{r.alice, r.bob} {
		for i, id := range ids {
			r.push(in, "c", id, int64(i+1))
		}
	}
}

func want(t *testing.T, got Tally, w Tally) {
	t.Helper()
	got.Samples, got.MissingIDs = nil, nil
	w.Projected = true
	if !reflect.DeepEqual(got, w) {
		t.Errorf("tally\n got %+v\nwant %+v", got, w)
	}
}

func TestClean(t *testing.T) {
	r := newRun(t, "m1", "m2", "m3")
	r.deliverAll("m1", "m2", "m3")
	tl := r.l.Tally(r.proj)
	want(t, tl, Tally{Acked: 3, Expected: 6, Delivered: 6})
	if tl.Failed() || len(tl.Samples) != 0 {
		t.Errorf("a clean run failed: %v", tl.Samples)
	}
	if tbl := tl.Table(Line{"reconnects", 4}); !strings.Contains(tbl, "  lost                                         0\n") ||
		!strings.HasSuffix(tbl, "  reconnects                                   4\n") {
		t.Errorf("table:\n%s", tbl)
	}
}

func TestLostDelivery(t *testing.T) {
	r := newRun(t, "m1", "m2")
	r.deliverAll("m1", "m2")
	r.push(r.alice, "c", "m3", 3) // acked later; bob never gets it
	r.l.Ack(Ack{MsgID: "m3", Conv: "c", Sender: "alice", CMID: "cm-m3", Seq: 3, At: time.Unix(9, 0)})
	r.proj.Messages["m3"] = []Row{{Conv: "c", Sender: "alice", CMID: "cm-m3", Seq: 3}}
	tl := r.l.Tally(r.proj)
	want(t, tl, Tally{Acked: 3, Expected: 6, Delivered: 5, Lost: 1})
	if !tl.Failed() || !sampled(tl, "lost: message m3", "never reached bob") {
		t.Errorf("lost delivery not reported: %v", tl.Samples)
	}
}

func TestDuplicate(t *testing.T) {
	r := newRun(t, "m1", "m2")
	r.deliverAll("m1", "m2")
	if v := r.push(r.bob, "c", "m2", 2); v == nil || v.Kind != Duplicate {
		t.Errorf("the same seq again: %+v", v)
	}
	if v := r.push(r.bob, "c", "m1", 3); v == nil || v.Kind != Duplicate { // the same message at another seq
		t.Errorf("the same message at another seq: %+v", v)
	}
	tl := r.l.Tally(r.proj)
	want(t, tl, Tally{Acked: 2, Expected: 4, Delivered: 4, Duplicated: 2})
	if !tl.Failed() || !sampled(tl, "duplicate: user bob", "message m1 at seq 3, already received at seq 1") {
		t.Errorf("duplicate not reported: %v", tl.Samples)
	}
}

func TestOutOfOrder(t *testing.T) {
	r := newRun(t, "m1", "m2")
	r.push(r.alice, "c", "m1", 1)
	r.push(r.alice, "c", "m2", 2)
	r.push(r.bob, "c", "m2", 2)
	if v := r.push(r.bob, "c", "m1", 1); v == nil || v.Kind != OutOfOrder {
		t.Errorf("seq 1 after seq 2: %+v", v)
	}
	tl := r.l.Tally(r.proj)
	want(t, tl, Tally{Acked: 2, Expected: 4, Delivered: 4, OutOfOrder: 1})
	if !tl.Failed() || !sampled(tl, "out_of_order: user bob conv c seq 1") {
		t.Errorf("out of order not reported: %v", tl.Samples)
	}
}

func TestForeign(t *testing.T) {
	r := newRun(t, "m1")
	r.deliverAll("m1")
	if v := r.push(r.outsid, "c", "m1", 1); v == nil || v.Kind != Foreign {
		t.Errorf("a push to a non-member: %+v", v)
	}
	want(t, r.l.Tally(r.proj), Tally{Acked: 1, Expected: 2, Delivered: 2, Foreign: 1})
}

func TestMissingInPostgres(t *testing.T) {
	r := newRun(t, "m1", "m2", "m3")
	r.deliverAll("m1", "m2", "m3")
	delete(r.proj.Messages, "m2")
	tl := r.l.Tally(r.proj)
	want(t, tl, Tally{Acked: 3, Expected: 6, Delivered: 6, PGMissing: 1})
	if !tl.Failed() || len(tl.MissingIDs) != 1 || tl.MissingIDs[0] != "m2" || !sampled(tl, "acked message m2") {
		t.Errorf("missing row not reported: %v %v", tl.MissingIDs, tl.Samples)
	}
}

func TestProjectedTwiceOrElsewhere(t *testing.T) {
	r := newRun(t, "m1", "m2", "m3")
	r.deliverAll("m1", "m2", "m3")
	r.proj.Events["m1"] = 2
	r.proj.Messages["m2"] = []Row{{Conv: "c", Sender: "alice", CMID: "cm-m2", Seq: 7}}
	r.proj.Messages["m3"] = []Row{{Conv: "c", Sender: "bob", CMID: "cm-m3", Seq: 3}}
	want(t, r.l.Tally(r.proj), Tally{Acked: 3, Expected: 6, Delivered: 6, PGTwice: 1, PGOtherSeq: 1, PGMismatch: 1})
}

func TestBadAcks(t *testing.T) {
	r := newRun(t, "m1", "m2")
	r.deliverAll("m1", "m2")
	if r.l.Ack(Ack{MsgID: "m1", Conv: "c", Sender: "alice", CMID: "cm-m1", Seq: 1}) {
		t.Errorf("a resend's ack counted as a new message")
	}
	r.l.Ack(Ack{MsgID: "m1", Conv: "c", Sender: "alice", CMID: "cm-m1", Seq: 5}) // a resend acked at another seq
	r.l.Ack(Ack{MsgID: "m9", Conv: "c", Sender: "bob", CMID: "x", Seq: 2})       // another message at m2's seq
	r.proj.Messages["m9"] = []Row{{Conv: "c", Sender: "bob", CMID: "x", Seq: 2}}
	r.push(r.alice, "c", "m9", 2) // alice had seq 2 already: a duplicate push
	tl := r.l.Tally(r.proj)
	// m9 never reached bob (nor alice at seq 2: she holds m2 there).
	want(t, tl, Tally{Acked: 3, Expected: 6, Delivered: 4, Lost: 2, Duplicated: 1, BadAcks: 2})
}

func TestWithoutProjection(t *testing.T) {
	r := newRun(t, "m1")
	r.deliverAll("m1")
	tl := r.l.Tally(nil)
	if tl.Projected || tl.Failed() || strings.Contains(tl.Table(), "Postgres") {
		t.Errorf("tally without Postgres: %+v\n%s", tl, tl.Table())
	}
}

func sampled(t Tally, subs ...string) bool {
	for _, s := range t.Samples {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(s, sub)
		}
		if all {
			return true
		}
	}
	return false
}
