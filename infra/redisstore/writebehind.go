package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/infra/metrics"
)

// WriteBehind sends writes nobody waits for (the hand-off, the final
// idempotency record of a send) in the background, whatever arrived while
// the previous batch was being written going out together in the next:
// one write for many, off every caller's critical path. A write that does
// not fit in the queue, or whose batch fails, is dropped and reported to
// its done func: each user has a slower way to the same end.
//
// To one Redis over plain TCP the batches go on a connection whose replies
// are read late (late.go), so that no reply wakes the process; elsewhere
// (TLS, a Cluster), and for a batch whose connection broke, as a go-redis
// pipeline. A batch may then reach Redis twice: every write must be one
// that can be repeated (a SET, a hand-off record the fan-out deduplicates).
// A done func hears of a batch that could not be written, not of a write
// Redis refused (an error reply, read later: counted and logged by Late).
type WriteBehind struct {
	rdb   redis.UniversalClient
	log   *slog.Logger
	queue chan write
	stop  context.CancelFunc
	done  chan struct{}
	late  *Late // nil: the client allows none
	out   []byte
}

// Cmd is one command's arguments, its name first; each a string, []byte,
// int or int64.
type Cmd []any

type write struct {
	cmds []Cmd
	done func(error) // may be nil
}

// maxWriteBatch bounds the writes of one pipeline.
const maxWriteBatch = 1024

// NewWriteBehind starts a writer with room for queue writes.
func NewWriteBehind(rdb redis.UniversalClient, queue int, log *slog.Logger) *WriteBehind {
	ctx, stop := context.WithCancel(context.Background())
	w := &WriteBehind{rdb: rdb, log: log, queue: make(chan write, queue), stop: stop, done: make(chan struct{}),
		late: NewLate(rdb, log, "late")}
	go w.run(ctx)
	return w
}

// Add queues a write of cmds, in order, without waiting; false if the
// queue is full (done is not called then).
func (w *WriteBehind) Add(done func(error), cmds ...Cmd) bool {
	if err := validCmds(cmds); err != nil {
		panic(err) // a caller's bug, caught by its first test
	}
	select {
	case w.queue <- write{cmds, done}:
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
	defer w.late.Close()
	// The late connection's replies owed while nothing is written are read
	// once a second (Late.Drain).
	var tick <-chan time.Time
	if w.late != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	batch := make([]write, 0, 64)
	for {
		select {
		case first := <-w.queue:
			batch = append(batch[:0], first)
		case <-tick:
			w.late.Drain()
			continue
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
	if w.sendLate(batch) {
		w.finish(batch, nil)
		return
	}
	pipe := w.rdb.Pipeline()
	for _, wr := range batch {
		for _, cmd := range wr.cmds {
			pipe.Do(ctx, cmd...)
		}
	}
	_, err := pipe.Exec(ctx)
	if err != nil {
		metrics.RedisErrors.WithLabelValues("write_behind").Inc()
		w.log.Warn("write-behind pipeline failed", "writes", len(batch), "err", err)
	}
	w.finish(batch, err)
}

func (w *WriteBehind) finish(batch []write, err error) {
	for _, wr := range batch {
		if wr.done != nil {
			wr.done(err)
		}
	}
}

// sendLate writes batch on the late connection; false if there is none or
// the write failed (the caller sends the batch another way).
func (w *WriteBehind) sendLate(batch []write) bool {
	if w.late == nil {
		return false
	}
	out, n := w.out[:0], 0
	for _, wr := range batch {
		for _, cmd := range wr.cmds {
			out, n = AppendCommand(out, cmd), n+1
		}
	}
	w.out = out
	if cap(w.out) > 1<<20 {
		w.out = nil // a burst's buffer is not kept
	}
	return w.late.Write(out, n)
}

// validCmds refuses what AppendCommand cannot write: an empty command (no
// reply would come, and the replies owed would be off by one for good) or
// an argument of another type.
func validCmds(cmds []Cmd) error {
	for _, cmd := range cmds {
		if len(cmd) == 0 {
			return errors.New("redisstore: an empty command")
		}
		for _, a := range cmd {
			switch a.(type) {
			case string, []byte, int, int64:
			default:
				return fmt.Errorf("redisstore: argument of type %T in %v", a, cmd[0])
			}
		}
	}
	return nil
}
