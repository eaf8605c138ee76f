package projections_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/projections"
)

// memSource is a log held in memory, for replays without Kafka.
type memSource struct{ recs []projections.Record }

func (m memSource) HighWaterMarks(context.Context) (map[int32]int64, error) {
	hwm := map[int32]int64{}
	for _, r := range m.recs {
		hwm[r.Partition] = max(hwm[r.Partition], r.Offset+1)
	}
	return hwm, nil
}

func (m memSource) Read(ctx context.Context, from, to map[int32]int64, size int, handle func([]projections.Record) error) error {
	var batch []projections.Record
	for _, r := range m.recs {
		if end, ok := to[r.Partition]; !ok || r.Offset < from[r.Partition] || r.Offset >= end {
			continue
		}
		if batch = append(batch, r); len(batch) == size {
			if err := handle(batch); err != nil {
				return err
			}
			batch = nil
		}
	}
	if len(batch) > 0 {
		return handle(batch)
	}
	return nil
}

// replayable is a fresh live schema under the control schema's pointer,
// which a replay can rebuild and switch; its replays go with it.
func replayable(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	pool := openPool(t)
	if err := pgstore.MigrateControl(context.Background(), dsn()); err != nil {
		t.Fatal(err)
	}
	live := freshSchema(t, pool)
	t.Cleanup(func() { dropReplay(pool, live) })
	return pool, live
}

// dryRunReplay replays recs (the log live was built from) into a fresh
// schema without switching, and fails the test if a compared table
// differs from live's.
func dryRunReplay(t *testing.T, pool *pgxpool.Pool, live string, recs []projections.Record) projections.ReplayResult {
	t.Helper()
	return dryRunReplayBatch(t, pool, live, recs, 400)
}

func dryRunReplayBatch(t *testing.T, pool *pgxpool.Pool, live string, recs []projections.Record, batch int) projections.ReplayResult {
	t.Helper()
	r := &projections.Replayer{Pool: pool, Topic: testTopic, Name: live, Source: memSource{recs}, Batch: batch,
		Migrate: func(ctx context.Context, s string) error { return pgstore.Migrate(ctx, dsn(), s) }}
	res, err := r.Run(context.Background(), projections.ReplayOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res.Diffs {
		if !d.Equal() {
			t.Errorf("%s differs: %+v", d.Table, d)
		}
	}
	return res
}

// indexDefs lists schema's indexes (partitions' included) as the
// migrations define them, with the schema name taken out.
func indexDefs(t *testing.T, pool *pgxpool.Pool, schema string) string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT replace(indexdef, $1 || '.', 'S.') FROM pg_indexes
		WHERE schemaname = $1 ORDER BY tablename, indexname`, schema)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(defs, "\n")
}

// A replay builds the indexes its writes do not read after the rows
// (replay_indexes.go): the schema it leaves has the same indexes, with the
// same names, as one built by the migrations, and the same rows as the
// live one.
func TestReplayBuildsEveryIndex(t *testing.T) {
	pool, live := replayable(t)
	recs := newWorkload(3, 4).generate(3000)
	applyAll(t, projections.NewStore(pool, live, testTopic), recs, 500)
	res := dryRunReplay(t, pool, live, recs)
	if got, want := indexDefs(t, pool, res.Schema), indexDefs(t, pool, live); got != want {
		t.Fatalf("replayed schema's indexes:\n%s\nmigrated schema's:\n%s", got, want)
	}
	if n := strings.Count(indexDefs(t, pool, live), "\n"); n < 40 {
		t.Fatalf("only %d indexes listed", n+1)
	}
	// Built partition by partition and attached: every index valid, every
	// partition's index and constraint inherited from its parent's.
	if got, want := indexState(t, pool, res.Schema), indexState(t, pool, live); got != want {
		t.Fatalf("replayed schema's index states:\n%s\nmigrated schema's:\n%s", got, want)
	}
}

// indexState lists each index of schema with its validity, its parent
// index and its constraint's inheritance.
func indexState(t *testing.T, pool *pgxpool.Pool, schema string) string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT format('%s valid=%s parent=%s constraint=%s local=%s inherited=%s',
			i.relname, x.indisvalid, coalesce(pi.relname, '-'), coalesce(con.contype::text, '-'), coalesce(con.conislocal::text, '-'),
			coalesce(con.coninhcount::text, '-'))
		FROM pg_index x
		JOIN pg_class i ON i.oid = x.indexrelid
		JOIN pg_namespace n ON n.oid = i.relnamespace
		LEFT JOIN pg_inherits inh ON inh.inhrelid = i.oid
		LEFT JOIN pg_class pi ON pi.oid = inh.inhparent
		LEFT JOIN pg_constraint con ON con.conindid = i.oid AND con.conrelid = x.indrelid
		WHERE n.nspname = $1 ORDER BY 1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	states, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(states) == 0 {
		t.Fatalf("no index in %s", schema)
	}
	return strings.Join(states, "\n")
}
