package kafkalog

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func rec(p int32, off int64) Consumed {
	return Consumed{Partition: p, Offset: off, Value: fmt.Appendf(nil, "%d/%d", p, off)}
}

func offsets(rs []Consumed) []int64 {
	out := make([]int64, len(rs))
	for i, r := range rs {
		out[i] = r.Offset
	}
	return out
}

func TestSequencerWaitsForTheLogBeforeTheFirstHandoff(t *testing.T) {
	s := newSequencer(1 << 20)
	s.assign([]int32{0})
	if out := s.fromHandoff(rec(0, 5), nil); len(out) != 0 {
		t.Fatalf("released %v before the log said where the partition starts", offsets(out))
	}
	if s.parts[0].next != -1 {
		t.Fatal("a next offset before the log delivered anything")
	}
	out := s.fromLog(rec(0, 4), 3, nil)
	if got := fmt.Sprint(offsets(out)); got != "[4 5]" {
		t.Fatalf("released %s, want [4 5]", got)
	}
	if next, epoch := s.parts[0].next, s.epochOf(0); next != 6 || epoch != 3 {
		t.Fatalf("next %d epoch %d, want 6 epoch 3", next, epoch)
	}
	if string(out[1].Value) != "0/5" {
		t.Fatalf("hand-off record's value %q", out[1].Value)
	}
}

func TestSequencerHoldsAHandoffUntilTheGapFills(t *testing.T) {
	s := newSequencer(1 << 20)
	s.assign([]int32{1})
	out := s.fromLog(rec(1, 10), 0, nil)
	out = s.fromHandoff(rec(1, 12), out) // 11 is another producer's, not here yet
	out = s.fromHandoff(rec(1, 13), out)
	if got := fmt.Sprint(offsets(out)); got != "[10]" {
		t.Fatalf("released %s past a gap", got)
	}
	out = s.fromHandoff(rec(1, 11), out[:0])
	if got := fmt.Sprint(offsets(out)); got != "[11 12 13]" {
		t.Fatalf("released %s, want [11 12 13]", got)
	}
	// The log brings them again, late: nothing released twice.
	for o := int64(11); o <= 13; o++ {
		if out := s.fromLog(rec(1, o), 0, nil); len(out) != 0 {
			t.Fatalf("offset %d released twice", o)
		}
	}
}

func TestSequencerFillsAGapFromTheLog(t *testing.T) {
	s := newSequencer(1 << 20)
	s.assign([]int32{0})
	s.fromLog(rec(0, 0), 0, nil)
	out := s.fromHandoff(rec(0, 2), nil) // 1 was never handed off (its producer died)
	if len(out) != 0 {
		t.Fatalf("released %v past a gap", offsets(out))
	}
	out = s.fromLog(rec(0, 1), 0, nil)
	if got := fmt.Sprint(offsets(out)); got != "[1 2]" {
		t.Fatalf("released %s, want [1 2]", got)
	}
}

func TestSequencerALogRecordBeyondNextProvesAHole(t *testing.T) {
	s := newSequencer(1 << 20)
	s.assign([]int32{0})
	s.fromLog(rec(0, 0), 0, nil)
	s.fromHandoff(rec(0, 7), nil)
	// Offsets 1-4 hold no record (a transaction's markers, say).
	out := s.fromLog(rec(0, 5), 0, nil)
	if got := fmt.Sprint(offsets(out)); got != "[5]" {
		t.Fatalf("released %s, want [5]", got)
	}
	out = s.fromHandoff(rec(0, 6), nil)
	if got := fmt.Sprint(offsets(out)); got != "[6 7]" {
		t.Fatalf("released %s, want [6 7]", got)
	}
}

func TestSequencerDropsWhatItDoesNotOwn(t *testing.T) {
	s := newSequencer(1 << 20)
	s.assign([]int32{0, 1})
	s.fromLog(rec(1, 0), 0, nil)
	s.revoke([]int32{1})
	if out := s.fromHandoff(rec(1, 1), nil); len(out) != 0 {
		t.Fatal("released a record of a revoked partition")
	}
	if out := s.fromLog(rec(2, 0), 0, nil); len(out) != 0 {
		t.Fatal("released a record of a partition never assigned")
	}
	if got := fmt.Sprint(s.owned()); got != "[0]" {
		t.Fatalf("owned %s", got)
	}
	// Assigned again: it starts over from the log's word.
	s.assign([]int32{1})
	if out := s.fromHandoff(rec(1, 1), nil); len(out) != 0 {
		t.Fatal("released before the log spoke after a new assignment")
	}
}

// sized is a record whose value is 100 bytes.
func sized(p int32, off int64) Consumed {
	return Consumed{Partition: p, Offset: off, Value: make([]byte, 100)}
}

