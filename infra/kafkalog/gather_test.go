package kafkalog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/internal/testenv"
)

// batches records the produce requests as the hand-off sees them: one call
// per request, with its records.
type batches struct {
	mu    sync.Mutex
	sizes []int
}

func (b *batches) offer(recs []kafkalog.Consumed) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sizes = append(b.sizes, len(recs))
}

func (b *batches) get() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.sizes...)
}

// openGathering opens a log whose requests wait for announced sends for
// up to wait (long enough that only the sends themselves end the wait).
func openGathering(t *testing.T, env *testenv.Env, wait time.Duration) (*kafkalog.Log, *batches) {
	t.Helper()
	cfg := app.KafkaConfig(env.Cfg)
	cfg.ExpectWait = wait
	l, err := kafkalog.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	b := &batches{}
	l.SetHandoff(b.offer)
	return l, b
}

func appendAsync(ctx context.Context, l *kafkalog.Log, id string) <-chan error {
	out := make(chan error, 1)
	go func() {
		_, err := l.Append(ctx, domain.Event{ID: id, Type: "test.v1", ConversationID: "conv-gather", At: time.Now()})
		out <- err
	}()
	return out
}

func await(t *testing.T, what string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not acked", what)
	}
}

// held checks that send is not acked while another is announced: 200 ms
// is far less than the minute openGathering lets the request wait.
func held(t *testing.T, send, announced string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s sent (%v) while %s was announced", send, err, announced)
	case <-time.After(200 * time.Millisecond):
	}
}

// A send that comes while others are announced (their claims under way)
// waits for them, and they go in one produce request; one withdrawn
// (its claim lost, or failed) is not waited for.
func TestProduceWaitsForAnnouncedSends(t *testing.T) {
	env := testenv.New(t)
	l, got := openGathering(t, env, time.Minute)
	bg := context.Background()
	ctxA, releaseA := l.Expect(bg)
	ctxB, releaseB := l.Expect(bg)
	_, releaseC := l.Expect(bg)
	defer releaseA()
	defer releaseB()

	a := appendAsync(ctxA, l, "gather-a")
	releaseC()
	releaseC() // twice is once
	held(t, "a", "b", a)
	b := appendAsync(ctxB, l, "gather-b")
	await(t, "a", a)
	await(t, "b", b)
	if sizes := got.get(); len(sizes) != 1 || sizes[0] != 2 {
		t.Fatalf("produce requests of %v records, want one of 2", sizes)
	}
}

// Nothing announced, or everything withdrawn: a send goes at once, never
// waiting for the bound (a minute here, past the test's own wait).
func TestProduceWaitsForNothingWithdrawn(t *testing.T) {
	env := testenv.New(t)
	l, got := openGathering(t, env, time.Minute)
	bg := context.Background()
	await(t, "a lone send", appendAsync(bg, l, "lone"))
	for i := range 3 {
		ctx, release := l.Expect(bg)
		_, withdrawn := l.Expect(bg)
		withdrawn()
		await(t, fmt.Sprintf("send %d", i), appendAsync(ctx, l, fmt.Sprintf("announced-%d", i)))
		release()
	}
	if sizes := got.get(); len(sizes) != 4 {
		t.Fatalf("produce requests of %v records, want four of 1", sizes)
	}
}

// A request waits for the sends announced before it started, not for
// those announced since: under load some always are, and every request
// would wait its full bound.
func TestProduceWaitsOnlyForSendsAnnouncedBefore(t *testing.T) {
	env := testenv.New(t)
	l, got := openGathering(t, env, time.Minute)
	bg := context.Background()
	ctxA, releaseA := l.Expect(bg)
	defer releaseA()
	x := appendAsync(bg, l, "unannounced") // the request starts with it, a on its way
	held(t, "x", "a", x)
	ctxB, releaseB := l.Expect(bg) // announced after the request started
	defer releaseB()
	a := appendAsync(ctxA, l, "a")
	await(t, "x", x)
	await(t, "a", a)
	b := appendAsync(ctxB, l, "b")
	await(t, "b", b)
	if sizes := got.get(); len(sizes) != 2 || sizes[0] != 2 || sizes[1] != 1 {
		t.Fatalf("produce requests of %v records, want x and a together, then b", sizes)
	}
}

// With no wait configured nothing is announced: a send is never held.
func TestProduceAnnouncesNothingWithoutAWait(t *testing.T) {
	env := testenv.New(t)
	l, got := openGathering(t, env, 0)
	ctx, release := l.Expect(context.Background())
	defer release()
	_, never := l.Expect(context.Background()) // never appended, never released
	_ = never
	await(t, "an announced send", appendAsync(ctx, l, "announced"))
	await(t, "a plain send", appendAsync(context.Background(), l, "plain"))
	if sizes := got.get(); len(sizes) != 2 {
		t.Fatalf("produce requests of %v records, want two of 1", sizes)
	}
}
