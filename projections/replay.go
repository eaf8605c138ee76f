package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// LogSource is the log a replay reads, partition by partition, without a
// consumer group.
type LogSource interface {
	// HighWaterMarks is the next offset of every partition.
	HighWaterMarks(ctx context.Context) (map[int32]int64, error)
	// Read hands the records of every partition p in [from[p], to[p]) to
	// handle in batches of at most size, in offset order per partition.
	Read(ctx context.Context, from, to map[int32]int64, size int, handle func([]Record) error) error
}

// Replayer rebuilds a deployment's read models from offset 0 of the log into
// a fresh schema and switches its active pointer to it (docs/read-models.md
// "Replay" has the argument that no event is lost or applied twice).
type Replayer struct {
	Pool   *pgxpool.Pool
	Topic  string
	Name   string // the deployment: its pointer key, CHAT_DB_SCHEMA
	Source LogSource
	// Migrate builds the read-model tables in a new schema.
	Migrate func(ctx context.Context, schema string) error
	// Batch is the records per transaction (5000 when 0).
	Batch int
	// Parallel is how many appliers run, each on its share of the
	// partitions (2 when 0). A conversation lives in one partition, so
	// appliers never touch the same rows.
	Parallel int
	// MaxLag: the switch is attempted once at most this many events remain
	// to the log's end (2×Batch when 0). The last ones are applied inside
	// the switch transaction, which holds the live projector meanwhile.
	MaxLag int64
	// SwitchLockTimeout bounds each lock wait of the switch (5 s when 0);
	// a timed-out switch is retried.
	SwitchLockTimeout time.Duration
	// Progress, if set, is called about twice a second and once at the end.
	Progress func(Progress)
	Log      *slog.Logger
}

// ReplayOptions of one run.
type ReplayOptions struct {
	// Schema is the schema to build ("<name>_r<unix seconds>" when empty);
	// it must not exist.
	Schema string
	// DryRun rebuilds up to the live schema's position, compares, and does
	// not switch.
	DryRun bool
}

// Progress of a running replay.
type Progress struct {
	Schema  string
	Phase   string // rebuild, catch-up, switch, compare, done
	Applied int64  // records read from the log and applied
	Target  int64  // records up to the current targets
	Rate    float64
	Elapsed time.Duration
}

// Lag is how many records remain to the current targets.
func (p Progress) Lag() int64 { return max(p.Target-p.Applied, 0) }

// ETA at the current rate (0 when unknown).
func (p Progress) ETA() time.Duration {
	if p.Rate <= 0 {
		return 0
	}
	return time.Duration(float64(p.Lag()) / p.Rate * float64(time.Second))
}

// Fraction done, 0-1.
func (p Progress) Fraction() float64 {
	if p.Target <= 0 {
		return 1
	}
	return min(float64(p.Applied)/float64(p.Target), 1)
}

// ReplayResult of one run.
type ReplayResult struct {
	Schema   string // the schema built
	Previous string // the schema that was active when the replay began
	Events   int64
	Took     time.Duration
	Switched bool
	Diffs    []TableDiff // dry run only
}

// ErrReplayRunning is returned when another replay of the same deployment
// holds the replay lock.
var ErrReplayRunning = errors.New("another replay of this deployment is running")

func (r *Replayer) defaults() {
	if r.Batch <= 0 {
		r.Batch = 5000
	}
	if r.Parallel <= 0 {
		r.Parallel = 2
	}
	if r.MaxLag <= 0 {
		r.MaxLag = 2 * int64(r.Batch)
	}
	if r.SwitchLockTimeout <= 0 {
		r.SwitchLockTimeout = 5 * time.Second
	}
	if r.Log == nil {
		r.Log = slog.New(slog.DiscardHandler)
	}
}

// replayRun is the state of one Run.
type replayRun struct {
	r       *Replayer
	st      *Store // pinned to the new schema
	pos     map[int32]int64
	applied atomic.Int64
	target  atomic.Int64
	phase   atomic.Pointer[string]
}

