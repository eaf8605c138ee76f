package projections_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// A pipeline ends where Apply one batch at a time does, whatever the batch
// size, and builds each batch knowing the message ids of the one before
// (the workload's duplicate produces meet no unique index).
func TestPipelineAppliesWhatApplyDoes(t *testing.T) {
	pool := openPool(t)
	recs := newWorkload(9, 4).generate(5000)
	want := freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, want, testTopic), recs, 1000)
	for _, size := range []int{7, 250, 1000} {
		schema := freshSchema(t, pool)
		st := projections.NewStore(pool, schema, testTopic)
		p := st.Pipeline()
		applyAll(t, p, recs, size)
		if err := p.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		requireSame(t, pool, schema, want)
		if n := st.GuardedRetries(); n != 0 {
			t.Errorf("batches of %d: %d batches applied again guarded, want none", size, n)
		}
	}
}

// A batch that fails in Postgres fails the next Apply with ErrOffsetGap
// (the consumer then re-reads from the stored offsets), and applies
// nothing: re-applied from where the offsets stand, the log ends as Apply
// builds it.
func TestPipelineFailsTheBatchAfterAFailure(t *testing.T) {
	pool := openPool(t)
	recs := newWorkload(9, 1).generate(300)
	want, schema := freshSchema(t, pool), freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, want, testTopic), recs, 100)
	st := projections.NewStore(pool, schema, testTopic)
	p := st.Pipeline()
	ctx := context.Background()
	if err := p.Apply(ctx, recs[:100]); err != nil {
		t.Fatal(err)
	}
	// recs[150:200] skips [100, 150): refused in its transaction.
	if err := p.Apply(ctx, recs[150:200]); err != nil {
		t.Fatalf("the batch after a good one: %v", err)
	}
	err := p.Apply(ctx, recs[200:300])
	if !errors.Is(err, projections.ErrOffsetGap) {
		t.Fatalf("the batch after a failed one: %v, want ErrOffsetGap", err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("flush after the failure was reported: %v", err)
	}
	resume, err := st.ResumeOffsets(ctx, []int32{0})
	if err != nil || resume[0] != 100 {
		t.Fatalf("stored offset %d (%v), want 100: nothing after the good batch applied", resume[0], err)
	}
	applyAll(t, p, recs[100:], 100)
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	requireSame(t, pool, schema, want)
}

