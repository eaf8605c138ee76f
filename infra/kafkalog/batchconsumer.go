package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// Consumed is one record read from the log.
type Consumed struct {
	Partition int32
	Offset    int64
	// Hole > 0: the log holds no record of the partition in
	// [Offset-Hole, Offset). Only the first record read after a seek can
	// prove one: retention removed records before they were consumed.
	Hole  int64
	Value []byte
	// Received, if set, is when the record came on the hand-off's live
	// channel, by the receiver's clock (zero: from the log or a stream's
	// backlog).
	Received time.Time
}

// ErrRewind, wrapped in a handler's error, says the batch does not continue
// where the handler's stored offsets are: the consumer drops it and starts a
// new session, which seeks every partition to those offsets again.
var ErrRewind = errors.New("rewind to the stored offsets")

// BatchHandler applies a batch; it must be idempotent, because a batch is
// retried until it succeeds and may be redelivered after a crash.
type BatchHandler func(ctx context.Context, batch []Consumed) error

// BatchConfig of a batching consumer group.
type BatchConfig struct {
	// Kafka names the brokers, the topic, the client id and the security.
	Kafka Config
	Group string
	Size  int           // flush when this many records are waiting
	Wait  time.Duration // or when the oldest has waited this long
	// HurryWait replaces Wait for HurryFor after a Hurry: a reader waits
	// for the batch, so it is flushed as soon as it is read.
	HurryWait time.Duration
	HurryFor  time.Duration
	// FetchMin and FetchWait: a fetch returns once FetchMin bytes are there
	// or after FetchWait (defaults 1 byte, 20 ms). A consumer that is not
	// on the live path (the projector) trades a few milliseconds of lag for
	// far fewer fetch requests, each broker's largest cost per message.
	FetchMin  int32
	FetchWait time.Duration
	// Observe, if set, is told each flushed batch's size and duration.
	Observe func(size int, took time.Duration)
	// Resume, if set, tells where the handler's own store continues each
	// partition; every session starts its partitions there, whatever the
	// group committed (the store is the truth, the group's offsets a hint).
	// It is retried until it answers or the session ends.
	Resume func(ctx context.Context, partitions []int32) (map[int32]int64, error)
}

func (c *BatchConfig) setDefaults() {
	if c.Size == 0 {
		c.Size = 1000
	}
	if c.Wait == 0 {
		c.Wait = 5 * time.Millisecond
	}
	if c.HurryWait == 0 {
		c.HurryWait = time.Millisecond
	}
	if c.HurryFor == 0 {
		c.HurryFor = 250 * time.Millisecond
	}
}

// Validate reports a config the consumer cannot work with.
func (c BatchConfig) Validate() error {
	if err := c.Kafka.validateConsumer(); err != nil {
		return err
	}
	switch {
	case c.Group == "":
		return errors.New("kafkalog: a batch consumer needs a group")
	case c.Size < 1 || c.Size > 1_000_000:
		return fmt.Errorf("kafkalog: batch size %d outside 1-1000000", c.Size)
	case c.Wait < 0 || c.Wait > time.Minute:
		return fmt.Errorf("kafkalog: batch wait %s outside 0-1m", c.Wait)
	case c.HurryWait < 0 || c.HurryWait > c.Wait && c.Wait > 0:
		return fmt.Errorf("kafkalog: hurried batch wait %s outside 0-%s (the batch wait)", c.HurryWait, c.Wait)
	case c.HurryFor < 0 || c.HurryFor > time.Minute:
		return fmt.Errorf("kafkalog: hurry window %s outside 0-1m", c.HurryFor)
	case c.FetchMin < 0:
		return fmt.Errorf("kafkalog: fetch min %d is negative", c.FetchMin)
	case c.FetchWait < 0 || c.FetchWait > time.Minute:
		return fmt.Errorf("kafkalog: fetch wait %s outside 0-1m", c.FetchWait)
	}
	return nil
}

