package kafkalog

import (
	"context"
	"sync/atomic"
	"time"
)

// The send loop gathers sends into one produce request in three ways: those
// that arrive while a request is in flight (sendLoop), those announced by
// Expect, and, when Config.Linger is set, those within the linger.

// DefaultExpectWait bounds how long a produce request waits for the sends
// announced to the log (Expect) after its first record.
const DefaultExpectWait = time.Millisecond

// expected counts the sends announced and not yet appended or withdrawn.
type expected struct {
	n     atomic.Int64
	nudge chan struct{} // a send was withdrawn: the loop looks again
}

type expectKey struct{}

// expectation is one announced send.
type expectation struct {
	l    *Log
	done atomic.Bool
}

// release withdraws the send once: appended, or given up.
func (x *expectation) release() {
	if !x.done.CompareAndSwap(false, true) {
		return
	}
	x.l.expected.n.Add(-1)
	select {
	case x.l.expected.nudge <- struct{}{}:
	default:
	}
}

// Expect announces a send on its way to Append: its command is still
// checking (a message.send's claim, one Redis round trip). Until the send
// is appended under the returned context, or release is called, a produce
// request about to go out waits for it, up to Config.ExpectWait after its first
// record: the sends of a burst, which arrive together and finish their
// claims within microseconds of each other, then go in one request, where
// the first of them used to go alone and the rest in the next. Each
// request costs the broker, the hand-off, the fan-out and Redis a batch
// (docs/benchmarks.md, "Session 22"), and no timer is waited on unless a
// claim is slower than that. Call release when the send will not be
// appended; it may be called more than once.
func (l *Log) Expect(ctx context.Context) (context.Context, func()) {
	x := &expectation{l: l}
	l.expected.n.Add(1)
	return context.WithValue(ctx, expectKey{}, x), x.release
}

// arrived withdraws ctx's announced send, if any: it is being appended.
func arrived(ctx context.Context) {
	if x, ok := ctx.Value(expectKey{}).(*expectation); ok {
		x.release()
	}
}

// awaitExpected takes the sends that arrive while others are announced,
// for up to Config.ExpectWait, until the batch is full.
func (l *Log) awaitExpected(take func(*pendingSend), size func() int) {
	if l.expected.n.Load() <= 0 {
		return
	}
	wait := l.cfg.ExpectWait
	if wait == 0 {
		wait = DefaultExpectWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for size() < maxProduceBatch && l.expected.n.Load() > 0 {
		select {
		case s := <-l.queue:
			take(s)
		case <-l.expected.nudge:
		case <-t.C:
			return
		case <-l.stop:
			return
		}
	}
}

// linger takes the sends that arrive within Config.Linger after the first,
// until the batch is full. franz-go's own linger does not apply to
// ProduceSync.
func (l *Log) linger(take func(*pendingSend), size func() int) {
	if l.cfg.Linger <= 0 {
		return
	}
	t := time.NewTimer(l.cfg.Linger)
	defer t.Stop()
	for size() < maxProduceBatch {
		select {
		case s := <-l.queue:
			take(s)
		case <-t.C:
			return
		case <-l.stop:
			return
		}
	}
}
