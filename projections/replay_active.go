package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The active read-model pointer (migrations/control): parley.read_model maps
// a deployment's name (its bootstrap schema, CHAT_DB_SCHEMA) to the schema
// its readers and projectors use. Writers read it inside every batch
// transaction under a shared advisory lock; a replay switches it under the
// exclusive lock. So each batch lands wholly before the switch (in the old
// schema, which the switch then catches the new one up with) or wholly after
// it (in the new schema, whose projector_offsets skip what it already has).

// pointerLockClass is the first key of the pointer's advisory lock; the
// second is hashtext(name). Two-key locks never collide with golang-migrate's
// one-key locks.
const pointerLockClass int32 = 0x70726d31 // "prm1"

// replayLockClass keys the session lock that allows one replay per name.
const replayLockClass int32 = 0x70726d32 // "prm2"

// planSettings (one expression, for the first statement of a batch's
// transaction) makes the batch's statements use plans that cannot degrade
// as the tables grow, planned once per connection:
//   - no sequential scans, hash or merge joins: every statement of a batch
//     is a few hundred unnest rows inserted, or joined by a unique index
//     with one table. Left to costs, a plan made while a table was small (a
//     fresh replay schema, never analyzed) seq-scans it, and on the
//     partitioned messages the planner costs the nested loop as if every
//     partition were probed (it cannot see run-time pruning) and hashes the
//     whole table instead, every batch. Either makes a batch O(table) and a
//     replay quadratic;
//   - generic plans: with only index paths left a statement's plan does not
//     depend on its arrays or on the tables' sizes, so the prepared
//     statement's plan is made once and reused; planning every batch anew
//     (custom plans, before issue 14) cost more than executing a small
//     batch (0.6-0.9 ms for an UPDATE of the 16-partition messages).
const planSettings = `concat(set_config('plan_cache_mode', 'force_generic_plan', true),
	set_config('enable_seqscan', 'off', true),
	set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true))`

// In returns a store that reads and writes schema only, ignoring the pointer.
// Replays build their fresh schema through it.
func (s *Store) In(schema string) *Store {
	p := &Store{pool: s.pool, topic: s.topic, name: s.name, pinned: true, ids: s.ids, part: s.part,
		schema: new(atomic.Pointer[string])}
	p.SetSchema(schema)
	return p
}

// Name is the key of the store's active pointer (its bootstrap schema).
func (s *Store) Name() string { return s.name }

// writeTarget takes the pointer's shared lock in tx and returns a store
// pinned to the schema the pointer names now; without a control schema or a
// row for this name, the store's own schema. Readers of s follow at once.
func (s *Store) writeTarget(ctx context.Context, tx pgx.Tx) (*Store, error) {
	if s.pinned {
		_, err := tx.Exec(ctx, `SELECT `+planSettings)
		return s, err
	}
	var hasControl bool
	err := tx.QueryRow(ctx, `SELECT to_regclass('parley.read_model') IS NOT NULL, `+planSettings+`
		FROM pg_advisory_xact_lock_shared($1, hashtext($2))`, pointerLockClass, s.name).Scan(&hasControl, nil)
	if err != nil {
		return nil, unavailable("read-model pointer", err)
	}
	s.control.Store(hasControl)
	if !hasControl {
		return s.In(s.Schema()), nil
	}
	// A separate statement: its snapshot is taken after the lock is held,
	// so a switch that committed while this batch waited is seen.
	var active string
	err = tx.QueryRow(ctx, `SELECT active_schema FROM parley.read_model WHERE name=$1`, s.name).Scan(&active)
	if errors.Is(err, pgx.ErrNoRows) {
		return s.In(s.Schema()), nil
	}
	if err != nil {
		return nil, unavailable("read-model pointer", err)
	}
	if active != s.Schema() {
		s.SetSchema(active)
	}
	return s.In(active), nil
}

// writeTargetOffsets is writeTarget followed by lockOffsets on the schema
// it returns. Once a batch has found the control schema, the three
// statements go in one round trip: the offsets are read from the schema
// the store wrote last, and read again from the pointer's if a switch
// moved it (the rows locked in the old schema are released at commit).
func (s *Store) writeTargetOffsets(ctx context.Context, tx pgx.Tx, batch []Record) (*Store, map[int32]int64, error) {
	if s.pinned || !s.control.Load() {
		w, err := s.writeTarget(ctx, tx)
		if err != nil {
			return nil, nil, err
		}
		next, err := w.lockOffsets(ctx, tx, batch, nil)
		return w, next, err
	}
	guess := s.Schema()
	b := &pgx.Batch{}
	b.Queue(`SELECT `+planSettings+` FROM pg_advisory_xact_lock_shared($1, hashtext($2))`, pointerLockClass, s.name)
	// A separate statement: its snapshot is taken after the lock is held,
	// so a switch that committed while this batch waited is seen.
	b.Queue(`SELECT active_schema FROM parley.read_model WHERE name=$1`, s.name)
	b.Queue(s.In(guess).offsetsQuery(), s.topic, batchPartitions(batch))
	res := tx.SendBatch(ctx, b)
	active, next, err := func() (string, map[int32]int64, error) {
		defer res.Close()
		if _, err := res.Exec(); err != nil {
			return "", nil, err
		}
		var active string
		if err := res.QueryRow().Scan(&active); errors.Is(err, pgx.ErrNoRows) {
			active = guess
		} else if err != nil {
			return "", nil, err
		}
		rows, err := res.Query()
		if err != nil {
			return "", nil, err
		}
		next, err := collectOffsets(rows)
		if err != nil {
			return "", nil, err
		}
		return active, next, res.Close()
	}()
	if err != nil {
		if isUndefined(err) {
			s.control.Store(false) // the control schema is gone: ask again
		}
		return nil, nil, unavailable("read-model pointer", err)
	}
	w := s.In(active)
	if active != guess {
		s.SetSchema(active)
		next = nil // read from the schema the pointer names
	}
	next, err = w.lockOffsets(ctx, tx, batch, next)
	return w, next, err
}

