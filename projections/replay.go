package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// A replay (Replayer.Run, below) in files by concern:
//   - replay_rebuild.go: the appliers that read the log and apply it;
//   - replay_indexes.go: the indexes built after the rows;
//   - replay_switch.go: the switch transaction, and the catch-up inside it;
//   - replay_compare.go: the dry run's row-for-row comparison;
//   - replay_active.go: the active pointer the switch moves;
//   - replay_schemas.go: schemas and their stored offsets;
//   - replay_progress.go: the progress reports.

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

// ReplayResult of one run.
type ReplayResult struct {
	Schema   string // the schema built
	Previous string // the schema that was active when the replay began
	Events   int64
	Took     time.Duration
	Switched bool
	Diffs    []TableDiff // dry run only
	// Retried counts the batches applied a second time with every insert
	// guarded: one met a row it did not expect (replay_applier.go).
	Retried int64
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
	retried atomic.Int64
	target  atomic.Int64
	phase   atomic.Pointer[string]
	// switchedFrom: the schema the switch transaction found active.
	switchedFrom string
}

// Run rebuilds into a fresh schema and, unless o.DryRun, switches to it.
func (r *Replayer) Run(ctx context.Context, o ReplayOptions) (ReplayResult, error) {
	r.defaults()
	start := time.Now()
	unlock, err := r.lock(ctx)
	if err != nil {
		return ReplayResult{}, err
	}
	defer unlock()
	// Read under the lock: a replay that switched meanwhile moved it.
	ptr, err := RegisterPointer(ctx, r.Pool, r.Name)
	if err != nil {
		return ReplayResult{}, err
	}
	if err := ownsSchema(ctx, r.Pool, ptr.Active); err != nil {
		return ReplayResult{}, err
	}
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
			if run.switchedFrom != "" {
				res.Previous = run.switchedFrom // what --drop-old drops
			}
		}
	}
	run.phase.Store(ptr2("done"))
	res.Events, res.Took, res.Retried = run.applied.Load(), time.Since(start), run.retried.Load()
	return res, err
}

// ownsSchema refuses a replay by a role other than the active schema's
// owner (a superuser, say): the schema it builds would be that role's, out
// of reach of the owner's default privileges (chatctl roles), of the
// analytics views (which run with the owner's rights) and of the owner's
// later migrations. Said before the rebuild, not after it.
func ownsSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	var owner, me string
	err := pool.QueryRow(ctx, `SELECT coalesce((SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1), ''), current_user`,
		schema).Scan(&owner, &me)
	if err != nil {
		return unavailable("schema owner", err)
	}
	if owner != "" && owner != me {
		return fmt.Errorf("replay as %s: the active schema %s belongs to %s; run the replay as %s, who owns the read models (docs/deploy.md)",
			me, schema, owner, owner)
	}
	return nil
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

func sum(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func ptr2(s string) *string { return &s }
