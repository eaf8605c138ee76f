package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
)

// Consumed is one record read from the log.
type Consumed struct {
	Partition int32
	Offset    int64
	Value     []byte
}

// BatchHandler applies a batch; it must be idempotent, because a batch is
// retried until it succeeds and may be redelivered after a crash.
type BatchHandler func(ctx context.Context, batch []Consumed) error

// BatchConfig of a batching consumer group.
type BatchConfig struct {
	Brokers  []string
	Topic    string
	Group    string
	ClientID string
	Size     int           // flush when this many records are waiting
	Wait     time.Duration // or when the oldest has waited this long
	// Observe, if set, is told each flushed batch's size and duration.
	Observe func(size int, took time.Duration)
}

// BatchConsumer reads a topic in a consumer group and hands records to a
// handler in batches across all its partitions. Offsets are marked only
// after the handler succeeded, so nothing is committed before it is applied.
type BatchConsumer struct {
	cfg    BatchConfig
	group  sarama.ConsumerGroup
	handle BatchHandler
	log    *slog.Logger
	in     chan item
}

type item struct {
	msg  *sarama.ConsumerMessage
	sess sarama.ConsumerGroupSession
}

// NewBatchConsumer joins the group (lazily, on Run).
func NewBatchConsumer(cfg BatchConfig, handle BatchHandler, log *slog.Logger) (*BatchConsumer, error) {
	sc := SaramaConfig(cfg.ClientID)
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Interval = 200 * time.Millisecond
	sc.Consumer.Fetch.Default = 4 << 20
	sc.Consumer.MaxWaitTime = 20 * time.Millisecond
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
	sc.Consumer.Return.Errors = false
	group, err := sarama.NewConsumerGroup(cfg.Brokers, cfg.Group, sc)
	if err != nil {
		return nil, fmt.Errorf("consumer group %s: %w", cfg.Group, err)
	}
	if cfg.Size < 1 {
		cfg.Size = 1000
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 5 * time.Millisecond
	}
	return &BatchConsumer{cfg: cfg, group: group, handle: handle, log: log, in: make(chan item, cfg.Size)}, nil
}

// Run consumes until ctx ends.
func (c *BatchConsumer) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() { defer close(done); c.batchLoop(ctx) }()
	for ctx.Err() == nil {
		if err := c.group.Consume(ctx, []string{c.cfg.Topic}, groupHandler{c}); err != nil {
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

func (groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			select {
			case h.c.in <- item{msg: msg, sess: sess}:
			case <-sess.Context().Done():
				return nil
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

func (c *BatchConsumer) batchLoop(ctx context.Context) {
	batch := make([]item, 0, c.cfg.Size)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		if len(batch) > 0 {
			c.flush(ctx, batch)
			batch = batch[:0]
		}
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
		case it := <-c.in:
			if len(batch) == 0 {
				timer.Reset(c.cfg.Wait)
			}
			batch = append(batch, it)
			if len(batch) >= c.cfg.Size {
				timer.Stop()
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// flush retries the batch until it is applied or ctx ends; a database
// outage stalls the projector here and loses nothing.
func (c *BatchConsumer) flush(ctx context.Context, batch []item) {
	recs := make([]Consumed, len(batch))
	for i, it := range batch {
		recs[i] = Consumed{Partition: it.msg.Partition, Offset: it.msg.Offset, Value: it.msg.Value}
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
		c.log.Warn("batch failed; retrying", "group", c.cfg.Group, "size", len(recs), "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	for _, it := range batch {
		it.sess.MarkMessage(it.msg, "")
	}
}
