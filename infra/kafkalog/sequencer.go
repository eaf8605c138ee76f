package kafkalog

import (
	"slices"
	"time"
)

// sequencer merges two sources of one partition's records into log order:
// the log itself (complete, in order, possibly late) and the hand-off
// (records the producers pass on as soon as they are acked: early, but
// possibly out of order across producers, and missing what a producer
// did not hand over). A record is released only when it is the next
// offset of its partition, so the consumer sees each partition's records
// once, in order, whichever source brought them first.
//
// A partition's next offset is where the group starts it (start), or, if
// that could not be learnt, unknown until the log delivers its first
// record; hand-off records wait until then. A log record
// beyond next proves the offsets between hold no record (transaction
// markers, retention) and moves next past them.
type sequencer struct {
	parts      map[int32]*seqPartition
	maxPending int // bytes across partitions; past it hand-off records wait for the log
	pending    int // bytes held (pendingCost of each record)
}

// pendingCost is what a held record counts against the bound: its value
// and about what the map keeps beside it. Counting bytes, not records,
// keeps the bound whatever the events' size (a body of control characters
// escapes to six times its length).
func pendingCost(v []byte) int { return len(v) + 64 }

// held is a handed-off record waiting for the offsets before it.
type held struct {
	value    []byte
	received time.Time // Consumed.Received
}

type seqPartition struct {
	next    int64 // -1: unknown
	epoch   int32 // leader epoch of the last log record (for commits)
	pending map[int64]held
}

func newSequencer(maxPending int) *sequencer {
	return &sequencer{parts: map[int32]*seqPartition{}, maxPending: maxPending}
}

// assign starts partitions afresh: their next offset is unknown.
func (s *sequencer) assign(ps []int32) {
	for _, p := range ps {
		s.drop(p)
		s.parts[p] = &seqPartition{next: -1, epoch: -1, pending: map[int64]held{}}
	}
}

// drop forgets p's pending records.
func (s *sequencer) drop(p int32) {
	if sp := s.parts[p]; sp != nil {
		for _, v := range sp.pending {
			s.pending -= pendingCost(v.value)
		}
		sp.pending = map[int64]held{}
	}
}

// start sets where an assigned partition's records begin (the group's
// start offset), so hand-off records are released before the log speaks.
func (s *sequencer) start(p int32, offset int64) {
	if sp := s.parts[p]; sp != nil && sp.next < 0 {
		s.drop(p)
		sp.next = offset
	}
}

// revoke forgets partitions: their records are dropped from now on.
func (s *sequencer) revoke(ps []int32) {
	for _, p := range ps {
		s.drop(p)
		delete(s.parts, p)
	}
}

// owned lists the assigned partitions, sorted.
func (s *sequencer) owned() []int32 {
	out := make([]int32, 0, len(s.parts))
	for p := range s.parts {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// fromLog takes a record read from the log (in order per partition) and
// appends what it releases to out.
func (s *sequencer) fromLog(r Consumed, epoch int32, out []Consumed) []Consumed {
	sp := s.parts[r.Partition]
	if sp == nil {
		return out
	}
	sp.epoch = epoch
	if sp.next >= 0 && r.Offset < sp.next {
		return out // handed off before
	}
	if h, ok := sp.pending[r.Offset]; ok {
		r.Received = h.received // the same record, handed off too
	}
	s.dropThrough(sp, r.Offset)
	sp.next = r.Offset + 1
	return s.drain(sp, r.Partition, append(out, r))
}

// dropThrough drops the pending records at or below offset: those in
// [next, offset] when next is known, looked up one by one or by a scan of
// what is pending, whichever is shorter (a log record per call must not
// cost a scan of everything held behind a gap).
func (s *sequencer) dropThrough(sp *seqPartition, offset int64) {
	if sp.next >= 0 && offset-sp.next < int64(len(sp.pending)) {
		for o := sp.next; o <= offset; o++ {
			if v, ok := sp.pending[o]; ok {
				delete(sp.pending, o)
				s.pending -= pendingCost(v.value)
			}
		}
		return
	}
	for o, v := range sp.pending {
		if o <= offset {
			delete(sp.pending, o)
			s.pending -= pendingCost(v.value)
		}
	}
}

// fromHandoff takes a handed-off record and appends what it releases.
func (s *sequencer) fromHandoff(r Consumed, out []Consumed) []Consumed {
	sp := s.parts[r.Partition]
	if sp == nil || (sp.next >= 0 && r.Offset < sp.next) {
		return out
	}
	if r.Offset != sp.next {
		h, waiting := sp.pending[r.Offset]
		switch {
		case !waiting && s.pending+pendingCost(r.Value) <= s.maxPending:
			sp.pending[r.Offset] = held{r.Value, r.Received}
			s.pending += pendingCost(r.Value)
		case waiting && h.received.IsZero() && !r.Received.IsZero():
			// The backlog's copy came first; the channel's says when.
			sp.pending[r.Offset] = held{h.value, r.Received}
		}
		return out
	}
	sp.next++
	return s.drain(sp, r.Partition, append(out, r))
}

// drain releases the pending records of p that continue next.
func (s *sequencer) drain(sp *seqPartition, p int32, out []Consumed) []Consumed {
	for len(sp.pending) > 0 {
		v, ok := sp.pending[sp.next]
		if !ok {
			break
		}
		delete(sp.pending, sp.next)
		s.pending -= pendingCost(v.value)
		out = append(out, Consumed{Partition: p, Offset: sp.next, Value: v.value, Received: v.received})
		sp.next++
	}
	return out
}

// epochOf is the leader epoch of p's last log record (-1: none), which a
// commit of p's offsets carries.
func (s *sequencer) epochOf(p int32) int32 {
	if sp := s.parts[p]; sp != nil {
		return sp.epoch
	}
	return -1
}
