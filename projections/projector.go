package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parley-chat/parley/domain"
)

// Record is one event read from the log at partition and offset; its seq is
// derived from the offset. Invalid marks an envelope that could not be
// decoded, or an event set aside: then Cause says why Postgres refused it,
// and the batch's transaction records it in dead_letters (setaside.go).
// Hole > 0 says the log holds no record in [Offset-Hole, Offset) (the
// reader proved it: retention removed them before they were read).
type Record struct {
	Partition int32
	Offset    int64
	Hole      int64
	Event     domain.Event
	Invalid   bool
	Cause     string
}

// ErrOffsetGap: a batch skips offsets of a partition that were never
// applied. Applying it would lose them for good, so it is refused whole.
var ErrOffsetGap = errors.New("batch skips unapplied offsets")

// Seq is the event's seq (domain.SeqOf its offset).
func (r Record) Seq() int64 { return domain.SeqOf(r.Offset) }

// Apply writes a batch of records in one transaction. Each statement covers
// the whole batch (multi-row, through unnest), and every write is guarded by
// event identity (seq) or by the partition offsets stored in the same
// transaction, so a batch applied twice changes nothing, and a batch split
// differently yields the same rows.
//
// The statements of a batch go to Postgres as one pipeline (one round trip),
// and the two inserts that cannot conflict once the offsets guard has passed
// (event_log by seq, messages by seq) check no index before inserting: see
// applyTx. Should one conflict anyway, the batch is rolled back and applied
// again with every insert guarded, so the rows are those of a guarded apply.
//
// An event whose data Postgres refuses (poison) is set aside instead of
// stopping the projection: see isolate.
func (s *Store) Apply(ctx context.Context, batch []Record) error {
	_, err := s.applyPrepared(ctx, batch, nil)
	return err
}

// applyPrepared is Apply with the rows pre built for batch (prepare), or
// nil; used reports whether the batch committed those very rows.
func (s *Store) applyPrepared(ctx context.Context, batch []Record, pre *prepared) (used bool, err error) {
	used, err = s.applyBatchPrepared(ctx, batch, pre)
	if isPoison(err) {
		return false, s.isolate(ctx, batch, s.applyBatch)
	}
	return used, err
}

func (s *Store) applyBatch(ctx context.Context, batch []Record) error {
	_, err := s.applyBatchPrepared(ctx, batch, nil)
	return err
}

func (s *Store) applyBatchPrepared(ctx context.Context, batch []Record, pre *prepared) (bool, error) {
	used, err := s.apply(ctx, batch, false, pre)
	if errors.Is(err, errConflict) {
		s.retried.Add(1)
		if s.OnGuardedRetry != nil {
			s.OnGuardedRetry()
		}
		used, err = s.apply(ctx, batch, true, nil)
	}
	return used, err
}

// GuardedRetries is how many batches met a row they did not expect and were
// applied again with every insert guarded: after a restart or a rebalance
// (a duplicate produce the store's sentIDs did not know), or when offsets
// were lost.
func (s *Store) GuardedRetries() int64 { return s.retried.Load() }

// guardedOnly remembers the schemas whose messages table predates UNIQUE
// (conversation_id, message_id) (read-model migrations before 0004): the
// fast path's ON CONFLICT names that key, so they are written guarded.
var guardedOnly sync.Map // schema name -> true

func (s *Store) apply(ctx context.Context, batch []Record, guarded bool, pre *prepared) (used bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, unavailable("begin", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	// The batch goes to the schema the active pointer names now
	// (replay_active.go), so a replay can switch writers atomically; the
	// pointer and the offsets of that schema are read in one round trip.
	w, next, err := s.writeTargetOffsets(ctx, tx, batch)
	if err != nil {
		return false, err
	}
	wrote, err := w.writeTx(ctx, tx, batch, next, guarded, pre)
	if err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, unavailable("commit", err)
	}
	w.committed(wrote)
	return wrote.prepared, nil
}

// errConflict: an unguarded insert met a row that exists already (a unique
// violation). The transaction is lost; the batch is applied again guarded.
var errConflict = errors.New("unguarded insert conflicts")

