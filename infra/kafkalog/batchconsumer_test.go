package kafkalog_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/internal/testenv"
)

// store is a handler's own offset table, as the projector keeps one in
// Postgres: it applies a record only where its partition continues.
type store struct {
	mu      sync.Mutex
	next    map[int32]int64
	applied []kafkalog.Consumed
	refuse  int // refuse this many batches with a rewind
	rewinds int
}

func (s *store) resume(_ context.Context, parts []int32) (map[int32]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int32]int64{}
	for _, p := range parts {
		out[p] = s.next[p]
	}
	return out, nil
}

func (s *store) handle(_ context.Context, batch []kafkalog.Consumed) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse > 0 {
		s.refuse--
		s.rewinds++
		return fmt.Errorf("%w: refused for the test", kafkalog.ErrRewind)
	}
	next := map[int32]int64{}
	for p, o := range s.next {
		next[p] = o
	}
	var fresh []kafkalog.Consumed
	for _, c := range batch {
		if c.Offset < next[c.Partition] {
			continue
		}
		if c.Offset-c.Hole > next[c.Partition] {
			s.rewinds++
			return fmt.Errorf("%w: partition %d at %d, batch at %d", kafkalog.ErrRewind, c.Partition, next[c.Partition], c.Offset)
		}
		next[c.Partition] = c.Offset + 1
		fresh = append(fresh, c)
	}
	s.next, s.applied = next, append(s.applied, fresh...)
	return nil
}

func (s *store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.applied)
}

func appendN(t *testing.T, l *kafkalog.Log, conv string, n int) {
	t.Helper()
	for i := range n {
		e := domain.Event{ID: fmt.Sprintf("%s-%d", conv, i), Type: "test.v1", ConversationID: conv, At: time.Now()}
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func openLog(t *testing.T, env *testenv.Env) *kafkalog.Log {
	t.Helper()
	l, err := kafkalog.Open(app.KafkaConfig(env.Cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func runConsumer(t *testing.T, env *testenv.Env, s *store) {
	t.Helper()
	bc, err := kafkalog.NewBatchConsumer(kafkalog.BatchConfig{
		Kafka: app.KafkaConfig(env.Cfg).WithClientID("batch-test"), Group: env.Cfg.GroupPrefix + "batchtest",
		Size: 7, Wait: time.Millisecond, Resume: s.resume,
	}, s.handle, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer: %v", err)
		}
	})
}

// The group has committed the end of the log, but the handler's store has
// nothing: the consumer starts where the store says. Refused batches are
// read again from the store's offsets. Every record is applied once, in
// offset order per partition.
func TestBatchConsumerFollowsTheStoredOffsets(t *testing.T) {
	env := testenv.New(t)
	l := openLog(t, env)
	const perConv, convs = 30, 3
	for c := range convs {
		appendN(t, l, fmt.Sprintf("c%d", c), perConv)
	}
	hwms, err := l.HighWaterMarks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for p, hwm := range hwms {
		commit(t, app.KafkaConfig(env.Cfg).WithClientID("batch-test-commit"), env.Cfg.GroupPrefix+"batchtest", p, hwm)
	}

	s := &store{next: map[int32]int64{}, refuse: 3}
	runConsumer(t, env, s)
	testenv.WaitFor(t, 60*time.Second, "every record applied", func() bool { return s.count() >= perConv*convs })

	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.applied) != perConv*convs {
		t.Fatalf("applied %d records, want %d", len(s.applied), perConv*convs)
	}
	next := map[int32]int64{} // every partition from 0, one offset after another
	for _, c := range s.applied {
		if c.Offset != next[c.Partition] {
			t.Fatalf("partition %d: offset %d applied where %d was due", c.Partition, c.Offset, next[c.Partition])
		}
		next[c.Partition]++
	}
	if s.rewinds < 3 {
		t.Fatalf("%d rewinds, want the 3 refused batches", s.rewinds)
	}
}

// Retention removed the first records before anything applied them: the
// first record read proves the hole, so the handler can accept it.
func TestBatchConsumerProvesAHoleLeftByRetention(t *testing.T) {
	env := testenv.New(t)
	l := openLog(t, env)
	appendN(t, l, "trimmed", 20)
	p, err := l.Partition("trimmed")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := kafkalog.NewAdmin(app.KafkaConfig(env.Cfg).WithClientID("batch-test-admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.DeleteRecords(env.Cfg.Topic, map[int32]int64{p: 12}); err != nil {
		t.Fatal(err)
	}

	s := &store{next: map[int32]int64{}}
	runConsumer(t, env, s)
	testenv.WaitFor(t, 60*time.Second, "the retained records applied", func() bool { return s.count() >= 8 })

	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.applied[0]
	if first.Partition != p || first.Offset != 12 || first.Hole != 12 || len(s.applied) != 8 {
		t.Fatalf("first applied record %+v of %d, want partition %d offset 12 with a hole of 12, of 8", first, len(s.applied), p)
	}
	for _, c := range s.applied[1:] {
		if c.Hole != 0 {
			t.Fatalf("record at %d claims a hole of %d", c.Offset, c.Hole)
		}
	}
}

// A shutdown that interrupts a batch must not apply a later one: the
// interrupted batch is not applied, so the later one would skip it.
func TestBatchConsumerShutdownDuringAFailingBatch(t *testing.T) {
	env := testenv.New(t)
	l := openLog(t, env)
	appendN(t, l, "one-partition", 40)
	for round := range 5 {
		s := &store{next: map[int32]int64{}}
		started := make(chan struct{})
		var once sync.Once
		handle := func(ctx context.Context, batch []kafkalog.Consumed) error {
			first := false
			once.Do(func() { first = true })
			if first {
				close(started)
				<-ctx.Done() // an apply the shutdown interrupts
				return ctx.Err()
			}
			return s.handle(ctx, batch)
		}
		bc, err := kafkalog.NewBatchConsumer(kafkalog.BatchConfig{
			Kafka: app.KafkaConfig(env.Cfg).WithClientID("batch-test"), Group: fmt.Sprintf("%sshutdown%d", env.Cfg.GroupPrefix, round),
			Size: 5, Wait: time.Millisecond, Resume: s.resume,
		}, handle, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- bc.Run(ctx) }()
		select {
		case <-started:
		case <-time.After(60 * time.Second):
			t.Fatal("no batch within 60 s")
		}
		testenv.WaitFor(t, 10*time.Second, "records waiting behind the interrupted batch", func() bool { return bc.Waiting() > 0 })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		applied, rewinds := len(s.applied), s.rewinds
		s.mu.Unlock()
		if applied != 0 || rewinds != 0 {
			t.Fatalf("round %d: after the interrupted first batch, %d records were applied and %d batches skipped offsets", round, applied, rewinds)
		}
	}
}
