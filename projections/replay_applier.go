package projections

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// rebuildState is what one applier of a replay's rebuild carries from batch
// to batch besides its store's sentIDs: the conversations' last seqs,
// gathered in memory and written once per conversation when the applier
// ends (or holds maxDeferredLast of them), not once per batch as the live
// projector must: nobody reads the schema before the switch
// (docs/benchmarks.md, "Session 14").
//
// An applier reads its partitions in order and a conversation lives in one
// partition, so its state covers every conversation it writes.
type rebuildState struct {
	last map[string]lastSeqRow
}

// maxDeferredLast bounds a rebuildState's last seqs (a variable for the
// tests).
var maxDeferredLast = 1 << 18

func newRebuildState() *rebuildState {
	return &rebuildState{last: map[string]lastSeqRow{}}
}

// keep adds the last seqs of a committed batch.
func (rb *rebuildState) keep(rows []lastSeqRow) {
	for _, r := range rows {
		rb.last[r.id] = mergeLastSeq(rb.last[r.id], r)
	}
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
		_, err := tx.Exec(ctx, rebuildTxSettings)
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
