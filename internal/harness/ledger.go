package harness

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Ack is one message the server acked.
type Ack struct {
	MsgID, Conv, Sender, CMID string
	Seq                       int64
	At                        time.Time
}

// Ledger is what a run's judge needs: the acked messages and every
// member's Inbox. Its Tally is the run's verdict; it may be taken again
// and again while deliveries drain.
type Ledger struct {
	// Context, when set, adds what a member saw around a time to the
	// samples (the chaos test's client timelines).
	Context func(member string, at time.Time) string

	mu      sync.Mutex
	acks    map[string]Ack
	bySeq   map[string]string // conv/seq -> message id
	inboxes []*Inbox
	badAcks []string
}

// NewLedger is an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{acks: map[string]Ack{}, bySeq: map[string]string{}}
}

// Enroll adds a member; it is expected to get every acked message of the
// conversations its Inbox joined, and nothing of any other.
func (l *Ledger) Enroll(in *Inbox) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inboxes = append(l.inboxes, in)
}

// Ack records an acked message and reports whether it is new. An ack that
// contradicts an earlier one (the same message id as another message, or a
// seq taken by another message) is a bad ack.
func (l *Ledger) Ack(a Ack) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := fmt.Sprintf("%s/%d", a.Conv, a.Seq)
	if id, ok := l.bySeq[k]; ok && id != a.MsgID {
		l.badAcks = append(l.badAcks, fmt.Sprintf("bad ack: seq %s acked for messages %s and %s", k, id, a.MsgID))
	}
	l.bySeq[k] = a.MsgID
	prev, ok := l.acks[a.MsgID]
	if ok && (prev.Conv != a.Conv || prev.Seq != a.Seq || prev.Sender != a.Sender || prev.CMID != a.CMID) {
		l.badAcks = append(l.badAcks, fmt.Sprintf("bad ack: message %s acked as %s seq %d (%s/%s) and as %s seq %d (%s/%s)",
			a.MsgID, prev.Conv, prev.Seq, prev.Sender, prev.CMID, a.Conv, a.Seq, a.Sender, a.CMID))
	}
	if ok {
		return false
	}
	l.acks[a.MsgID] = a
	return true
}

// BadAck records an ack the client could not accept (malformed, or for
// another message than it sent).
func (l *Ledger) BadAck(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.badAcks = append(l.badAcks, "bad ack: "+fmt.Sprintf(format, a...))
}

// Get is the first ack of message id.
func (l *Ledger) Get(id string) (Ack, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.acks[id]
	return a, ok
}

// Acked is the number of messages acked.
func (l *Ledger) Acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// snapshot copies the acks (oldest first) and the members per conversation.
func (l *Ledger) snapshot() ([]Ack, map[string][]*Inbox, []*Inbox, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	acks := make([]Ack, 0, len(l.acks))
	for _, a := range l.acks {
		acks = append(acks, a)
	}
	sort.Slice(acks, func(i, j int) bool {
		if !acks[i].At.Equal(acks[j].At) {
			return acks[i].At.Before(acks[j].At)
		}
		return acks[i].MsgID < acks[j].MsgID
	})
	members := map[string][]*Inbox{}
	for _, in := range l.inboxes {
		for _, c := range in.Convs() {
			members[c] = append(members[c], in)
		}
	}
	return acks, members, append([]*Inbox(nil), l.inboxes...), append([]string(nil), l.badAcks...)
}

