package projections

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// prepared are the rows of a batch, built before its transaction.
type prepared struct {
	fresh  int    // how many records were built
	schema string // the schema whose sent ids the build consulted
	rows   *batchRows
	search *searchRows
}

// prepare builds batch's rows ahead of its transaction, as if every valid
// record continued the stored offsets, which it does unless the batch is
// applied again (writeTx then builds what does). pending are the message
// ids of the batch before, sent but not yet committed.
func (s *Store) prepare(batch []Record, pending []sentID) *prepared {
	fresh := make([]Record, 0, len(batch))
	for _, r := range batch {
		if !r.Invalid {
			fresh = append(fresh, r)
		}
	}
	return s.prepareAfter(fresh, pending)
}

// prepareAfter builds the rows of fresh, the records that continue the
// offsets, for the parts s writes, after a batch writing the message ids
// pending (nil when none is in flight).
func (s *Store) prepareAfter(fresh []Record, pending []sentID) *prepared {
	p := &prepared{fresh: len(fresh), schema: s.Schema(), rows: &batchRows{}, search: &searchRows{}}
	if len(fresh) > 0 && s.writesHistory() {
		p.rows = buildBatchAfter(fresh, s, pending)
	}
	if len(fresh) > 0 && s.writesSearch() {
		p.search = buildSearch(fresh)
	}
	return p
}

// fits reports whether p holds the rows of fresh in schema: the same
// records (fresh is a subsequence of what p was built from, so the same
// count is the same records), and sent ids looked up in the same schema.
func (p *prepared) fits(fresh []Record, schema string) bool {
	return p != nil && p.fresh == len(fresh) && p.schema == schema
}

// Pipeline applies batches in order, one transaction at a time, and builds
// each batch's rows (decoding its events, reducing them to the statements'
// arrays) while the batch before it is in Postgres: on one backend the
// projector's Go work and Postgres's then overlap instead of taking turns.
//
// A batch is built knowing the message ids the batch before it writes
// (pending), so a duplicate produce across the two is routed as one
// within a batch is; should the batch before commit other rows than it was
// built with, rows built on its ids are built again in their transaction.
//
// Apply returns once the batch before has committed and this one is sent:
// nil says the batch before was applied, not this one. A batch that fails
// for want of Postgres is retried in the background with backoff, as the
// consumer retried a batch before (the next Apply waits for it); one that
// does not continue the stored offsets is told to OnGap at once (the
// consumer rewinds), or without it fails the next Apply (or Flush) with
// ErrOffsetGap, so the consumer re-reads from them. A batch sent goes on
// for shutdownGrace after the context of its Apply is done, and is not
// retried then. Apply and Flush are called from one
// goroutine.
type Pipeline struct {
	s       *Store
	prev    chan applied // the batch in Postgres; nil when none
	pending []sentID     // its message ids
}

// applied is the outcome of a batch in Postgres: whether it committed the
// rows built ahead, or its error; told: its ErrOffsetGap went to OnGap
// already.
type applied struct {
	prepared bool
	err      error
	told     bool
}

// shutdownGrace is how long a batch sent goes on after the context of its
// Apply is done; backoff the wait between attempts.
const (
	shutdownGrace = 5 * time.Second
	backoffMin    = 50 * time.Millisecond
	backoffMax    = 2 * time.Second
)

// Pipeline returns a pipeline applying batches to s.
func (s *Store) Pipeline() *Pipeline { return &Pipeline{s: s} }

// Apply builds batch's rows, waits for the batch before it, and sends
// batch to Postgres in the background.
func (p *Pipeline) Apply(ctx context.Context, batch []Record) error {
	pre := p.s.prepare(batch, p.pending)
	afterPending := len(p.pending) > 0
	before, err := p.wait(ctx)
	if err != nil {
		p.pending = nil
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w: the batch before it was not applied: %w", ErrOffsetGap, err)
	}
	if !before && afterPending {
		pre = nil // built on ids the batch before did not commit as built
	}
	done := make(chan applied, 1)
	p.prev, p.pending = done, nil
	if pre != nil {
		p.pending = pre.rows.newIDs
	}
	go func() { done <- p.s.applyUntil(ctx, batch, pre) }()
	return nil
}

// applyUntil applies batch, retrying with backoff while Postgres fails it
// and ctx lasts; an attempt under way when ctx ends has shutdownGrace to
// finish. A batch that does not continue the offsets is not retried: it
// goes to OnGap at once if set (so an idle consumer rewinds now, not at
// its next batch).
func (s *Store) applyUntil(ctx context.Context, batch []Record, pre *prepared) applied {
	backoff := backoffMin
	for {
		actx, cancel := graceful(ctx, shutdownGrace)
		used, err := s.applyPrepared(actx, batch, pre)
		cancel()
		if errors.Is(err, ErrOffsetGap) && s.OnGap != nil {
			s.OnGap(err)
			return applied{err: err, told: true}
		}
		if err == nil || errors.Is(err, ErrOffsetGap) {
			return applied{prepared: used, err: err}
		}
		if s.OnRetry != nil {
			s.OnRetry(err, backoff)
		}
		select {
		case <-ctx.Done():
			return applied{err: err}
		case <-time.After(backoff):
		}
		pre, backoff = nil, min(2*backoff, backoffMax)
	}
}

// Flush waits until the batch in Postgres, if any, is done, and returns
// its error.
func (p *Pipeline) Flush(ctx context.Context) error {
	_, err := p.wait(ctx)
	return err
}

// wait waits for the batch in Postgres; prepared is true when there was
// none or it committed the rows built ahead.
func (p *Pipeline) wait(ctx context.Context) (prepared bool, err error) {
	if p.prev == nil {
		return true, nil
	}
	select {
	case a := <-p.prev:
		p.prev = nil
		if a.told {
			return false, nil // OnGap rewound already; what follows is read again
		}
		return a.prepared, a.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// graceful is a context that ends grace after ctx does.
func graceful(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(gctx, func() { t.Stop() })
	})
	return gctx, func() { stop(); cancel() }
}

// Stages apply each batch to several parts of the read models, each part
// through its own Pipeline, so on its own connection: the projector's
// history and search, which then overlap in Postgres, read and decoded
// once. Each part keeps its offsets; a batch is applied to each part in
// turn, and each skips what it has applied already.
type Stages struct {
	stores []*Store
	pipes  []*Pipeline
}

// NewStages returns the stages of stores, in that order.
func NewStages(stores ...*Store) *Stages {
	st := &Stages{stores: stores}
	for _, s := range stores {
		st.pipes = append(st.pipes, s.Pipeline())
	}
	return st
}

// Apply applies batch to every stage (Pipeline.Apply).
func (st *Stages) Apply(ctx context.Context, batch []Record) error {
	for _, p := range st.pipes {
		if err := p.Apply(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

// Flush waits for every stage's batch in Postgres; the first error is
// returned.
func (st *Stages) Flush(ctx context.Context) error {
	var first error
	for _, p := range st.pipes {
		if err := p.Flush(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ResumeOffsets is where the stage furthest behind continues each
// partition: the consumer reads from there, and the stages ahead skip
// what they have.
func (st *Stages) ResumeOffsets(ctx context.Context, partitions []int32) (map[int32]int64, error) {
	var out map[int32]int64
	for _, s := range st.stores {
		next, err := s.ResumeOffsets(ctx, partitions)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = next
			continue
		}
		for p, off := range next {
			out[p] = min(out[p], off)
		}
	}
	return out, nil
}
