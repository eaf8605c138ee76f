package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The dry run's comparison of a rebuilt schema with the live one.

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
var ComparedTables = []string{"conversations", "members", "messages", "events", "reactions"}

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
