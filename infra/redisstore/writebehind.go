package redisstore

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/infra/metrics"
)

// WriteBehind sends writes nobody waits for (the hand-off, the final
// idempotency record of a send) in the background, whatever arrived while
// the previous pipeline was in flight going out together in the next: one
// round trip for many writes, off every caller's critical path. A write
// that does not fit in the queue, or whose pipeline fails, is dropped and
// reported to its done func: each user has a slower way to the same end.
type WriteBehind struct {
	rdb   redis.UniversalClient
	log   *slog.Logger
	queue chan write
	stop  context.CancelFunc
	done  chan struct{}
}

type write struct {
	add  func(redis.Pipeliner)
	done func(error) // may be nil
}

// maxWriteBatch bounds the writes of one pipeline.
const maxWriteBatch = 1024

// NewWriteBehind starts a writer with room for queue writes.
func NewWriteBehind(rdb redis.UniversalClient, queue int, log *slog.Logger) *WriteBehind {
	ctx, stop := context.WithCancel(context.Background())
	w := &WriteBehind{rdb: rdb, log: log, queue: make(chan write, queue), stop: stop, done: make(chan struct{})}
	go w.run(ctx)
	return w
}

// Add queues a write without waiting; false if the queue is full (done is
// not called then).
func (w *WriteBehind) Add(add func(redis.Pipeliner), done func(error)) bool {
	select {
	case w.queue <- write{add, done}:
		return true
	default:
		metrics.WriteBehindDropped.Inc()
		return false
	}
}

// Close sends what is queued (within a second) and stops; later writes
// are never sent.
func (w *WriteBehind) Close() {
	w.stop()
	<-w.done
}

func (w *WriteBehind) run(ctx context.Context) {
	defer close(w.done)
	batch := make([]write, 0, 64)
	for {
		select {
		case first := <-w.queue:
			batch = append(batch[:0], first)
		case <-ctx.Done():
			w.flushQueued(batch[:0])
			return
		}
		batch = w.gather(batch)
		w.flush(context.Background(), batch)
	}
}

// gather adds what is queued, up to a batch.
func (w *WriteBehind) gather(batch []write) []write {
	for len(batch) < maxWriteBatch {
		select {
		case wr := <-w.queue:
			batch = append(batch, wr)
		default:
			return batch
		}
	}
	return batch
}

// flushQueued sends what is queued at Close, within a second.
func (w *WriteBehind) flushQueued(batch []write) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for batch = w.gather(batch); len(batch) > 0 && ctx.Err() == nil; batch = w.gather(batch[:0]) {
		w.flush(ctx, batch)
	}
}

func (w *WriteBehind) flush(ctx context.Context, batch []write) {
	pipe := w.rdb.Pipeline()
	for _, wr := range batch {
		wr.add(pipe)
	}
	_, err := pipe.Exec(ctx)
	if err != nil {
		metrics.RedisErrors.WithLabelValues("write_behind").Inc()
		w.log.Warn("write-behind pipeline failed", "writes", len(batch), "err", err)
	}
	for _, wr := range batch {
		if wr.done != nil {
			wr.done(err)
		}
	}
}
