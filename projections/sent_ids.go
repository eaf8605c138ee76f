package projections

import (
	"hash/maphash"
	"sync"
)

// sentIDs remembers the message ids a store's committed batches wrote, with
// their seqs, so that its messages insert needs no ON CONFLICT, a
// speculative insertion that costs twice a plain one (docs/benchmarks.md,
// "Session 14"). The batch builder does what ON CONFLICT and writeUnfolded
// did for a known id at another seq (a duplicate produce): its event goes
// to event_log. A known id at its own seq (the record applied again) and a
// repeat it does not know (after a restart, a rebalance, or once maxSeen
// ids made it forget them all) meet the unique index instead, and the
// batch is applied again guarded (errConflict): the rows are the same
// either way, only slower. The memory only ever says "another seq had this
// id", never "this row is there": a database restored under a running
// projector loses rows the memory saw written.
type sentIDs struct {
	mu     sync.Mutex
	schema string           // the schema the ids were written to
	seen   map[msgKey]int64 // -> seq
	seeds  [2]maphash.Seed
}

// sentID is a message id written at seq.
type sentID struct {
	key msgKey
	seq int64
}

// msgKey is a message id within its conversation as 128 bits of two
// seeded hashes: no pointers for the collector to scan and no decoded
// payload kept alive by the set (string pairs cost a fifth of the replay's
// Go CPU in garbage collection). A lookup meets another id by chance with
// a probability of at most maxSeen/2¹²⁸ (2⁻¹⁰⁸): over 10¹² messages, about
// 10⁻²⁰.
type msgKey [2]uint64

// maxSeen bounds a sentIDs (a variable for the tests).
var maxSeen = 1 << 20

func newSentIDs() *sentIDs {
	return &sentIDs{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
}

func (m *sentIDs) key(c, id string) msgKey {
	var k msgKey
	for i := range k {
		var h maphash.Hash
		h.SetSeed(m.seeds[i])
		h.WriteString(c)
		h.WriteByte(0)
		h.WriteString(id)
		k[i] = h.Sum64()
	}
	return k
}

// seqOf is the seq at which a committed batch wrote k to schema.
func (m *sentIDs) seqOf(schema string, k msgKey) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seq, ok := m.seen[k]
	return seq, ok && m.schema == schema
}

// remember keeps what a committed batch wrote to schema. Another schema (a
// replay switched the store) starts the memory over.
func (m *sentIDs) remember(schema string, ids []sentID) {
	if m == nil || len(ids) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		m.seen = make(map[msgKey]int64, len(ids))
	}
	if m.schema != schema || len(m.seen)+len(ids) > maxSeen {
		clear(m.seen)
		m.schema = schema
	}
	for _, id := range ids {
		if at, ok := m.seen[id.key]; !ok || id.seq < at {
			m.seen[id.key] = id.seq // the earliest seq met: the original's, or nearer to it
		}
	}
}