// BatchConsumer reads a topic in a consumer group and hands records to a
// handler in batches across all its partitions. Offsets are marked only
// after the handler succeeded. A handler that returns before its batch is
// durable (the projector's pipeline returns once the batch is sent) makes
// the group's offsets run ahead of what it applied: that is safe only with
// Resume, which starts every session where the handler's store stands.
type BatchConsumer struct {
	cfg    BatchConfig
	group  sarama.ConsumerGroup
	handle BatchHandler
	log    *slog.Logger
	in     chan item
	hurry  chan struct{}

	// cur is the session whose records are applied; records of an earlier
	// one are dropped (its partitions are sought again by the next).
	cur atomic.Pointer[session]
	mu  sync.Mutex
	// endSession ends the current Consume call (a rewind).
	endSession context.CancelFunc
}

// session is one consumer-group generation of this member.
type session struct {
	sarama.ConsumerGroupSession
	seek map[int32]int64 // where Setup started each partition
}

type item struct {
	msg  *sarama.ConsumerMessage
	hole int64
	sess *session
}

// NewBatchConsumer joins the group (lazily, on Run).
func NewBatchConsumer(cfg BatchConfig, handle BatchHandler, log *slog.Logger) (*BatchConsumer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sc, err := cfg.Kafka.Sarama()
	if err != nil {
		return nil, err
	}
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Interval = 200 * time.Millisecond
	sc.Consumer.Fetch.Default = 4 << 20
	sc.Consumer.MaxWaitTime = 20 * time.Millisecond
	if cfg.FetchWait > 0 {
		sc.Consumer.MaxWaitTime = cfg.FetchWait
	}
	if cfg.FetchMin > 0 {
		sc.Consumer.Fetch.Min = cfg.FetchMin
	}
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
	sc.Consumer.Group.Session.Timeout = GroupSession
	sc.Consumer.Group.Heartbeat.Interval = GroupHeartbeat
	sc.Consumer.Return.Errors = false
	group, err := sarama.NewConsumerGroup(cfg.Kafka.Brokers, cfg.Group, sc)
	if err != nil {
		return nil, fmt.Errorf("consumer group %s: %w", cfg.Group, err)
	}
	return &BatchConsumer{cfg: cfg, group: group, handle: handle, log: log, in: make(chan item, cfg.Size),
		hurry: make(chan struct{}, 1)}, nil
}

// Hurry flushes the batch in hand now and, for HurryFor, each next batch
// HurryWait after its first record: a reader waits for the store to catch
// up with the log. Requests that come while one is pending are one.
func (c *BatchConsumer) Hurry() {
	select {
	case c.hurry <- struct{}{}:
	default:
	}
}

// Waiting is how many records are read and not yet in a batch.
func (c *BatchConsumer) Waiting() int { return len(c.in) }

// Run consumes until ctx ends.
func (c *BatchConsumer) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() { defer close(done); c.batchLoop(ctx) }()
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		c.mu.Lock()
		c.endSession = cancel
		c.mu.Unlock()
		err := c.group.Consume(sctx, []string{c.cfg.Kafka.Topic}, groupHandler{c})
		cancel()
		if err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				break
			}
			c.log.Warn("consumer group session ended", "group", c.cfg.Group, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	<-done
	return c.group.Close()
}

type groupHandler struct{ c *BatchConsumer }

// Setup starts every claimed partition where Resume says, moving the
// group's offset back or forth to it.
func (h groupHandler) Setup(ss sarama.ConsumerGroupSession) error {
	s := &session{ConsumerGroupSession: ss, seek: map[int32]int64{}}
	if h.c.cfg.Resume != nil {
		parts := ss.Claims()[h.c.cfg.Kafka.Topic]
		next, err := h.c.resume(ss.Context(), parts)
		if err != nil {
			return err
		}
		for _, p := range parts {
			off := next[p]
			ss.ResetOffset(h.c.cfg.Kafka.Topic, p, off, "")
			ss.MarkOffset(h.c.cfg.Kafka.Topic, p, off, "")
			s.seek[p] = off
		}
	}
	h.c.cur.Store(s)
	return nil
}

