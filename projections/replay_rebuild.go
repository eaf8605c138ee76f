package projections

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
)

// The rebuild: appliers read their share of the partitions from the log
// and apply it in batches, each in its own transaction; applyInTx applies a
// range inside a caller's transaction (the switch, the dry run's compare).

// rebuild reads every partition from run.pos up to to and applies it, with
// r.Parallel appliers on disjoint sets of partitions.
func (run *replayRun) rebuild(ctx context.Context, phase string, to map[int32]int64) error {
	run.phase.Store(&phase)
	var parts []int32
	for p, end := range to {
		if end > run.pos[p] {
			parts = append(parts, p)
			run.target.Add(end - run.pos[p])
		}
	}
	slices.Sort(parts)
	n := min(run.r.Parallel, len(parts))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range n {
		from, upTo := map[int32]int64{}, map[int32]int64{}
		for i, p := range parts {
			if i%n == w {
				from[p], upTo[p] = run.pos[p], to[p]
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run.applier(ctx, from, upTo); err != nil {
				cancel(err)
				return
			}
			mu.Lock()
			for p, end := range upTo {
				run.pos[p] = end
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// applier reads its partitions and applies batches; the read of the next
// batches overlaps the apply of this one. Its store carries a rebuildState
// (replay_applier.go), whose deferred last seqs it writes before it ends.
func (run *replayRun) applier(ctx context.Context, from, to map[int32]int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := run.st.In(run.st.Schema())
	st.ids, st.rebuild = newSentIDs(), newRebuildState()
	batches := make(chan []Record, 2)
	readErr := make(chan error, 1)
	go func() {
		defer close(batches)
		readErr <- run.r.Source.Read(ctx, from, to, run.r.Batch, func(b []Record) error {
			select {
			case batches <- b:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	for b := range batches {
		if err := run.applyBatch(ctx, st, b); err != nil {
			cancel()
			for range batches { // drain, so the reader ends
			}
			return err
		}
	}
	if err := <-readErr; err != nil {
		return err
	}
	return st.rebuild.flushLast(ctx, st)
}

// rebuildTxSettings open every transaction of the rebuild.
const rebuildTxSettings = `SELECT set_config('synchronous_commit', 'off', true), ` + planSettings

// applyBatch applies b in its own transaction. synchronous_commit is off:
// a crash loses at most the last batches, together with their offsets, and
// the replay starts over; the switch itself commits synchronously.
func (run *replayRun) applyBatch(ctx context.Context, st *Store, b []Record) error {
	apply := func(ctx context.Context, b []Record, guarded bool) error {
		var wrote written
		err := pgx.BeginFunc(ctx, run.r.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, rebuildTxSettings); err != nil {
				return err
			}
			var err error
			wrote, err = st.applyTx(ctx, tx, b, guarded)
			return err
		})
		if err == nil {
			st.committed(wrote)
			if len(st.rebuild.last) > maxDeferredLast {
				err = st.rebuild.flushLast(ctx, st)
			}
		}
		return err
	}
	applyAll := func(ctx context.Context, b []Record) error {
		err := apply(ctx, b, false)
		if errors.Is(err, errConflict) {
			run.retried.Add(1)
			err = apply(ctx, b, true)
		}
		return err
	}
	err := applyAll(ctx, b)
	if isPoison(err) { // set aside as the live projector does
		err = st.isolate(ctx, b, applyAll)
	}
	if err != nil {
		return unavailable("replay batch", err)
	}
	run.applied.Add(int64(len(b)))
	return nil
}

// catchUp re-reads the high-water marks and applies up to them until at
// most MaxLag events remain (bounded rounds: a log that grows faster than
// the replay still gets switched, with a longer final catch-up).
func (run *replayRun) catchUp(ctx context.Context) error {
	for range 50 {
		hwm, err := run.r.Source.HighWaterMarks(ctx)
		if err != nil {
			return err
		}
		var lag int64
		for p, end := range hwm {
			lag += max(end-run.pos[p], 0)
		}
		if lag <= run.r.MaxLag {
			return nil
		}
		if err := run.rebuild(ctx, "catch-up", hwm); err != nil {
			return err
		}
	}
	return nil
}

// applyInTx reads from run.pos up to `to` where `to` is ahead and applies
// it inside tx.
func (run *replayRun) applyInTx(ctx context.Context, tx pgx.Tx, to map[int32]int64) error {
	from, upTo := map[int32]int64{}, map[int32]int64{}
	for p, end := range to {
		if end > run.pos[p] {
			from[p], upTo[p] = run.pos[p], end
			run.target.Add(end - run.pos[p])
		}
	}
	if len(upTo) == 0 {
		return nil
	}
	// Each batch in a savepoint, guarded (a conflict cannot be retried in
	// this transaction): a poison event rolls back only its batch, which is
	// then applied record by record, setting the event aside as the live
	// projector did, instead of failing the switch every time.
	apply := func(ctx context.Context, b []Record) error {
		return pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			_, err := run.st.applyTx(ctx, sp, b, true)
			return err
		})
	}
	err := run.r.Source.Read(ctx, from, upTo, run.r.Batch, func(b []Record) error {
		err := apply(ctx, b)
		if isPoison(err) {
			err = run.st.isolate(ctx, b, apply)
		}
		if err != nil {
			return err
		}
		run.applied.Add(int64(len(b)))
		return nil
	})
	if err != nil {
		return err
	}
	for p, end := range upTo {
		run.pos[p] = end
	}
	return nil
}