// Run rebuilds into a fresh schema and, unless o.DryRun, switches to it.
func (r *Replayer) Run(ctx context.Context, o ReplayOptions) (ReplayResult, error) {
	r.defaults()
	start := time.Now()
	ptr, err := RegisterPointer(ctx, r.Pool, r.Name)
	if err != nil {
		return ReplayResult{}, err
	}
	unlock, err := r.lock(ctx)
	if err != nil {
		return ReplayResult{}, err
	}
	defer unlock()
	schema, err := r.newSchemaName(ctx, o.Schema)
	if err != nil {
		return ReplayResult{}, err
	}
	if err := r.Migrate(ctx, schema); err != nil {
		return ReplayResult{}, fmt.Errorf("build schema %s: %w", schema, err)
	}
	// Indexes the rebuild's writes do not read are built after it
	// (replay_indexes.go); should the replay fail first, the schema is
	// left incomplete, as any unfinished rebuild is.
	deferred, err := deferIndexes(ctx, r.Pool, schema)
	if err != nil {
		return ReplayResult{}, err
	}
	run := &replayRun{r: r, st: (&Store{pool: r.Pool, topic: r.Topic, name: r.Name}).In(schema), pos: map[int32]int64{}}
	res := ReplayResult{Schema: schema, Previous: ptr.Active}
	stopProgress := run.report(start)
	defer stopProgress()

	hwm, err := r.Source.HighWaterMarks(ctx)
	if err != nil {
		return res, err
	}
	to := hwm
	if o.DryRun {
		// Rebuild only up to where the live schema is, so the comparison
		// below can catch up exactly to it.
		if to, err = liveOffsets(ctx, r.Pool, ptr.Active, r.Topic, hwm); err != nil {
			return res, err
		}
	}
	r.Log.Info("replay started", "schema", schema, "active", ptr.Active, "dry_run", o.DryRun, "events", sum(to))
	if err := run.rebuild(ctx, "rebuild", to); err != nil {
		return res, err
	}
	if err := run.buildDeferred(ctx, deferred); err != nil {
		return res, err
	}
	if o.DryRun {
		res.Diffs, err = run.compare(ctx, ptr.Active)
	} else {
		if err = run.catchUp(ctx); err == nil {
			err = run.switchOver(ctx)
			res.Switched = err == nil
		}
	}
	run.phase.Store(ptr2("done"))
	res.Events, res.Took = run.applied.Load(), time.Since(start)
	return res, err
}

// newSchemaName checks that an explicit name is free, or picks
// "<name>_r<unix seconds>" (with a suffix if a replay of the same second
// left one).
func (r *Replayer) newSchemaName(ctx context.Context, explicit string) (string, error) {
	base := explicit
	if base == "" {
		base = fmt.Sprintf("%s_r%d", r.Name, time.Now().Unix())
	}
	name := base
	for i := 2; ; i++ {
		exists, err := schemaExists(ctx, r.Pool, name)
		if err != nil || !exists {
			return name, err
		}
		if explicit != "" || i > 100 {
			return "", fmt.Errorf("schema %s exists already", name)
		}
		name = fmt.Sprintf("%s_%d", base, i)
	}
}