// The records held ahead of a gap are bounded in bytes across partitions;
// what is not held comes from the log.
func TestSequencerBoundsPending(t *testing.T) {
	bound := 3 * pendingCost(make([]byte, 100))
	s := newSequencer(bound)
	s.assign([]int32{0})
	s.fromLog(rec(0, 0), 0, nil)
	// A record larger than the whole bound is never held.
	s.fromHandoff(Consumed{Partition: 0, Offset: 2, Value: make([]byte, bound)}, nil)
	for o := int64(2); o < 100; o++ {
		s.fromHandoff(sized(0, o), nil)
	}
	if n := len(s.parts[0].pending); n != 3 || s.pending != bound {
		t.Fatalf("%d records pending (%d bytes counted), bound 3 (%d bytes)", n, s.pending, bound)
	}
	// What was not held comes from the log, in order.
	var out []Consumed
	for o := int64(1); o < 100; o++ {
		out = s.fromLog(rec(0, o), 0, out)
	}
	for i, r := range out {
		if r.Offset != int64(i+1) {
			t.Fatalf("released out of order: %v", offsets(out))
		}
	}
	if s.pending != 0 {
		t.Fatalf("%d pending counted after everything was released", s.pending)
	}
	// The bound is shared: another partition's records count against it.
	s.assign([]int32{1})
	s.fromLog(rec(1, 0), 0, nil)
	for o := int64(2); o < 10; o++ {
		s.fromHandoff(sized(0, 100+o), nil)
		s.fromHandoff(sized(1, o), nil)
	}
	if s.pending != bound {
		t.Fatalf("%d bytes pending across partitions, bound %d", s.pending, bound)
	}
	s.revoke([]int32{0, 1})
	if s.pending != 0 {
		t.Fatalf("%d pending counted after the partitions were revoked", s.pending)
	}
}

// Any interleaving of a complete log and a partial, reordered hand-off
// releases every offset exactly once, in order.
func TestSequencerAnyInterleaving(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		const n = 60
		var handoff []Consumed
		for o := int64(3); o < n; o++ {
			if rng.IntN(4) > 0 { // a quarter never handed off
				handoff = append(handoff, rec(0, o))
			}
		}
		for i := range handoff { // producers race: local reorders
			if j := i + rng.IntN(3); j < len(handoff) {
				handoff[i], handoff[j] = handoff[j], handoff[i]
			}
		}
		s := newSequencer(1 << 20)
		s.assign([]int32{0})
		var out []Consumed
		logAt, hoAt := int64(3), 0
		for logAt < n || hoAt < len(handoff) {
			if hoAt < len(handoff) && (logAt >= n || rng.IntN(3) > 0) {
				out = s.fromHandoff(handoff[hoAt], out)
				hoAt++
				continue
			}
			out = s.fromLog(rec(0, logAt), 0, out)
			logAt++
		}
		if len(out) != n-3 {
			t.Fatalf("seed %d: released %d records, want %d: %v", seed, len(out), n-3, offsets(out))
		}
		for i, r := range out {
			if r.Offset != int64(i+3) || string(r.Value) != fmt.Sprintf("0/%d", r.Offset) {
				t.Fatalf("seed %d: released %v", seed, offsets(out))
			}
		}
	}
}

// When a record came on the live hand-off (Consumed.Received) survives
// the wait behind a gap, whichever copy of it is released: the fan-out
// judges a live record's age from it.
func TestSequencerKeepsWhenARecordCameLive(t *testing.T) {
	s := newSequencer(1 << 20)
	s.assign([]int32{0})
	at := time.Unix(1000, 0)
	live := func(off int64) Consumed {
		r := rec(0, off)
		r.Received = at.Add(time.Duration(off) * time.Second)
		return r
	}
	received := func(out []Consumed) string {
		var got []string
		for _, r := range out {
			if r.Received.IsZero() {
				got = append(got, fmt.Sprintf("%d:-", r.Offset))
			} else {
				got = append(got, fmt.Sprintf("%d:%d", r.Offset, r.Received.Unix()))
			}
		}
		return fmt.Sprint(got)
	}
	s.fromHandoff(live(7), nil)   // held: 4-6 first
	s.fromHandoff(rec(0, 5), nil) // from a stream's backlog
	s.fromHandoff(rec(0, 6), nil) // the backlog's copy first,
	s.fromHandoff(live(6), nil)   // then the channel's
	if got := received(s.fromLog(rec(0, 4), 0, nil)); got != "[4:- 5:- 6:1006 7:1007]" {
		t.Fatalf("released %s, want [4:- 5:- 6:1006 7:1007]", got)
	}
	// A log record that lands on a held one (the log skipped 8) is the
	// same record: it keeps when the channel brought it.
	s.fromHandoff(live(9), nil)
	if got := received(s.fromLog(rec(0, 9), 0, nil)); got != "[9:1009]" {
		t.Fatalf("released %s, want [9:1009]", got)
	}
}
