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
		skip, err := searchBehind(ctx, tx, live, run.r.Topic, off)
		if err != nil {
			return err
		}
		diffs, err = compareSchemas(ctx, tx, live, run.st.Schema(), skip)
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
	// Skipped says why the table was not compared (then the counts are 0).
	Skipped string
}

// Equal reports whether the two tables hold the same rows (or were not
// compared: Skipped).
func (d TableDiff) Equal() bool {
	return d.Live == d.Rebuilt && d.OnlyLive == 0 && d.OnlyRebuilt == 0
}

// ComparedTables are the read models compared row for row; bookkeeping
// (projector_offsets, search_offsets, schema_migrations) is left out.
var ComparedTables = []string{"conversations", "members", "messages", "events", "reactions", "message_search"}

// searchBehind is why the live message_search cannot be compared in the
// snapshot whose projector offsets are at: the projector's search stage,
// which commits on its own connection, was elsewhere in the log (a batch
// behind or ahead, or more after a failure), or the live schema predates
// it. Empty when it can.
func searchBehind(ctx context.Context, q querier, live, topic string, at map[int32]int64) (map[string]string, error) {
	var present bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`,
		pgx.Identifier{live, "search_offsets"}.Sanitize()).Scan(&present); err != nil {
		return nil, err
	}
	if !present {
		return map[string]string{"message_search": "the live schema has no search projection"}, nil
	}
	search, err := offsetsOf(ctx, q, live, "search_offsets", topic)
	if err != nil {
		return nil, err
	}
	var behind, ahead int64
	for p, off := range at {
		behind += max(off-search[p], 0)
		ahead += max(search[p]-off, 0)
	}
	for p, off := range search {
		if _, ok := at[p]; !ok {
			ahead += off
		}
	}
	if behind > 0 || ahead > 0 {
		return map[string]string{"message_search": fmt.Sprintf("the live search projection was %d events behind and %d ahead of the history one; compare when writes pause", behind, ahead)}, nil
	}
	return nil, nil
}

// storageOnly are the columns of a table that record how a row is stored,
// not what it says: a messages row folds its message_sent event (event_id,
// sent_body; migration 0010) when the projector that wrote it was new
// enough, so a live schema older than the fold differs from its rebuild
// there, while the events view, compared too, shows the same events.
var storageOnly = map[string][]string{"messages": {"event_id", "sent_body"}}

// rowsOf is what the comparison reads of table t (a sanitized name):
// whole rows, or rows as jsonb without their storage-only columns.
func rowsOf(table, t string) string {
	cols := storageOnly[table]
	if len(cols) == 0 {
		return "SELECT * FROM " + t
	}
	expr := "to_jsonb(r)"
	for _, c := range cols {
		expr += " - '" + c + "'"
	}
	return "SELECT " + expr + " FROM " + t + " r"
}

// CompareSchemas compares every read-model table of live and rebuilt with
// EXCEPT in both directions.
func CompareSchemas(ctx context.Context, pool *pgxpool.Pool, live, rebuilt string) ([]TableDiff, error) {
	return compareSchemas(ctx, pool, live, rebuilt, nil)
}

// compareSchemas compares the tables, but those skip names (with why).
func compareSchemas(ctx context.Context, q querier, live, rebuilt string, skip map[string]string) ([]TableDiff, error) {
	var out []TableDiff
	for _, t := range ComparedTables {
		if why := skip[t]; why != "" {
			out = append(out, TableDiff{Table: t, Skipped: why})
			continue
		}
		a, b := pgx.Identifier{live, t}.Sanitize(), pgx.Identifier{rebuilt, t}.Sanitize()
		ra, rb := rowsOf(t, a), rowsOf(t, b)
		d := TableDiff{Table: t}
		err := q.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT count(*) FROM %[1]s), (SELECT count(*) FROM %[2]s),
			(SELECT count(*) FROM (%[3]s EXCEPT %[4]s) x),
			(SELECT count(*) FROM (%[4]s EXCEPT %[3]s) y)`, a, b, ra, rb)).
			Scan(&d.Live, &d.Rebuilt, &d.OnlyLive, &d.OnlyRebuilt)
		if err != nil {
			return nil, fmt.Errorf("compare %s: %w", t, err)
		}
		if !d.Equal() {
			rows, err := q.Query(ctx, fmt.Sprintf(`(SELECT 'live only: ' || x::text FROM (%[1]s EXCEPT %[2]s) x LIMIT 3)
				UNION ALL (SELECT 'rebuilt only: ' || y::text FROM (%[2]s EXCEPT %[1]s) y LIMIT 3)`, ra, rb))
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
