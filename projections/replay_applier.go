package projections

import (
	"context"
	"hash/maphash"

	"github.com/jackc/pgx/v5"
)

// rebuildState is what one applier of a replay's rebuild carries from batch
// to batch, so that its batches skip two costs the live projector pays per
// batch (docs/benchmarks.md, "Session 14"):
//
//   - the messages insert has no ON CONFLICT (a speculative insertion that
//     costs twice a plain one): the applier remembers the message ids it has
//     written and routes a repeated one (a duplicate produce) to event_log,
//     as the ON CONFLICT path would. Past maxSeen ids it forgets them all; a
//     repeat it no longer knows meets the unique index, and that batch is
//     applied again guarded (errConflict), so the rows stay the same.
//   - conversations' last seqs are gathered in memory and written once per
//     conversation when the applier ends (or holds maxDeferredLast of
//     them), not once per batch: nobody reads the schema before the switch.
//
// An applier reads its partitions in order and a conversation lives in one
// partition, so its state covers every conversation it writes.
type rebuildState struct {
	seen map[msgKey]struct{}
	last map[string]lastSeqRow
	// What the batch being written adds: its ids go into seen at once (a
	// copy per batch cost more than the inserts saved) and leave it again
	// at the next begin unless commit kept them; its last seqs wait for
	// commit.
	added   []msgKey
	newLast []lastSeqRow
	h       [2]maphash.Hash // seeded apart by newRebuildState
}

// msgKey is a message id within its conversation as 128 bits of two
// seeded hashes: no pointers for the collector to scan and no decoded
// payload kept alive by the set (the string pairs it replaced cost a fifth
// of the replay's Go CPU in garbage collection). A lookup meets another id
// by chance with a probability of at most maxSeen/2¹²⁸ (2⁻¹⁰⁸): over 10¹²
// messages, about 10⁻²⁰.
type msgKey [2]uint64

func (rb *rebuildState) key(c, id string) msgKey {
	var k msgKey
	for i := range k {
		rb.h[i].Reset()
		rb.h[i].WriteString(c)
		rb.h[i].WriteByte(0)
		rb.h[i].WriteString(id)
		k[i] = rb.h[i].Sum64()
	}
	return k
}

// Bounds of a rebuildState (variables for the tests).
var (
	maxSeen         = 1 << 20
	maxDeferredLast = 1 << 18
)

func newRebuildState() *rebuildState {
	rb := &rebuildState{seen: map[msgKey]struct{}{}, last: map[string]lastSeqRow{}}
	rb.h[0].SetSeed(maphash.MakeSeed())
	rb.h[1].SetSeed(maphash.MakeSeed())
	return rb
}

// begin starts a batch's attempt, forgetting what an uncommitted one added.
func (rb *rebuildState) begin() {
	for _, k := range rb.added {
		delete(rb.seen, k)
	}
	rb.added = rb.added[:0]
	rb.newLast = rb.newLast[:0]
}

// repeated reports whether message id of conversation c was written
// before (by a committed batch or earlier in this one), and notes it.
func (rb *rebuildState) repeated(c, id string) bool {
	k := rb.key(c, id)
	if _, ok := rb.seen[k]; ok {
		return true
	}
	rb.seen[k] = struct{}{}
	rb.added = append(rb.added, k)
	return false
}

// commit keeps what the batch's committed transaction wrote.
func (rb *rebuildState) commit() {
	if len(rb.seen) > maxSeen {
		clear(rb.seen)
	}
	for _, r := range rb.newLast {
		rb.last[r.id] = mergeLastSeq(rb.last[r.id], r)
	}
	rb.added, rb.newLast = rb.added[:0], rb.newLast[:0]
}

// mergeLastSeq is what lastSeqSQL makes of a conversation's rows of two
// batches, older first, applied one after the other.
func mergeLastSeq(old, r lastSeqRow) lastSeqRow {
	if old.id == "" {
		return r
	}
	if r.seq > old.seq {
		old.seq, old.at = r.seq, r.at
	}
	old.msg = max(old.msg, r.msg)
	return old
}

// flushLast writes the gathered last seqs in one transaction.
func (rb *rebuildState) flushLast(ctx context.Context, st *Store) error {
	if len(rb.last) == 0 {
		return nil
	}
	var t table[lastSeqRow]
	for _, r := range rb.last {
		t.add(r)
	}
	err := pgx.BeginFunc(ctx, st.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT set_config('synchronous_commit', 'off', true), `+planSettings)
		if err == nil {
			_, err = tx.Exec(ctx, st.q(lastSeqSQL), t.args()...)
		}
		return err
	})
	if err != nil {
		return unavailable("replay last seqs", err)
	}
	clear(rb.last)
	return nil
}