// lock takes the session lock that allows one replay per deployment.
func (r *Replayer) lock(ctx context.Context) (func(), error) {
	conn, err := r.Pool.Acquire(ctx)
	if err != nil {
		return nil, unavailable("replay lock", err)
	}
	var ok bool
	err = conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, replayLockClass, r.Name).Scan(&ok)
	if err != nil || !ok {
		conn.Release()
		if err != nil {
			return nil, unavailable("replay lock", err)
		}
		return nil, fmt.Errorf("%w: %s", ErrReplayRunning, r.Name)
	}
	return func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1, hashtext($2))`, replayLockClass, r.Name)
		conn.Release()
	}, nil
}

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
// batches overlaps the apply of this one.
func (run *replayRun) applier(ctx context.Context, from, to map[int32]int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
		if err := run.applyBatch(ctx, b); err != nil {
			cancel()
			for range batches { // drain, so the reader ends
			}
			return err
		}
	}
	return <-readErr
}

// applyBatch applies b in its own transaction. synchronous_commit is off:
// a crash loses at most the last batches, together with their offsets, and
// the replay starts over; the switch itself commits synchronously.
func (run *replayRun) applyBatch(ctx context.Context, b []Record) error {
	apply := func(ctx context.Context, b []Record, guarded bool) error {
		return pgx.BeginFunc(ctx, run.r.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('synchronous_commit', 'off', true), `+planSettings); err != nil {
				return err
			}
			return run.st.applyTx(ctx, tx, b, guarded)
		})
	}
	applyAll := func(ctx context.Context, b []Record) error {
		err := apply(ctx, b, false)
		if errors.Is(err, errConflict) {
			err = apply(ctx, b, true)
		}
		return err
	}
	err := applyAll(ctx, b)
	if isPoison(err) { // set aside as the live projector does
		err = run.st.isolate(ctx, b, applyAll)
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

// switchOver flips the pointer to the new schema, retrying when a lock wait
// times out (an analyst's long query on a view, a stuck batch).
func (run *replayRun) switchOver(ctx context.Context) error {
	run.phase.Store(ptr2("switch"))
	var err error
	for attempt := range 10 {
		if err = run.switchTx(ctx); err == nil || !isLockTimeout(err) {
			return err
		}
		run.r.Log.Warn("replay switch timed out waiting for a lock; retrying", "attempt", attempt+1, "err", err)
		if err := run.catchUp(ctx); err != nil {
			return err
		}
	}
	return err
}

// switchTx is the switch transaction:
//  1. the pointer's exclusive advisory lock: pointer-following batches
//     wait, and none is in flight;
//  2. the old schema's offsets table locked EXCLUSIVE: a batch still
//     writing it without the pointer (an old node) finishes first, and none
//     starts;
//  3. the new schema catches up, in this transaction, to the old schema's
//     offsets, which are now final;
//  4. the pointer and the analytics views move to the new schema.
//
// Every batch after the commit reads the new pointer and starts at or below
// the old schema's offsets, which the new schema has reached: nothing is
// missing, and what it has already is skipped.
func (run *replayRun) switchTx(ctx context.Context) error {
	r := run.r
	schema := run.st.Schema()
	// What the transaction applies is lost if it rolls back: so is the
	// position it reached.
	saved := maps.Clone(run.pos)
	err := pgx.BeginFunc(ctx, r.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`SELECT set_config('lock_timeout', '%d', true), %s`,
			r.SwitchLockTimeout.Milliseconds(), planSettings)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, pointerLockClass, r.Name); err != nil {
			return fmt.Errorf("pointer lock: %w", err)
		}
		var old, analytics string
		if err := tx.QueryRow(ctx, `SELECT active_schema, analytics_schema FROM parley.read_model WHERE name=$1 FOR UPDATE`,
			r.Name).Scan(&old, &analytics); err != nil {
			return fmt.Errorf("read-model pointer: %w", err)
		}
		if old == schema {
			return nil
		}
		if err := run.catchUpToOld(ctx, tx, old); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE parley.read_model SET previous_schema=active_schema, active_schema=$2,
			switched_at=now() WHERE name=$1`, r.Name, schema); err != nil {
			return fmt.Errorf("switch pointer: %w", err)
		}
		if _, err := tx.Exec(ctx, `SELECT parley.point_analytics($1, $2)`, analytics, schema); err != nil {
			return fmt.Errorf("analytics views: %w", err)
		}
		r.Log.Info("read models switching", "from", old, "to", schema, "analytics", analytics)
		return nil
	})
	if err != nil {
		run.pos = saved
	}
	return err
}

// catchUpToOld applies, inside tx, what the old schema has beyond the new.
func (run *replayRun) catchUpToOld(ctx context.Context, tx pgx.Tx, old string) error {
	var present bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`,
		pgx.Identifier{old, "projector_offsets"}.Sanitize()).Scan(&present); err != nil {
		return err
	}
	if !present {
		return nil // the old schema is gone: nobody writes it
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE `+pgx.Identifier{old, "projector_offsets"}.Sanitize()+` IN EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("lock %s.projector_offsets: %w", old, err)
	}
	live, err := offsetsIn(ctx, tx, old, run.r.Topic)
	if err != nil {
		return err
	}
	return run.applyInTx(ctx, tx, live)
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
	err := run.r.Source.Read(ctx, from, upTo, run.r.Batch, func(b []Record) error {
		// Guarded: a conflict cannot be retried inside this transaction.
		if err := run.st.applyTx(ctx, tx, b, true); err != nil {
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

// compare catches the new schema up to the live one inside a REPEATABLE
// READ snapshot of the live schema and compares the two in that snapshot.
// Each live batch commits its rows with its offsets, so the snapshot is a
// consistent prefix of the log, and the new schema is brought to exactly it.
func (run *replayRun) compare(ctx context.Context, live string) ([]TableDiff, error) {
	run.phase.Store(ptr2("compare"))
	var diffs []TableDiff
	err := pgx.BeginTxFunc(ctx, run.r.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT `+planSettings); err != nil {
			return err
		}
		off, err := offsetsIn(ctx, tx, live, run.r.Topic)
		if err != nil {
			return err
		}
		if err := run.applyInTx(ctx, tx, off); err != nil {
			return err
		}
		// The comparison reads whole tables: let it plan freely.
		if _, err := tx.Exec(ctx, `RESET plan_cache_mode; RESET enable_seqscan; RESET enable_hashjoin; RESET enable_mergejoin`); err != nil {
			return err
		}
		diffs, err = compareSchemas(ctx, tx, live, run.st.Schema())
		return err
	})
	return diffs, err
}

// report calls r.Progress every half second until stopped.
func (run *replayRun) report(start time.Time) (stop func()) {
	run.phase.Store(ptr2("rebuild"))
	if run.r.Progress == nil {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		lastN, lastT, rate := int64(0), start, 0.0
		emit := func(now time.Time) {
			n := run.applied.Load()
			if dt := now.Sub(lastT).Seconds(); dt > 0 {
				inst := float64(n-lastN) / dt
				rate = 0.6*inst + 0.4*rate // smooth the line a little
				lastN, lastT = n, now
			}
			run.r.Progress(Progress{Schema: run.st.Schema(), Phase: *run.phase.Load(), Applied: n,
				Target: run.target.Load(), Rate: rate, Elapsed: now.Sub(start)})
		}
		for {
			select {
			case <-done:
				emit(time.Now())
				return
			case now := <-t.C:
				emit(now)
			}
		}
	}()
	return func() { close(done); <-finished }
}

// TableDiff compares one read-model table of two schemas.
type TableDiff struct {
	Table       string
	Live        int64 // rows in the live schema
	Rebuilt     int64 // rows in the rebuilt schema
	OnlyLive    int64 // live rows with no identical rebuilt row
	OnlyRebuilt int64 // rebuilt rows with no identical live row
	Samples     []string
}

// Equal reports whether the two tables hold the same rows.
func (d TableDiff) Equal() bool {
	return d.Live == d.Rebuilt && d.OnlyLive == 0 && d.OnlyRebuilt == 0
}

// ComparedTables are the read models compared row for row; bookkeeping
// (projector_offsets, schema_migrations) is left out.
var ComparedTables = []string{"conversations", "members", "messages", "events"}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// CompareSchemas compares every read-model table of live and rebuilt with
// EXCEPT in both directions.
func CompareSchemas(ctx context.Context, pool *pgxpool.Pool, live, rebuilt string) ([]TableDiff, error) {
	return compareSchemas(ctx, pool, live, rebuilt)
}

func compareSchemas(ctx context.Context, q querier, live, rebuilt string) ([]TableDiff, error) {
	var out []TableDiff
	for _, t := range ComparedTables {
		a, b := pgx.Identifier{live, t}.Sanitize(), pgx.Identifier{rebuilt, t}.Sanitize()
		d := TableDiff{Table: t}
		err := q.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT count(*) FROM %[1]s), (SELECT count(*) FROM %[2]s),
			(SELECT count(*) FROM (SELECT * FROM %[1]s EXCEPT SELECT * FROM %[2]s) x),
			(SELECT count(*) FROM (SELECT * FROM %[2]s EXCEPT SELECT * FROM %[1]s) y)`, a, b)).
			Scan(&d.Live, &d.Rebuilt, &d.OnlyLive, &d.OnlyRebuilt)
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", t, err)
		}
		if !d.Equal() {
			rows, err := q.Query(ctx, fmt.Sprintf(`(SELECT 'live only: ' || x::text FROM (SELECT * FROM %[1]s EXCEPT SELECT * FROM %[2]s) x LIMIT 3)
				UNION ALL (SELECT 'rebuilt only: ' || y::text FROM (SELECT * FROM %[2]s EXCEPT SELECT * FROM %[1]s) y LIMIT 3)`, a, b))
			if err != nil {
				return nil, fmt.Errorf("compare %s: %w", t, err)
			}
			if d.Samples, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return nil, fmt.Errorf("compare %s: %w", t, err)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// DropSchema drops a read-model schema that no deployment uses: neither an
// active schema nor an analytics schema, and one that has the read-model
// bookkeeping table (so it cannot drop an unrelated schema by mistake).
func DropSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	var inUse bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM parley.read_model WHERE $1 IN (active_schema, analytics_schema))`,
		schema).Scan(&inUse)
	if err != nil && !isUndefined(err) {
		return unavailable("read-model pointer", err)
	}
	if inUse {
		return fmt.Errorf("schema %s is in use by a read-model pointer", schema)
	}
	var isReadModel bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`,
		pgx.Identifier{schema, "projector_offsets"}.Sanitize()).Scan(&isReadModel); err != nil {
		return unavailable("drop schema", err)
	}
	if !isReadModel {
		return fmt.Errorf("schema %s is not a read-model schema (it has no projector_offsets)", schema)
	}
	if _, err := pool.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		return fmt.Errorf("drop schema %s: %w", schema, err)
	}
	return nil
}

// liveOffsets is the live schema's next offset per partition, for every
// partition of hwm (0 where it has none yet).
func liveOffsets(ctx context.Context, pool *pgxpool.Pool, schema, topic string, hwm map[int32]int64) (map[int32]int64, error) {
	off, err := offsetsIn(ctx, pool, schema, topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for p := range hwm {
		out[p] = off[p]
	}
	return out, nil
}

func offsetsIn(ctx context.Context, q querier, schema, topic string) (map[int32]int64, error) {
	rows, err := q.Query(ctx, `SELECT partition, next_offset FROM `+pgx.Identifier{schema, "projector_offsets"}.Sanitize()+
		` WHERE topic=$1`, topic)
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", schema, err)
	}
	out := map[int32]int64{}
	var p int32
	var off int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &off}, func() error { out[p] = off; return nil }); err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", schema, err)
	}
	return out, nil
}

func schemaExists(ctx context.Context, pool *pgxpool.Pool, schema string) (bool, error) {
	var ok bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname=$1)`, schema).Scan(&ok)
	if err != nil {
		return false, unavailable("schema exists", err)
	}
	return ok, nil
}

func isLockTimeout(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "55P03"
}

func sum(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func ptr2(s string) *string { return &s }