// Tally judges the run: deliveries from the inboxes and, when proj is not
// nil, the Postgres read model.
func (l *Ledger) Tally(proj *Projection) Tally {
	acks, members, inboxes, bad := l.snapshot()
	t := Tally{Acked: len(acks), BadAcks: len(bad)}
	for _, s := range bad {
		t.Sample("%s", s)
	}
	for _, in := range inboxes {
		for _, v := range in.Violations() {
			t.violation(v, l.context(v.Member, v.At))
		}
	}
	for _, a := range acks {
		for _, m := range members[a.Conv] {
			t.Expected++
			if m.Has(a.Conv, a.Seq, a.MsgID) {
				t.Delivered++
				continue
			}
			t.Lost++
			t.Sample("lost: message %s (conv %s seq %d, %s/%s, acked %s) never reached %s at its seq (arrived %d times)%s",
				a.MsgID, a.Conv, a.Seq, a.Sender, a.CMID, a.At.UTC().Format("15:04:05.000"), m.Name, m.Count(a.MsgID),
				l.context(m.Name, a.At))
		}
	}
	if proj != nil {
		t.project(acks, proj)
	}
	return t
}

func (l *Ledger) context(member string, at time.Time) string {
	if l.Context == nil {
		return ""
	}
	return "\n      timeline: " + l.Context(member, at)
}

func (t *Tally) violation(v Violation, context string) {
	switch v.Kind {
	case Duplicate:
		t.Duplicated++
	case OutOfOrder:
		t.OutOfOrder++
	case Foreign:
		t.Foreign++
	}
	t.Sample("%s: user %s conv %s seq %d: %s (at %s)%s", v.Kind, v.Member, v.Conv, v.Seq, v.Detail,
		v.At.UTC().Format("15:04:05.000"), context)
}

// Tally is the verdict on a run, in one shape for every suite.
type Tally struct {
	Acked      int // messages acked
	Expected   int // deliveries expected: acked x members
	Delivered  int // of those, at the acked seq
	Lost       int // of those, never at the acked seq
	Duplicated int // pushes a member got twice (the same seq, message or client_msg_id)
	OutOfOrder int // pushes below a seq the member had already seen
	Foreign    int // pushes of a conversation the member is not in
	BadAcks    int // acks contradicting each other or what was sent

	Projected  bool // the Postgres side was checked
	PGMissing  int  // acked, not in the messages read model
	PGTwice    int  // acked, two rows or two message_sent events
	PGOtherSeq int  // acked, projected at another seq
	PGMismatch int  // acked, projected in another conversation or for another sender/client_msg_id

	MissingIDs []string // the acked message ids missing in Postgres
	Samples    []string // the first violations, naming the message ids
}

// maxSamples bounds the samples: the first ones tell what broke.
const maxSamples = 40

// Sample adds a line to the samples, up to maxSamples.
func (t *Tally) Sample(format string, a ...any) {
	if len(t.Samples) < maxSamples {
		t.Samples = append(t.Samples, fmt.Sprintf(format, a...))
	}
}

// Failed reports whether a guarantee broke.
func (t *Tally) Failed() bool {
	return t.Lost+t.Duplicated+t.OutOfOrder+t.Foreign+t.BadAcks+t.PGMissing+t.PGTwice+t.PGOtherSeq+t.PGMismatch > 0
}

// Line is one row of the table: a suite's own figures after the tally's.
type Line struct {
	Name  string
	Value any
}

// Table renders the tally, then extra, in the one layout of every suite.
func (t *Tally) Table(extra ...Line) string {
	lines := []Line{
		{"messages acked", t.Acked},
		{"deliveries expected (acked x members)", t.Expected},
		{"delivered", t.Delivered},
		{"lost", t.Lost},
		{"duplicated", t.Duplicated},
		{"out of order", t.OutOfOrder},
		{"received by a non-member", t.Foreign},
		{"bad acks", t.BadAcks},
	}
	if t.Projected {
		lines = append(lines, Line{"acked but missing in Postgres", t.PGMissing}, Line{"acked and projected twice", t.PGTwice},
			Line{"acked but projected at another seq", t.PGOtherSeq}, Line{"acked but different in Postgres", t.PGMismatch})
	}
	var b strings.Builder
	for _, l := range append(lines, extra...) {
		fmt.Fprintf(&b, "  %-44s %v\n", l.Name, l.Value)
	}
	return b.String()
}
