package projections_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// repeatedSends counts the message_sent records of recs whose message id
// an earlier one of the same conversation had (duplicate produces).
func repeatedSends(recs []projections.Record) int {
	seen, n := map[[2]string]bool{}, 0
	for _, r := range recs {
		var p domain.MessageSent
		if r.Invalid || r.Event.Type != domain.EvMessageSent || r.Event.Payload(&p) != nil {
			continue
		}
		k := [2]string{r.Event.ConversationID, p.MessageID}
		if seen[k] {
			n++
		}
		seen[k] = true
	}
	return n
}

// replayLog projects recs live, then replays them in batches of batch into
// a fresh schema (dry run, compared table by table with the live one).
func replayLog(t *testing.T, recs []projections.Record, batch int) projections.ReplayResult {
	t.Helper()
	pool, live := replayable(t)
	applyAll(t, projections.NewStore(pool, live, testTopic), recs, 500)
	return dryRunReplayBatch(t, pool, live, recs, batch)
}

// A replay's applier inserts messages without ON CONFLICT and routes a
// repeated message id to event_log itself (replay_applier.go): the rows
// equal the live projector's, with no batch applied twice.
func TestReplayRoutesRepeatedSends(t *testing.T) {
	recs := newWorkload(11, 4).generate(4000)
	if n := repeatedSends(recs); n < 3 {
		t.Fatalf("the workload repeats only %d sends", n)
	}
	// Batches of 20: most repeats follow their first send within a few
	// dozen records, so they cross batches here.
	if res := replayLog(t, recs, 20); res.Retried != 0 {
		t.Fatalf("%d batches were applied again guarded: a repeat was not routed", res.Retried)
	}
}

// An applier that has forgotten the message ids (past its bound) meets a
// repeat in the unique index and applies that batch again guarded; one that
// writes its deferred last seqs after every batch writes the same rows.
func TestReplayForgetsRepeatsSafely(t *testing.T) {
	projections.SetRebuildBounds(t, 1, 1)
	recs := newWorkload(11, 4).generate(4000)
	if res := replayLog(t, recs, 20); res.Retried == 0 {
		t.Fatal("no batch met a forgotten repeat: the guarded path went untested")
	}
}

// The live store remembers the message ids it wrote too (sent_ids.go): its
// messages insert has no ON CONFLICT, a repeat is routed by the builder,
// and the rows equal those of the ON CONFLICT path, with no batch applied
// twice.
func TestApplyRoutesRepeatedSends(t *testing.T) {
	pool := openPool(t)
	ref, s, st := applyWithAndWithoutIDs(t, pool, newWorkload(11, 4).generate(4000))
	requireSame(t, pool, ref, s)
	if n := st.GuardedRetries(); n != 0 {
		t.Fatalf("%d batches were applied again guarded: a repeat was not routed", n)
	}
}

// A database restored under a running projector loses rows the store saw
// written: when the log is applied again from the restored offsets, the
// store must write them again, not trust its memory of them.
func TestApplyRewritesWhatARestoreTook(t *testing.T) {
	pool := openPool(t)
	recs := newWorkload(11, 4).generate(2000)
	ref, s, st := applyWithAndWithoutIDs(t, pool, recs)
	restoreEmpty(t, pool, s)
	applyAll(t, st, recs, 20)
	requireSame(t, pool, ref, s)
}

// applyWithAndWithoutIDs applies recs in batches of 20 to a fresh schema
// ref through a store without its id memory (every messages insert ON
// CONFLICT) and to a fresh schema s through a store with it (st).
func applyWithAndWithoutIDs(t *testing.T, pool *pgxpool.Pool, recs []projections.Record) (ref, s string, st *projections.Store) {
	t.Helper()
	ref = freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, ref, testTopic).WithoutSentIDs(), recs, 20)
	s = freshSchema(t, pool)
	st = projections.NewStore(pool, s, testTopic)
	applyAll(t, st, recs, 20)
	return ref, s, st
}

// A store that meets a duplicate produce of a message another process
// wrote (after a restart or a rebalance) must not take the duplicate's seq
// for the message's: when it later applies the log again (a restore took
// the rows), the original is the message and the duplicate the repeat, as
// for a store that saw both.
func TestApplyAgainAfterMeetingOnlyTheDuplicate(t *testing.T) {
	pool := openPool(t)
	recs := newWorkload(11, 4).generate(2000)
	ref := freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, ref, testTopic).WithoutSentIDs(), recs, 20)
	s := freshSchema(t, pool)
	half := afterAnOriginal(t, recs)
	applyAll(t, projections.NewStore(pool, s, testTopic), recs[:half], 20)
	st := projections.NewStore(pool, s, testTopic) // the next owner: an empty memory
	applyAll(t, st, recs[half:], 20)
	requireSame(t, pool, ref, s)
	restoreEmpty(t, pool, s)
	applyAll(t, st, recs, 20)
	requireSame(t, pool, ref, s)
}

// afterAnOriginal is the index just past the first send of recs that is
// produced twice later: a store that starts there meets the duplicate only.
func afterAnOriginal(t *testing.T, recs []projections.Record) int {
	t.Helper()
	first := map[string]int{}
	for i, r := range recs {
		if r.Invalid || r.Event.Type != domain.EvMessageSent {
			continue
		}
		var p domain.MessageSent
		if err := json.Unmarshal(r.Event.Data, &p); err != nil {
			t.Fatal(err)
		}
		if o, ok := first[p.MessageID]; ok {
			return o + 1
		}
		first[p.MessageID] = i
	}
	t.Fatal("the workload produced no send twice")
	return 0
}

// restoreEmpty empties every table of schema s, as the restore of a backup
// taken before anything was projected would.
func restoreEmpty(t *testing.T, pool *pgxpool.Pool, s string) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `DO $$ DECLARE t text; BEGIN
		FOR t IN SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = '`+s+`' AND tablename <> 'schema_migrations' LOOP
			EXECUTE 'TRUNCATE `+s+`.' || t || ' CASCADE';
		END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
}