// A batch Postgres cannot take for a while (its offsets table gone) is
// retried in the background until it can, not reported: the next Apply
// waits for it, and nothing is re-read.
func TestPipelineRetriesABatchPostgresRefused(t *testing.T) {
	pool := openPool(t)
	recs := newWorkload(9, 1).generate(300)
	want, schema := freshSchema(t, pool), freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, want, testTopic), recs, 100)
	st := projections.NewStore(pool, schema, testTopic)
	retried := make(chan struct{}, 100)
	st.OnRetry = func(error, time.Duration) {
		select {
		case retried <- struct{}{}:
		default:
		}
	}
	p := st.Pipeline()
	ctx := context.Background()
	offsets := pgx.Identifier{schema, "projector_offsets"}.Sanitize()
	if _, err := pool.Exec(ctx, `ALTER TABLE `+offsets+` RENAME TO away`); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(ctx, recs[:100]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-retried:
	case <-time.After(10 * time.Second):
		t.Fatal("the refused batch was not retried")
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE `+pgx.Identifier{schema, "away"}.Sanitize()+` RENAME TO projector_offsets`); err != nil {
		t.Fatal(err)
	}
	applyAll(t, p, recs[100:], 100)
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	requireSame(t, pool, schema, want)
}

// A batch built on the message ids of the batch before it is built again
// when that batch did not commit what it was built with: here the first
// send of m1 is set aside (its reply_to is too long to index), so its
// clean duplicate in the next batch must get the messages row, not be
// routed as a repeat.
func TestPipelineRebuildsWhatTheBatchBeforeDidNotWrite(t *testing.T) {
	pool := openPool(t)
	var recs []projections.Record
	recs = appendEvent(recs, "c1", domain.EvConversationCreated, domain.ConversationCreated{Kind: "group", Title: "t", Members: []string{"alice", "bob"}})
	recs = appendEvent(recs, "c1", domain.EvMessageSent, domain.MessageSent{MessageID: "m1", ClientMsgID: "k1", Body: "plum", ReplyTo: strings.Repeat("r", 2000)})
	recs = appendEvent(recs, "c1", domain.EvMessageSent, domain.MessageSent{MessageID: "m1", ClientMsgID: "k1", Body: "plum"})
	want, schema := freshSchema(t, pool), freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, want, testTopic), recs, 2)
	p := projections.NewStore(pool, schema, testTopic).Pipeline()
	applyAll(t, p, recs, 2)
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	requireSame(t, pool, schema, want)
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{schema, "messages"}.Sanitize()).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d messages rows (%v), want m1's", n, err)
	}
}

// The projector's stages resume each partition where the stage further
// behind stands, and the one ahead skips what it has: history and search
// applied apart, then together from there, end as one store applying both.
func TestStagesResumeWhereTheStageBehindStands(t *testing.T) {
	pool := openPool(t)
	recs := newWorkload(9, 2).generate(2000)
	want, schema := freshSchema(t, pool), freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, want, testTopic), recs, 500)
	base := projections.NewStore(pool, schema, testTopic)
	applyAll(t, base.Writing(projections.PartHistory), recs[:1500], 500)
	applyAll(t, base.Writing(projections.PartSearch), recs[:500], 500)
	stages := projections.NewStages(base.Writing(projections.PartHistory), base.Writing(projections.PartSearch))
	ctx := context.Background()
	resume, err := stages.ResumeOffsets(ctx, []int32{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	from := len(recs)
	for i, r := range recs {
		if r.Offset >= resume[r.Partition] {
			from = i
			break
		}
	}
	if from != 500 || resume[0]+resume[1] != 500 {
		t.Fatalf("resume at %v (record %d), want where search stands (500 records in)", resume, from)
	}
	applyAll(t, stages, recs[from:], 300)
	if err := stages.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	requireSame(t, pool, schema, want)
}

// With OnGap set, a batch off the stored offsets is told at once, without
// waiting for another batch (an idle consumer rewinds now), and is not
// reported again by the next Apply.
func TestPipelineTellsAGapAtOnce(t *testing.T) {
	pool := openPool(t)
	recs := newWorkload(9, 1).generate(300)
	st := projections.NewStore(pool, freshSchema(t, pool), testTopic)
	gaps := make(chan error, 1)
	st.OnGap = func(err error) { gaps <- err }
	p := st.Pipeline()
	ctx := context.Background()
	if err := p.Apply(ctx, recs[100:200]); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-gaps:
		if !errors.Is(err, projections.ErrOffsetGap) {
			t.Fatalf("told %v, want ErrOffsetGap", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gap was not told")
	}
	if err := p.Apply(ctx, recs[:100]); err != nil {
		t.Fatalf("the batch read again after the gap: %v", err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if resume, err := st.ResumeOffsets(ctx, []int32{0}); err != nil || resume[0] != 100 {
		t.Fatalf("stored offset %d (%v), want 100", resume[0], err)
	}
}

// One stage that Postgres refuses for a while (search's offsets table
// gone) holds the other back, not ahead: both end as one store does.
func TestStagesWaitForTheStageBehind(t *testing.T) {
	pool := openPool(t)
	recs := newWorkload(9, 2).generate(1000)
	want, schema := freshSchema(t, pool), freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, want, testTopic), recs, 200)
	base := projections.NewStore(pool, schema, testTopic)
	retried := make(chan struct{}, 100)
	base.OnRetry = func(error, time.Duration) {
		select {
		case retried <- struct{}{}:
		default:
		}
	}
	stages := projections.NewStages(base.Writing(projections.PartHistory), base.Writing(projections.PartSearch))
	ctx := context.Background()
	offsets := pgx.Identifier{schema, "search_offsets"}.Sanitize()
	if _, err := pool.Exec(ctx, `ALTER TABLE `+offsets+` RENAME TO away`); err != nil {
		t.Fatal(err)
	}
	if err := stages.Apply(ctx, recs[:200]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-retried:
	case <-time.After(10 * time.Second):
		t.Fatal("the search stage was not retried")
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE `+pgx.Identifier{schema, "away"}.Sanitize()+` RENAME TO search_offsets`); err != nil {
		t.Fatal(err)
	}
	applyAll(t, stages, recs[200:], 200)
	if err := stages.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	requireSame(t, pool, schema, want)
}
