package projections_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/projections"
)

// The rows must not depend on how the log was cut into batches, nor on
// redelivery: that is what makes a replay equal the live read models.
func TestApplyIsIdempotentAndCutIndependent(t *testing.T) {
	pool := openPool(t)
	w := newWorkload(1, 4)
	recs := w.generate(2000)

	ref := freshSchema(t, pool) // one batch holding the whole log
	applyAll(t, projections.NewStore(pool, ref, testTopic), recs, len(recs))

	t.Run("same batches twice", func(t *testing.T) {
		s := freshSchema(t, pool)
		st := projections.NewStore(pool, s, testTopic)
		applyAll(t, st, recs, 250)
		applyAll(t, st, recs, 250)
		requireSame(t, pool, ref, s)
	})
	t.Run("tiny batches", func(t *testing.T) {
		s := freshSchema(t, pool)
		applyAll(t, projections.NewStore(pool, s, testTopic), recs, 3)
		requireSame(t, pool, ref, s)
	})
	t.Run("random cuts with redelivered overlaps", func(t *testing.T) {
		s := freshSchema(t, pool)
		st := projections.NewStore(pool, s, testTopic)
		rnd := rand.New(rand.NewPCG(7, 7))
		for i := 0; i < len(recs); {
			n := 1 + rnd.IntN(400)
			end := min(i+n, len(recs))
			// Redeliver a stretch before i (a consumer restarted from an older commit).
			from := max(0, i-rnd.IntN(300))
			if err := st.Apply(context.Background(), recs[from:end]); err != nil {
				t.Fatal(err)
			}
			i = end
		}
		requireSame(t, pool, ref, s)
	})
	t.Run("partitions interleaved differently", func(t *testing.T) {
		// Per-partition order is all the log promises; across partitions
		// any interleaving may reach the projector.
		s := freshSchema(t, pool)
		byPart := slices.Clone(recs)
		slices.SortStableFunc(byPart, func(a, b projections.Record) int { return int(b.Partition - a.Partition) })
		applyAll(t, projections.NewStore(pool, s, testTopic), byPart, 333)
		requireSame(t, pool, ref, s)
	})
	t.Run("the replayed store writes the same rows", func(t *testing.T) {
		s := freshSchema(t, pool)
		applyAll(t, projections.NewStore(pool, "unused", testTopic).In(s), recs, 5000)
		requireSame(t, pool, ref, s)
	})

	// The log is all there: every decodable message, conversation and event.
	var msgs, events int
	if err := pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM `+pgx.Identifier{ref, "messages"}.Sanitize()+`),
		(SELECT count(*) FROM `+pgx.Identifier{ref, "events"}.Sanitize()+`)`).Scan(&msgs, &events); err != nil {
		t.Fatal(err)
	}
	invalid := 0
	for _, r := range recs {
		if r.Invalid {
			invalid++
		}
	}
	if events != len(recs)-invalid || msgs == 0 {
		t.Fatalf("events %d (want %d), messages %d", events, len(recs)-invalid, msgs)
	}
}

// A projector's batch goes to the schema the pointer names at that moment,
// and its readers follow.
func TestApplyFollowsThePointer(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	if err := pgstore.MigrateControl(ctx, dsn()); err != nil {
		t.Fatal(err)
	}
	old, fresh := freshSchema(t, pool), freshSchema(t, pool)
	t.Cleanup(func() { _, _ = pool.Exec(ctx, `DELETE FROM parley.read_model WHERE name=$1`, old) })
	if _, err := projections.RegisterPointer(ctx, pool, old); err != nil {
		t.Fatal(err)
	}
	w := newWorkload(2, 2)
	first, second := w.generate(400), w.generate(400)

	live := projections.NewStore(pool, old, testTopic)
	applyAll(t, live, first, 100)
	// A replay would rebuild fresh up to here and switch.
	applyAll(t, live.In(fresh), first, 1000)
	if _, err := pool.Exec(ctx, `UPDATE parley.read_model SET active_schema=$2 WHERE name=$1`, old, fresh); err != nil {
		t.Fatal(err)
	}
	applyAll(t, live, second, 100)
	if live.Schema() != fresh {
		t.Fatalf("readers on %s, want %s", live.Schema(), fresh)
	}
	ref := freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, ref, testTopic), append(slices.Clone(first), second...), 800)
	requireSame(t, pool, ref, fresh)
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{old, "events"}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != countValid(first) {
		t.Fatalf("the old schema got %d events after the switch; want it frozen at %d", n, countValid(first))
	}

	// A reader-only store follows on refresh.
	reader := projections.NewStore(pool, old, testTopic)
	if err := reader.RefreshActive(ctx); err != nil || reader.Schema() != fresh {
		t.Fatalf("reader on %s (%v), want %s", reader.Schema(), err, fresh)
	}
}

func countValid(recs []projections.Record) int {
	n := 0
	for _, r := range recs {
		if !r.Invalid {
			n++
		}
	}
	return n
}

// When the offsets guard lets records through again (here: the offsets are
// lost while the rows stay), the unguarded inserts meet rows that exist:
// the unique index refuses them, and the batch is applied again guarded,
// with the same rows as a clean apply.
func TestApplyRetriesGuardedWhenRowsExist(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	recs := newWorkload(5, 2).generate(900)
	ref := freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, ref, testTopic), recs, len(recs))

	s := freshSchema(t, pool)
	st := projections.NewStore(pool, s, testTopic)
	applyAll(t, st, recs[:600], 200)
	if _, err := pool.Exec(ctx, `DELETE FROM `+pgx.Identifier{s, "projector_offsets"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	applyAll(t, st, recs, 300)
	requireSame(t, pool, ref, s)
}
