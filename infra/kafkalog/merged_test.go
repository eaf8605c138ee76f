package kafkalog_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/internal/testenv"
)

// fakeHandoff stands in for Redis: it hands over what a Log acked, but
// loses every third record and reverses each batch, as producers racing
// and dying would.
type fakeHandoff struct {
	mu      sync.Mutex
	recs    []kafkalog.Consumed
	offered map[[2]int64]bool // partition, offset
}

func (f *fakeHandoff) wasOffered(c kafkalog.Consumed) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.offered[[2]int64{int64(c.Partition), c.Offset}]
}

func (f *fakeHandoff) offer(recs []kafkalog.Consumed) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.offered == nil {
		f.offered = map[[2]int64]bool{}
	}
	for _, r := range recs {
		if r.Offset%3 != 1 {
			f.recs = append(f.recs, r)
			f.offered[[2]int64{int64(r.Partition), r.Offset}] = true
		}
	}
}

func (f *fakeHandoff) read(ctx context.Context, parts []int32) ([]kafkalog.Consumed, error) {
	f.mu.Lock()
	var out, keep []kafkalog.Consumed
	for _, r := range f.recs {
		if slices.Contains(parts, r.Partition) {
			out = append(out, r)
		} else {
			keep = append(keep, r)
		}
	}
	f.recs = keep
	f.mu.Unlock()
	if len(out) == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
	slices.Reverse(out)
	return out, nil
}

// A live consumer fed by a lossy, reordering hand-off and by the log (and
// by a second producer that hands nothing off) gives its handler every
// record once, in offset order per partition, in batches of at most
// MaxBatch, even when the handler fails a batch; and the hand-off did
// bring records first. Before each batch holding a record the hand-off
// never had, FromLog was called (the fan-out's route cache reads afresh).
func TestLiveMergesHandoffAndLog(t *testing.T) {
	env := testenv.New(t)
	fake := &fakeHandoff{}
	handing, silent := openLog(t, env), openLog(t, env)
	handing.SetHandoff(fake.offer)

	var mu sync.Mutex
	got := map[int32][]int64{}
	failOnce := true
	var fromLog atomic.Bool
	var unannounced [][2]int64 // partition, offset
	handle := func(_ context.Context, batch []kafkalog.Consumed) error {
		mu.Lock()
		defer mu.Unlock()
		if len(batch) > 7 {
			return fmt.Errorf("a batch of %d records, MaxBatch 7", len(batch))
		}
		if failOnce && len(got) > 0 {
			failOnce = false
			return fmt.Errorf("refused once for the test")
		}
		announced := fromLog.Swap(false)
		for _, c := range batch {
			if !announced && !fake.wasOffered(c) {
				unannounced = append(unannounced, [2]int64{int64(c.Partition), c.Offset})
			}
		}
		for _, c := range batch {
			got[c.Partition] = append(got[c.Partition], c.Offset)
		}
		return nil
	}
	handedBefore := testutil.ToFloat64(metrics.FanoutRecords.WithLabelValues("handoff"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- kafkalog.RunLive(ctx, kafkalog.LiveConfig{
			Kafka: app.KafkaConfig(env.Cfg).WithClientID("live-test"), Group: env.Cfg.GroupPrefix + "livetest",
			Handoff: fake.read, MaxBatch: 7, Gather: time.Millisecond, FromLog: func() { fromLog.Store(true) },
		}, handle, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("consumer: %v", err)
		}
	})

	const convs, perConv = 6, 40
	total := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, offs := range got {
			n += len(offs)
		}
		return n
	}
	// First the group must own the partitions, or the log brings all.
	for c := range convs {
		appendN(t, silent, fmt.Sprintf("conv-%d", c), 1)
	}
	testenv.WaitFor(t, 60*time.Second, "the first records handled", func() bool { return total() >= convs })
	var wg sync.WaitGroup
	for c := range convs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := handing
			if c%3 == 0 {
				l = silent
			}
			appendN(t, l, fmt.Sprintf("conv-%d", c), perConv)
		}()
	}
	wg.Wait()
	testenv.WaitFor(t, 60*time.Second, "every record handled", func() bool { return total() >= convs*(perConv+1) })
	if n := total(); n != convs*(perConv+1) {
		t.Fatalf("handled %d records, appended %d", n, convs*(perConv+1))
	}
	mu.Lock()
	defer mu.Unlock()
	for p, offs := range got {
		for i := range offs {
			if offs[i] != int64(i) {
				t.Fatalf("partition %d: handled offsets %v, want 0..%d once each in order", p, offs, len(offs)-1)
			}
		}
	}
	if testutil.ToFloat64(metrics.FanoutRecords.WithLabelValues("handoff")) == handedBefore {
		t.Fatal("no record came through the hand-off")
	}
	if len(unannounced) > 0 {
		t.Fatalf("records only the log had, handled without FromLog first (partition, offset): %v", unannounced)
	}
}