// applyTx writes a batch inside tx, into s's schema. Unguarded (the fast
// path), the event_log and messages inserts rely on the offsets guard for
// their primary keys: a record passes it once per schema, and (partition,
// offset) fixes (conversation_id, seq), since a conversation lives in one
// partition. Messages still collapse a repeated message id (a duplicate
// produce) through ON CONFLICT on (conversation_id, message_id) only. A
// unique violation returns errConflict; guarded, every insert is ON
// CONFLICT DO NOTHING.
//
// It returns what s keeps once tx commits (Store.committed).
func (s *Store) applyTx(ctx context.Context, tx pgx.Tx, batch []Record, guarded bool) (written, error) {
	next, err := s.lockOffsets(ctx, tx, batch, nil)
	if err != nil {
		return written{}, err
	}
	return s.writeTx(ctx, tx, batch, next, guarded, nil)
}

// writeTx writes the records of batch that continue the offsets next
// (read and locked in tx by lockOffsets) and advances the offsets, in one
// pipeline. pre, if not nil, holds the rows built ahead for batch, used
// when they are what the offsets call for (prepared.fits).
func (s *Store) writeTx(ctx context.Context, tx pgx.Tx, batch []Record, next map[int32]int64, guarded bool, pre *prepared) (written, error) {
	if _, old := guardedOnly.Load(s.Schema()); old {
		guarded = true
	}
	aside := s.setAsideStatements(batch, next)
	fresh, err := continuing(batch, next)
	if err != nil {
		return written{}, err
	}
	fromPre := pre.fits(fresh, s.Schema())
	if !fromPre {
		pre = s.prepareAfter(fresh, nil)
	}
	sts := aside
	rows := pre.rows
	if rows.unindexable != nil {
		return written{}, rows.unindexable
	}
	sts = append(sts, rows.statements(s, guarded)...)
	if pre.search.unindexable != nil {
		return written{}, pre.search.unindexable
	}
	sts = append(sts, pre.search.statements(s)...)
	sts = append(sts, s.storeOffsets(batch)...)
	b := &pgx.Batch{}
	for _, st := range sts {
		b.Queue(st.sql, st.args...)
	}
	res := tx.SendBatch(ctx, b)
	var inserted map[foldedAt]bool // nil: the messages insert skipped nothing
	for _, st := range sts {
		var err error
		if st.skips {
			inserted, err = insertedEvents(res)
		} else {
			_, err = res.Exec()
		}
		if err != nil {
			res.Close()
			if !guarded && isUniqueViolation(err) {
				return written{}, fmt.Errorf("%w: %s: %v", errConflict, st.name, err)
			}
			if !guarded && isNoConflictKey(err) {
				guardedOnly.Store(s.Schema(), true)
				return written{}, fmt.Errorf("%w: %s: %v", errConflict, st.name, err)
			}
			return written{}, fmt.Errorf("%w: apply %s: %w", domain.ErrUnavailable, st.name, err)
		}
	}
	if err := res.Close(); err != nil {
		return written{}, unavailable("apply", err)
	}
	if inserted != nil && len(inserted) < len(rows.folded) {
		if err := rows.writeUnfolded(ctx, s, tx, inserted); err != nil {
			return written{}, fmt.Errorf("%w: apply unfolded message_sent: %w", domain.ErrUnavailable, err)
		}
	}
	return written{ids: rows.newIDs, last: rows.deferredLast, prepared: fromPre}, nil
}

// insertedEvents reads the messages insert's result: the folded rows it
// wrote, by event id and seq (a record produced twice byte for byte has
// one event id at two seqs).
func insertedEvents(res pgx.BatchResults) (map[foldedAt]bool, error) {
	rows, err := res.Query()
	if err != nil {
		return nil, err
	}
	out := map[foldedAt]bool{}
	var id *string
	var seq int64
	_, err = pgx.ForEachRow(rows, []any{&id, &seq}, func() error {
		if id != nil {
			out[foldedAt{*id, seq}] = true
		}
		return nil
	})
	return out, err
}

// foldedAt is a folded message_sent event where it was logged.
type foldedAt struct {
	eventID string
	seq     int64
}

// batchPartitions lists the partitions of batch.
func batchPartitions(batch []Record) []int32 {
	var ids []int32
	for _, r := range batch {
		if !slices.Contains(ids, r.Partition) {
			ids = append(ids, r.Partition)
		}
	}
	return ids
}

