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
// set-aside event by (partition, offset), a reaction by its key and a
// message's search row by (conversation_id, message_id). The
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
	"search_offsets_pkey",
	"message_search_pkey", // the ON CONFLICT of a send, edits and deletes
}

// deferredIndex is an index dropped while a replay rebuilds, and the
// statements that make it again exactly as the migrations did. An index of
// a partitioned table is made in pieces (see buildDeferred): create makes
// the parent's index alone (ON ONLY, invalid until every partition's is
// attached), parts build the partitions' indexes one by one.
type deferredIndex struct {
	name, table  string
	constraint   bool
	drop, create string
	parts        []indexPart
}

// indexPart is the index of one partition, built on its own and then
// attached to its parent's.
type indexPart struct {
	name, table, create string
}

// deferIndexes drops every index of schema's read-model tables that the
// write path does not read and returns them, to be built again by
// buildDeferred before anything else uses the schema.
func deferIndexes(ctx context.Context, pool *pgxpool.Pool, schema string) ([]deferredIndex, error) {
	rows, err := pool.Query(ctx, `SELECT i.relname, t.relname, con.conname IS NOT NULL,
			coalesce(pg_get_constraintdef(con.oid), ''), pg_get_indexdef(x.indexrelid),
			coalesce(array_agg(ci.relname ORDER BY ci.relname) FILTER (WHERE ci.oid IS NOT NULL), '{}'),
			coalesce(array_agg(ct.relname ORDER BY ci.relname) FILTER (WHERE ci.oid IS NOT NULL), '{}'),
			coalesce(array_agg(pg_get_indexdef(ci.oid) ORDER BY ci.relname) FILTER (WHERE ci.oid IS NOT NULL), '{}')
		FROM pg_index x
		JOIN pg_class i ON i.oid = x.indexrelid
		JOIN pg_class t ON t.oid = x.indrelid
		JOIN pg_namespace n ON n.oid = t.relnamespace
		LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = t.oid
		LEFT JOIN pg_inherits inh ON inh.inhparent = i.oid
		LEFT JOIN pg_class ci ON ci.oid = inh.inhrelid
		LEFT JOIN pg_index cx ON cx.indexrelid = ci.oid
		LEFT JOIN pg_class ct ON ct.oid = cx.indrelid
		WHERE n.nspname = $1 AND t.relkind IN ('r', 'p') AND NOT t.relispartition
		GROUP BY i.relname, t.relname, con.conname, con.oid, x.indexrelid
		ORDER BY t.relname, i.relname`, schema)
	if err != nil {
		return nil, fmt.Errorf("indexes of %s: %w", schema, err)
	}
	var out []deferredIndex
	var name, table, def, idxDef string
	var isConstraint bool
	var partNames, partTables, partDefs []string
	_, err = pgx.ForEachRow(rows, []any{&name, &table, &isConstraint, &def, &idxDef, &partNames, &partTables, &partDefs}, func() error {
		if slices.Contains(writePathIndexes, name) {
			return nil
		}
		out = append(out, deferredOf(schema, name, table, isConstraint, def, idxDef, partNames, partTables, partDefs))
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

// deferredOf is the statements of one index (a constraint's with def). A
// partitioned index keeps ON ONLY (pg_get_indexdef's) for its parent; a
// constraint of a partitioned table is added to the parent alone (ALTER
// TABLE ONLY) and to each partition as the migration's ALTER TABLE did,
// under the names it gave them.
func deferredOf(schema, name, table string, isConstraint bool, def, idxDef string, partNames, partTables, partDefs []string) deferredIndex {
	t := pgx.Identifier{schema, table}.Sanitize()
	d := deferredIndex{name: name, table: table, constraint: isConstraint, create: idxDef,
		drop: "DROP INDEX " + pgx.Identifier{schema, name}.Sanitize()}
	if isConstraint {
		d.drop = fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", t, pgx.Identifier{name}.Sanitize())
		only := ""
		if len(partNames) > 0 {
			only = "ONLY "
		}
		d.create = fmt.Sprintf("ALTER TABLE %s%s ADD CONSTRAINT %s %s", only, t, pgx.Identifier{name}.Sanitize(), def)
	}
	for i, pn := range partNames {
		part := indexPart{name: pn, table: partTables[i], create: partDefs[i]}
		if isConstraint {
			part.create = fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s",
				pgx.Identifier{schema, part.table}.Sanitize(), pgx.Identifier{pn}.Sanitize(), def)
		}
		d.parts = append(d.parts, part)
	}
	return d
}

// buildJob is one statement of the index phase: a whole index, or one
// partition's. table is the parent's name for a partition's build (they
// share the parent's pending constraints), lock the table it locks.
type buildJob struct {
	name, table, lock, sql string
	constraint, gin        bool
}

// buildDeferred creates the deferred indexes again: the partitioned ones'
// parents first (catalog entries only), then every build on up to parallel
// connections (runJobs), then each partition's index is attached to its
// parent's, which makes the parent valid.
func (run *replayRun) buildDeferred(ctx context.Context, idx []deferredIndex) error {
	if len(idx) == 0 {
		return nil
	}
	run.phase.Store(ptr2("index"))
	var jobs []buildJob
	var attach []string
	schema := run.st.Schema()
	for _, d := range idx {
		gin := strings.Contains(d.create, " USING gin ")
		if len(d.parts) == 0 {
			jobs = append(jobs, buildJob{name: d.name, table: d.table, lock: d.table, sql: d.create, constraint: d.constraint, gin: gin})
			continue
		}
		if _, err := run.r.Pool.Exec(ctx, d.create); err != nil {
			return fmt.Errorf("build index %s: %w", d.name, err)
		}
		for _, p := range d.parts {
			jobs = append(jobs, buildJob{name: p.name, table: d.table, lock: p.table, sql: p.create, constraint: d.constraint, gin: gin})
			attach = append(attach, fmt.Sprintf("ALTER INDEX %s ATTACH PARTITION %s",
				pgx.Identifier{schema, d.name}.Sanitize(), pgx.Identifier{schema, p.name}.Sanitize()))
		}
	}
	start := time.Now()
	if err := run.runJobs(ctx, buildOrder(jobs)); err != nil {
		return err
	}
	for _, a := range attach {
		if _, err := run.r.Pool.Exec(ctx, a); err != nil {
			return fmt.Errorf("attach index: %w", err)
		}
	}
	run.r.Log.Debug("replay indexes built", "indexes", len(idx), "builds", len(jobs), "took", time.Since(start))
	return nil
}

// runJobs runs jobs in their order on up to r.Parallel connections, so that
// none waits for another's lock: a constraint locks its table against every
// other build of it, so a build of a table starts only once that table's
// constraints are built, and a constraint only while nothing else builds
// on the table it locks.
func (run *replayRun) runJobs(ctx context.Context, jobs []buildJob) error {
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	pending := map[string]int{} // table -> constraints not yet built
	running := map[string]int{} // lock -> builds running on it
	for _, j := range jobs {
		if j.constraint {
			pending[j.table]++
		}
	}
	taken := make([]bool, len(jobs))
	var errs []error
	// next takes the first job that can start now; false once none is left
	// or one failed. Called with mu held.
	next := func() (int, bool) {
		for {
			left := false
			for i, j := range jobs {
				if taken[i] {
					continue
				}
				left = true
				if j.constraint && running[j.lock] == 0 || !j.constraint && pending[j.table] == 0 {
					taken[i] = true
					running[j.lock]++
					return i, true
				}
			}
			if !left || len(errs) > 0 {
				return 0, false
			}
			cond.Wait()
		}
	}
	var wg sync.WaitGroup
	for range max(run.r.Parallel, 1) {
		wg.Go(func() {
			for {
				mu.Lock()
				i, ok := next()
				mu.Unlock()
				if !ok {
					return
				}
				j, start := jobs[i], time.Now()
				_, err := run.r.Pool.Exec(ctx, j.sql)
				mu.Lock()
				running[j.lock]--
				if j.constraint {
					pending[j.table]--
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("build index %s: %w", j.name, err))
				}
				cond.Broadcast()
				mu.Unlock()
				run.r.Log.Debug("replay index built", "index", j.name, "took", time.Since(start))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// buildOrder orders the builds so that the longest start early and none
// waits for a lock: constraints first (each locks its table against every
// other build of it; built beside the full-text GIN index, the messages
// primary key waited for it to end, docs/benchmarks.md "Session 14"), then
// the GIN index's partitions (to_tsvector of every body: most of the
// phase), then the B-trees in catalog order.
func buildOrder(jobs []buildJob) []buildJob {
	out := slices.Clone(jobs)
	slices.SortStableFunc(out, func(a, b buildJob) int {
		return cmp.Compare(buildWeight(b), buildWeight(a))
	})
	return out
}

func buildWeight(j buildJob) int {
	switch {
	case j.constraint:
		return 2
	case j.gin:
		return 1
	}
	return 0
}
