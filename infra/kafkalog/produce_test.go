package kafkalog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/parley-chat/parley/internal/poll"
)

// A produce waits for the log's queue at most as long as its command may:
// while a broker does not answer, franz-go holds a request it has sent for
// as long as the outage lasts, the send loop with it, and every command of
// the node queued behind it hung, the queue full, with no answer to give.
// The send loop here never runs: it is stuck in such a request.
func TestProduceGivesUpWithItsContext(t *testing.T) {
	l := &Log{queue: make(chan *pendingSend, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	wait := func(ctx context.Context) <-chan error {
		out := make(chan error, 1)
		go func() { out <- l.produce(ctx, &kgo.Record{}) }()
		return out
	}
	answer := func(ch <-chan error) error {
		select {
		case err := <-ch:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("produce did not return once its context ended")
			return nil
		}
	}

	// Queued, not taken: the loop, when it comes back, skips it.
	ctx, cancel := context.WithCancel(context.Background())
	done := wait(ctx)
	poll.Until(t, 5*time.Second, "the record queued", func() bool { return len(l.queue) == 1 })
	cancel()
	if err := answer(done); err == nil || !strings.Contains(err.Error(), "not sent") {
		t.Fatalf("a record never taken: %v, want not sent", err)
	}
	if s := <-l.queue; s.state.CompareAndSwap(sendQueued, sendTaken) {
		t.Fatal("the send loop could still take a record its caller gave up on")
	}

	// The queue full: the caller does not wait for room past its context.
	l.queue <- &pendingSend{done: make(chan error, 1)}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := answer(wait(ctx)); err == nil || !strings.Contains(err.Error(), "not sent") {
		t.Fatalf("the queue full: %v, want not sent", err)
	}
	<-l.queue

	// Taken into a request the broker has not answered: the outcome is
	// waited for past the context, since the broker may have written it
	// and an answer now would have the client's retry log it again.
	ctx, cancel = context.WithCancel(context.Background())
	done = wait(ctx)
	poll.Until(t, 5*time.Second, "the record queued", func() bool { return len(l.queue) == 1 })
	s := <-l.queue
	if !s.state.CompareAndSwap(sendQueued, sendTaken) {
		t.Fatal("the send loop could not take a queued record")
	}
	cancel()
	select {
	case err := <-done:
		t.Fatalf("a record in a request answered %v before the broker did", err)
	case <-time.After(100 * time.Millisecond):
	}
	s.done <- nil // the broker's ack, when it comes back
	if err := answer(done); err != nil {
		t.Fatalf("a record written after its context ended: %v, want its ack", err)
	}
}