func (groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// resume asks Resume until it answers, backing off: a database outage holds
// the session here (Sarama heartbeats meanwhile) and loses nothing.
func (c *BatchConsumer) resume(ctx context.Context, parts []int32) (map[int32]int64, error) {
	backoff := 50 * time.Millisecond
	for {
		next, err := c.cfg.Resume(ctx, parts)
		if err == nil {
			return next, nil
		}
		c.log.Warn("stored offsets unreadable; retrying", "group", c.cfg.Group, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (h groupHandler) ConsumeClaim(ss sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	s := h.c.cur.Load()
	if s == nil || s.ConsumerGroupSession != ss {
		return nil // rewound: this session is ending
	}
	// The first record proves the log empty from where the claim began.
	from := claim.InitialOffset()
	if seek, ok := s.seek[claim.Partition()]; ok && from < 0 {
		from = seek // the seek was out of range, so Sarama began at the oldest
	}
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			var hole int64
			if from >= 0 && from < msg.Offset {
				hole = msg.Offset - from
				h.c.log.Warn("the log no longer holds records this group never consumed (retention)",
					"group", h.c.cfg.Group, "partition", msg.Partition, "from", from, "to", msg.Offset)
			}
			from = -1
			select {
			case h.c.in <- item{msg: msg, hole: hole, sess: s}:
			case <-ss.Context().Done():
				return nil
			}
		case <-ss.Context().Done():
			return nil
		}
	}
}

func (c *BatchConsumer) batchLoop(ctx context.Context) {
	batch := make([]item, 0, c.cfg.Size)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var hurryUntil time.Time
	// flush reports whether to go on. A shutdown that began during a flush
	// ends the loop at once: had that flush failed, applying a later batch
	// in the shutdown flush below would skip its records.
	flush := func() bool {
		if len(batch) > 0 {
			c.flush(ctx, batch)
			batch = batch[:0]
		}
		return ctx.Err() == nil
	}
	for {
		select {
		case <-ctx.Done():
			// Apply what is in hand before handing the partitions over; the
			// next owner skips it by the stored offsets.
			if len(batch) > 0 {
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				c.flush(fctx, batch)
				cancel()
			}
			return
		case <-c.hurry:
			hurryUntil = time.Now().Add(c.cfg.HurryFor)
			timer.Stop()
			batch = c.drain(batch)
			if !flush() {
				return
			}
		case it := <-c.in:
			if len(batch) == 0 {
				wait := c.cfg.Wait
				if time.Now().Before(hurryUntil) {
					wait = c.cfg.HurryWait
				}
				timer.Reset(wait)
			}
			batch = append(batch, it)
			if len(batch) >= c.cfg.Size {
				timer.Stop()
				if !flush() {
					return
				}
			}
		case <-timer.C:
			if !flush() {
				return
			}
		}
	}
}

// drain adds to batch the records already read, up to Size.
func (c *BatchConsumer) drain(batch []item) []item {
	for len(batch) < c.cfg.Size {
		select {
		case it := <-c.in:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// flush retries the batch until it is applied, its session is replaced, or
// ctx ends: a database outage stalls the consumer here and loses nothing.
func (c *BatchConsumer) flush(ctx context.Context, batch []item) {
	batch = c.current(batch)
	if len(batch) == 0 {
		return
	}
	recs := make([]Consumed, len(batch))
	for i, it := range batch {
		recs[i] = Consumed{Partition: it.msg.Partition, Offset: it.msg.Offset, Hole: it.hole, Value: it.msg.Value}
	}
	backoff := 50 * time.Millisecond
	for {
		start := time.Now()
		err := c.handle(ctx, recs)
		if err == nil {
			if c.cfg.Observe != nil {
				c.cfg.Observe(len(recs), time.Since(start))
			}
			break
		}
		if errors.Is(err, ErrRewind) {
			c.log.Error("batch does not continue the stored offsets; seeking again", "group", c.cfg.Group, "err", err)
			c.Rewind()
			return
		}
		c.log.Warn("batch failed; retrying", "group", c.cfg.Group, "size", len(recs), "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if batch[0].sess != c.cur.Load() {
			return // a new session reads these partitions again
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	for _, it := range batch {
		it.sess.MarkMessage(it.msg, "")
	}
}

// current drops, in place, the items of ended sessions: a batch then holds
// one session's items.
func (c *BatchConsumer) current(batch []item) []item {
	cur := c.cur.Load()
	return slices.DeleteFunc(batch, func(it item) bool { return it.sess != cur })
}

// Rewind ends the current session; the next one's Setup seeks again
// (Resume), and the items of this one are dropped. A handler that applies
// in the background calls it when a batch turns out not to continue its
// store's offsets.
func (c *BatchConsumer) Rewind() {
	c.cur.Store(nil)
	c.mu.Lock()
	if c.endSession != nil {
		c.endSession()
	}
	c.mu.Unlock()
}