// RefreshActive points the store's readers at the schema the pointer names.
// Without a control schema or a row for this name it changes nothing.
func (s *Store) RefreshActive(ctx context.Context) error {
	p, ok, err := ReadPointer(ctx, s.pool, s.name)
	if err != nil || !ok {
		return err
	}
	if p.Active != s.Schema() {
		s.SetSchema(p.Active)
	}
	return nil
}

// FollowActive refreshes the readers' schema now (bounded) and then every
// interval until stop is called. Projector batches switch on their own, in
// their transaction; this is for nodes that only read.
func (s *Store) FollowActive(every time.Duration, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	first, firstCancel := context.WithTimeout(ctx, 2*time.Second)
	if err := s.RefreshActive(first); err != nil {
		log.Warn("read-model pointer unreadable; serving the bootstrap schema", "schema", s.Schema(), "err", err)
	}
	firstCancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			before := s.Schema()
			if err := s.RefreshActive(ctx); err != nil && ctx.Err() == nil {
				log.Debug("read-model pointer unreadable", "err", err)
			}
			if now := s.Schema(); now != before {
				log.Info("read models switched", "from", before, "to", now)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// Pointer is a deployment's row in parley.read_model.
type Pointer struct {
	Name       string
	Active     string
	Analytics  string
	Previous   *string
	SwitchedAt time.Time
}

// ReadPointer returns name's pointer; ok is false when there is no control
// schema or no row for name.
func ReadPointer(ctx context.Context, pool *pgxpool.Pool, name string) (p Pointer, ok bool, err error) {
	err = pool.QueryRow(ctx, `SELECT name, active_schema, analytics_schema, previous_schema, switched_at
		FROM parley.read_model WHERE name=$1`, name).Scan(&p.Name, &p.Active, &p.Analytics, &p.Previous, &p.SwitchedAt)
	if errors.Is(err, pgx.ErrNoRows) || isUndefined(err) {
		return p, false, nil
	}
	if err != nil {
		return p, false, unavailable("read-model pointer", err)
	}
	return p, true, nil
}

// AnalyticsSchemaFor names the analytics schema of a deployment: plain
// "analytics" for the default deployment "chat", "<name>_analytics" for any
// other (tests, several deployments in one database).
func AnalyticsSchemaFor(name string) string {
	if name == "chat" {
		return "analytics"
	}
	return name + "_analytics"
}

// RegisterPointer makes sure name has a pointer (initially at the schema of
// the same name) and returns it. The control schema must exist.
func RegisterPointer(ctx context.Context, pool *pgxpool.Pool, name string) (Pointer, error) {
	_, err := pool.Exec(ctx, `INSERT INTO parley.read_model (name, active_schema, analytics_schema)
		VALUES ($1, $1, $2) ON CONFLICT (name) DO NOTHING`, name, AnalyticsSchemaFor(name))
	if err != nil {
		return Pointer{}, fmt.Errorf("register read-model pointer %s: %w", name, err)
	}
	p, ok, err := ReadPointer(ctx, pool, name)
	if err == nil && !ok {
		err = fmt.Errorf("read-model pointer %s: not found after insert", name)
	}
	return p, err
}

// PointAnalytics (re)creates name's analytics views over its active schema.
// The pointer's row is locked so a concurrent switch cannot interleave.
func PointAnalytics(ctx context.Context, pool *pgxpool.Pool, name string) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var active, analytics string
		if err := tx.QueryRow(ctx, `SELECT active_schema, analytics_schema FROM parley.read_model
			WHERE name=$1 FOR UPDATE`, name).Scan(&active, &analytics); err != nil {
			return fmt.Errorf("read-model pointer %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, `SELECT parley.point_analytics($1, $2)`, analytics, active); err != nil {
			return fmt.Errorf("analytics views %s over %s: %w", analytics, active, err)
		}
		return nil
	})
}

func isUndefined(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000")
}