// offsetsQuery reads the stored offsets of partitions $2 and locks their
// rows, so two projectors cannot apply a partition at once.
func (s *Store) offsetsQuery() string {
	return s.q(`SELECT partition, next_offset FROM {s}.` + s.offsetsTable() + `
		WHERE topic=$1 AND partition = ANY($2) ORDER BY partition FOR UPDATE`)
}

// lockOffsets returns the next offset of every partition of batch, locking
// their rows; next, if not nil, holds what offsetsQuery already read in tx.
// A partition without a row gets one at 0 first, so that FOR UPDATE has
// something to lock.
func (s *Store) lockOffsets(ctx context.Context, tx pgx.Tx, batch []Record, next map[int32]int64) (map[int32]int64, error) {
	ids := batchPartitions(batch)
	var err error
	if next == nil {
		next, err = s.readOffsets(ctx, tx, ids)
	}
	if err == nil && len(next) < len(ids) {
		if _, err = tx.Exec(ctx, s.q(`INSERT INTO {s}.`+s.offsetsTable()+` (topic, partition, next_offset)
			SELECT $1, p, 0 FROM unnest($2::int[]) p ON CONFLICT DO NOTHING`), s.topic, ids); err == nil {
			next, err = s.readOffsets(ctx, tx, ids)
		}
	}
	if err != nil {
		return nil, unavailable("offsets", err)
	}
	return next, nil
}

func (s *Store) readOffsets(ctx context.Context, tx pgx.Tx, ids []int32) (map[int32]int64, error) {
	rows, err := tx.Query(ctx, s.offsetsQuery(), s.topic, ids)
	if err != nil {
		return nil, err
	}
	return collectOffsets(rows)
}

func collectOffsets(rows pgx.Rows) (map[int32]int64, error) {
	next := map[int32]int64{}
	var p int32
	var off int64
	_, err := pgx.ForEachRow(rows, []any{&p, &off}, func() error { next[p] = off; return nil })
	return next, err
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// isNoConflictKey: ON CONFLICT names a key the table does not have.
func isNoConflictKey(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P10"
}

// continuing keeps the records that continue each partition from next,
// dropping those applied before; a record beyond the next unapplied offset
// (not covered by a proven hole) fails the batch with ErrOffsetGap.
func continuing(batch []Record, next map[int32]int64) ([]Record, error) {
	out := batch[:0:0]
	for _, r := range batch {
		want := next[r.Partition]
		if r.Offset < want {
			continue
		}
		if r.Offset-r.Hole > want {
			return nil, fmt.Errorf("%w: partition %d continues at %d, the batch at %d", ErrOffsetGap, r.Partition, want, r.Offset)
		}
		next[r.Partition] = r.Offset + 1
		if !r.Invalid {
			out = append(out, r)
		}
	}
	return out, nil
}

// storeOffsets are the statements that advance the partitions' offsets
// past the batch, in the batch's transaction: the store's own, and for
// PartAll search_offsets too (an upsert: its rows were not locked).
func (s *Store) storeOffsets(batch []Record) []stmt {
	last := map[int32]int64{}
	for _, r := range batch {
		last[r.Partition] = max(last[r.Partition], r.Offset+1)
	}
	var ps []int32
	var offs []int64
	for p, o := range last {
		ps = append(ps, p)
		offs = append(offs, o)
	}
	out := []stmt{{name: "store offsets", sql: s.q(`UPDATE {s}.` + s.offsetsTable() + ` o SET next_offset=GREATEST(o.next_offset, v.off)
		FROM unnest($2::int[], $3::bigint[]) v(p, off) WHERE o.topic=$1 AND o.partition=v.p`), args: []any{s.topic, ps, offs}}}
	if s.part == PartAll {
		out = append(out, stmt{name: "store search offsets", sql: s.q(`INSERT INTO {s}.search_offsets AS o (topic, partition, next_offset)
			SELECT $1, v.p, v.off FROM unnest($2::int[], $3::bigint[]) v(p, off)
			ON CONFLICT (topic, partition) DO UPDATE SET next_offset=GREATEST(o.next_offset, excluded.next_offset)`), args: []any{s.topic, ps, offs}})
	}
	return out
}

// stmt is one statement of a batch's pipeline, named in its errors.
type stmt struct {
	name string
	sql  string
	args []any
	// skips: the messages insert may skip rows (ON CONFLICT) and returns
	// the event ids of the folded rows it wrote (insertedEvents).
	skips bool
}
