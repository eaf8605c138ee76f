package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A replay fills a fresh schema from offset 0 with nobody reading it, so it
// builds the indexes that the projector's writes never read after the bulk
// of the rows, in one sorted pass each, instead of entry by entry. The
// writes read only these: the offsets, a conversation by id, a member by
// (conversation, user), a message by (conversation_id, message_id) (edits,
// deletes, and the ON CONFLICT that collapses a duplicate produce), a
// set-aside event by (partition, offset) and a reaction by its key. The
// events and messages primary keys are not needed by a rebuild's inserts:
// the offsets guard fixes (conversation_id, seq) (see applyTx).
var writePathIndexes = []string{
	"projector_offsets_pkey",
	"schema_migrations_pkey",
	"conversations_pkey",
	"members_pkey",
	"messages_conversation_id_message_id_key",
	"dead_letters_pkey", // the ON CONFLICT of a set-aside event
	"reactions_pkey",    // the ON CONFLICT of a reaction's change
}

// deferredIndex is an index dropped while a replay rebuilds, and the
// statements that drop and create it again exactly as the migrations did.
type deferredIndex struct {
	name, drop, create string
}

// deferIndexes drops every index of schema's read-model tables that the
// write path does not read and returns them, to be built again by
// buildDeferred before anything else uses the schema. Indexes of a
// partitioned table are handled on the parent (its partitions' indexes go
// and come back with it, with the names the migrations gave them).
func deferIndexes(ctx context.Context, pool *pgxpool.Pool, schema string) ([]deferredIndex, error) {
	rows, err := pool.Query(ctx, `SELECT i.relname, t.relname, con.conname IS NOT NULL,
			coalesce(pg_get_constraintdef(con.oid), ''), pg_get_indexdef(x.indexrelid)
		FROM pg_index x
		JOIN pg_class i ON i.oid = x.indexrelid
		JOIN pg_class t ON t.oid = x.indrelid
		JOIN pg_namespace n ON n.oid = t.relnamespace
		LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = t.oid
		WHERE n.nspname = $1 AND t.relkind IN ('r', 'p') AND NOT t.relispartition
		ORDER BY t.relname, i.relname`, schema)
	if err != nil {
		return nil, fmt.Errorf("indexes of %s: %w", schema, err)
	}
	var out []deferredIndex
	var name, table, def, idxDef string
	var isConstraint bool
	_, err = pgx.ForEachRow(rows, []any{&name, &table, &isConstraint, &def, &idxDef}, func() error {
		if slices.Contains(writePathIndexes, name) {
			return nil
		}
		t := pgx.Identifier{schema, table}.Sanitize()
		d := deferredIndex{name: name}
		if isConstraint {
			d.drop = fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", t, pgx.Identifier{name}.Sanitize())
			d.create = fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", t, pgx.Identifier{name}.Sanitize(), def)
		} else {
			d.drop = "DROP INDEX " + pgx.Identifier{schema, name}.Sanitize()
			// Schema-qualified by pg_get_indexdef; "ON ONLY" (a partitioned
			// table's index alone) becomes "ON", which builds its partitions'
			// indexes too, as the migration's CREATE INDEX did.
			d.create = strings.Replace(idxDef, " ON ONLY ", " ON ", 1)
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexes of %s: %w", schema, err)
	}
	for _, d := range out {
		if _, err := pool.Exec(ctx, d.drop); err != nil {
			return nil, fmt.Errorf("defer index %s: %w", d.name, err)
		}
	}
	return out, nil
}

// buildDeferred creates the deferred indexes again, up to parallel at once
// (each on its own connection), in buildOrder.
func (run *replayRun) buildDeferred(ctx context.Context, idx []deferredIndex) error {
	if len(idx) == 0 {
		return nil
	}
	run.phase.Store(ptr2("index"))
	idx = buildOrder(idx)
	slots := make(chan struct{}, max(run.r.Parallel, 1))
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for i, d := range idx {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			start := time.Now()
			if _, err := run.r.Pool.Exec(ctx, d.create); err != nil {
				errs[i] = fmt.Errorf("build index %s: %w", d.name, err)
				return
			}
			run.r.Log.Debug("replay index built", "index", d.name, "took", time.Since(start))
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// buildOrder orders the builds so that none waits for another's lock and the
// longest starts early. A constraint (ALTER TABLE ... ADD CONSTRAINT) locks
// its table against every other build of it, so constraints go first: built
// beside the full-text GIN index instead, the messages primary key waited
// for it to end (docs/benchmarks.md, "Session 14"). Then the GIN index
// (to_tsvector of every body), which alone takes most of the phase; the
// others keep their order.
func buildOrder(idx []deferredIndex) []deferredIndex {
	out := slices.Clone(idx)
	slices.SortStableFunc(out, func(a, b deferredIndex) int {
		return cmp.Compare(buildWeight(b), buildWeight(a))
	})
	return out
}

func buildWeight(d deferredIndex) int {
	switch {
	case strings.HasPrefix(d.create, "ALTER TABLE "):
		return 2
	case strings.Contains(d.create, " USING gin "):
		return 1
	}
	return 0
}