// A consumer that stops and starts again in the same group goes on from
// the offsets it committed: the hand-off, read again from its oldest entry,
// releases nothing twice, and what was appended while no consumer ran
// arrives once, in order.
func TestLiveResumesFromCommittedOffsets(t *testing.T) {
	env := testenv.New(t)
	fake := &replayingHandoff{}
	l := openLog(t, env)
	l.SetHandoff(fake.offer)
	rec := &recorder{}
	stop := runLive(t, env, "liveresume", fake.read, rec.handle, nil)
	appendN(t, l, "conv-a", 30)
	testenv.WaitFor(t, 60*time.Second, "the first 30 records", func() bool { return rec.count() >= 30 })
	stop()                      // commits on the way out
	appendN(t, l, "conv-a", 20) // nobody consumes these now
	stop = runLive(t, env, "liveresume", fake.read, rec.handle, nil)
	defer stop()
	appendN(t, l, "conv-a", 10)
	testenv.WaitFor(t, 60*time.Second, "all 60 records", func() bool { return rec.count() >= 60 })
	rec.expect(t, 0, 60)
}

// Offsets whose records the handler has not settled (LiveConfig.Settle
// fails: the fan-out's replies have not come) are not committed, neither
// once a second nor at the stop: the next consumer gets those records
// again.
func TestLiveRedeliversWhatWasNotSettled(t *testing.T) {
	env := testenv.New(t)
	fake := &replayingHandoff{}
	l := openLog(t, env)
	l.SetHandoff(fake.offer)
	rec := &recorder{}
	var settled atomic.Bool
	var calls atomic.Int64
	settle := func(context.Context) error {
		calls.Add(1)
		if settled.Load() {
			return nil
		}
		return errors.New("replies owed")
	}
	stop := runLive(t, env, "liveunsettled", fake.read, rec.handle, settle)
	appendN(t, l, "conv-a", 30)
	testenv.WaitFor(t, 60*time.Second, "the first 30 records", func() bool { return rec.count() >= 30 })
	// A commit tick after them (a commit there would skip the replay below).
	ticks := calls.Load()
	testenv.WaitFor(t, 10*time.Second, "a commit tick", func() bool { return calls.Load() > ticks })
	stop()
	settled.Store(true)
	stop = runLive(t, env, "liveunsettled", fake.read, rec.handle, settle)
	defer stop()
	testenv.WaitFor(t, 60*time.Second, "the 30 records again", func() bool { return rec.count() >= 60 })
	rec.expect(t, 0, 30, 0, 30)
}

// recorder keeps what a handler got.
type recorder struct {
	mu  sync.Mutex
	got []kafkalog.Consumed
}

func (r *recorder) handle(_ context.Context, batch []kafkalog.Consumed) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, batch...)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// expect checks that the offsets handled are the runs [from, to) given in
// pairs, in order, and nothing else.
func (r *recorder) expect(t *testing.T, runs ...int64) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var want []int64
	for i := 0; i+1 < len(runs); i += 2 {
		for o := runs[i]; o < runs[i+1]; o++ {
			want = append(want, o)
		}
	}
	got := make([]int64, len(r.got))
	for i, c := range r.got {
		got[i] = c.Offset
	}
	if !slices.Equal(got, want) {
		t.Fatalf("handled offsets %v, want %v", got, want)
	}
}

// runLive runs a live consumer of group (under the test's prefix) until
// the returned stop.
func runLive(t *testing.T, env *testenv.Env, group string, handoff func(context.Context, []int32) ([]kafkalog.Consumed, error),
	handle kafkalog.BatchHandler, settle func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- kafkalog.RunLive(ctx, kafkalog.LiveConfig{
			Kafka: app.KafkaConfig(env.Cfg).WithClientID("live-test"), Group: env.Cfg.GroupPrefix + group,
			Handoff: handoff, Settle: settle,
		}, handle, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	return func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("consumer: %v", err)
		}
	}
}

// replayingHandoff keeps every record, like a Redis stream: each new set
// of partitions is read from the oldest record again.
type replayingHandoff struct {
	mu   sync.Mutex
	recs []kafkalog.Consumed
	pos  map[int32]int // read position per partition; reset when the set changes
	set  string
}

func (f *replayingHandoff) offer(recs []kafkalog.Consumed) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recs = append(f.recs, recs...)
}

func (f *replayingHandoff) read(ctx context.Context, parts []int32) ([]kafkalog.Consumed, error) {
	f.mu.Lock()
	if set := fmt.Sprint(parts); set != f.set || f.pos == nil {
		f.set, f.pos = set, map[int32]int{}
	}
	var out []kafkalog.Consumed
	seen := map[int32]int{}
	for _, r := range f.recs {
		if !slices.Contains(parts, r.Partition) {
			continue
		}
		if seen[r.Partition]++; seen[r.Partition] > f.pos[r.Partition] {
			out = append(out, r)
			f.pos[r.Partition]++
		}
	}
	f.mu.Unlock()
	if len(out) == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
	return out, nil
}
