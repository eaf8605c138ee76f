package kafkalog

import (
	"context"
	"sync/atomic"
	"time"
)

// The send loop gathers sends into one produce request in three ways: those
// that arrive while a request is in flight (sendLoop), those announced by
// Expect, and, when Config.Linger is set, those within the linger.

// expected counts the sends announced and not yet taken into a request or
// withdrawn.
type expected struct {
	n     atomic.Int64  // announced and not gone
	gone  atomic.Int64  // taken or withdrawn, ever
	nudge chan struct{} // one went: the waiting loop looks again
}

type expectKey struct{}

// expectation is one announced send.
type expectation struct {
	l    *Log
	done atomic.Bool
}

// release marks the send gone once: taken into a request, or given up.
func (x *expectation) release() {
	if x == nil || !x.done.CompareAndSwap(false, true) {
		return
	}
	x.l.expected.n.Add(-1)
	x.l.expected.gone.Add(1)
	select {
	case x.l.expected.nudge <- struct{}{}:
	default:
	}
}

// Expect announces a send on its way to Append: its command is still
// checking (a message.send's claim, one Redis round trip). A produce request
// about to go out waits for the sends announced before it starts, until
// the send loop has taken them or they are withdrawn, for at most
// Config.ExpectWait after its first record: the sends of a burst, which
// arrive together and finish their claims within microseconds of each
// other, then go in one request, where the first of them used to go alone
// and the rest in the next. Each request costs the broker, the hand-off,
// the fan-out and Redis a batch (docs/benchmarks.md, "Session 22"). The
// send is withdrawn when the send loop takes the record Append queued
// under the returned context, or by release (call it when the send will
// not be appended; more than once is once). With ExpectWait 0 (set from
// CHAT_KAFKA_EXPECT_WAIT, 1 ms by default) nothing is announced.
func (l *Log) Expect(ctx context.Context) (context.Context, func()) {
	if l.cfg.ExpectWait <= 0 {
		return ctx, func() {}
	}
	x := &expectation{l: l}
	l.expected.n.Add(1)
	return context.WithValue(ctx, expectKey{}, x), x.release
}

// expectationOf is ctx's announced send, if any.
func expectationOf(ctx context.Context) *expectation {
	x, _ := ctx.Value(expectKey{}).(*expectation)
	return x
}

// awaitExpected takes the sends that arrive while those announced before
// it was called are on their way, until Config.ExpectWait after first
// (the batch's first record) or a full batch. Sends announced later do
// not hold this request: under load there always are some, and they go
// in the next.
func (l *Log) awaitExpected(first time.Time, take func(*pendingSend), size func() int) {
	ahead := l.expected.n.Load()
	if ahead <= 0 {
		return
	}
	target := l.expected.gone.Load() + ahead
	l.gatherFor(l.cfg.ExpectWait-time.Since(first), take, size, l.expected.nudge, func() bool {
		return l.expected.gone.Load() < target && l.expected.n.Load() > 0
	})
}

// linger takes the sends that arrive within Config.Linger after first,
// until the batch is full. franz-go's own linger does not apply to
// ProduceSync.
func (l *Log) linger(first time.Time, take func(*pendingSend), size func() int) {
	l.gatherFor(l.cfg.Linger-time.Since(first), take, size, nil, func() bool { return true })
}

// gatherFor takes queued sends for at most left, while the batch is not
// full and more says there is more to wait for; a nudge (nil: none) has it
// ask again.
func (l *Log) gatherFor(left time.Duration, take func(*pendingSend), size func() int, nudge <-chan struct{}, more func() bool) {
	if left <= 0 {
		return
	}
	t := time.NewTimer(left)
	defer t.Stop()
	for size() < maxProduceBatch && more() {
		select {
		case s := <-l.queue:
			take(s)
		case <-nudge:
		case <-t.C:
			return
		case <-l.stop:
			return
		}
	}
}
