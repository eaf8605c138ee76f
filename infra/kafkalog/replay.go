package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// PartitionReader reads ranges of a topic's partitions directly, without a
// consumer group (no offsets are committed anywhere): what a replay needs to
// read the log from offset 0 up to the high-water marks it took.
type PartitionReader struct {
	client   sarama.Client
	consumer sarama.Consumer
	topic    string
}

// OpenPartitionReader connects to cfg's brokers for cfg.Topic.
func OpenPartitionReader(cfg Config) (*PartitionReader, error) {
	sc, err := cfg.Sarama()
	if err != nil {
		return nil, err
	}
	return openPartitionReader(cfg.Brokers, cfg.Topic, sc)
}

// NewPartitionReader connects to brokers for topic, without SASL or TLS.
//
// Deprecated: it cannot reach a broker that requires authentication; use
// OpenPartitionReader. Kept for benchmarks against the local PLAINTEXT
// broker; TestClientsCarrySecurity keeps it out of non-test code.
func NewPartitionReader(brokers []string, topic, clientID string) (*PartitionReader, error) {
	return openPartitionReader(brokers, topic, baseSarama(clientID))
}

func openPartitionReader(brokers []string, topic string, sc *sarama.Config) (*PartitionReader, error) {
	sc.Consumer.Return.Errors = true
	sc.Consumer.Fetch.Default = 8 << 20
	sc.Consumer.MaxWaitTime = 50 * time.Millisecond
	sc.ChannelBufferSize = 4096
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka client %v: %w", brokers, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	return &PartitionReader{client: client, consumer: consumer, topic: topic}, nil
}

// Close releases the consumer and its client.
func (r *PartitionReader) Close() error {
	return errors.Join(r.consumer.Close(), r.client.Close())
}

// HighWaterMarks returns the next offset of every partition of the topic.
func (r *PartitionReader) HighWaterMarks(context.Context) (map[int32]int64, error) {
	if err := r.client.RefreshMetadata(r.topic); err != nil {
		return nil, fmt.Errorf("kafka metadata %s: %w", r.topic, err)
	}
	parts, err := r.client.Partitions(r.topic)
	if err != nil {
		return nil, fmt.Errorf("kafka partitions %s: %w", r.topic, err)
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		off, err := r.client.GetOffset(r.topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, fmt.Errorf("kafka high-water mark %s/%d: %w", r.topic, p, err)
		}
		out[p] = off
	}
	return out, nil
}

// ReadRange reads every partition p in [from[p], to[p]) and hands the
// records to handle in batches of at most size, in offset order within each
// partition; partitions are read concurrently and mixed within a batch.
// handle is called from one goroutine at a time; an error from it stops the
// read and is returned.
func (r *PartitionReader) ReadRange(ctx context.Context, from, to map[int32]int64, size int, handle func([]Consumed) error) error {
	size = max(size, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan Consumed, size)
	errc := make(chan error, len(to))
	var wg sync.WaitGroup
	for p, end := range to {
		start := from[p]
		if start >= end {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.readPartition(ctx, p, start, end, in); err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	go func() { wg.Wait(); close(in) }()

	batch := make([]Consumed, 0, size)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := handle(batch)
		batch = make([]Consumed, 0, size)
		return err
	}
	for c := range in {
		batch = append(batch, c)
		// A full batch, or whatever is there when the partitions pause.
		if len(batch) >= size || len(in) == 0 && len(batch) >= size/4 {
			if err := flush(); err != nil {
				cancel()
				for range in { // drain, so the readers end
				}
				return err
			}
		}
	}
	select {
	case err := <-errc:
		return err
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return flush()
}

// readPartition sends the records of p in [start, end) to out.
func (r *PartitionReader) readPartition(ctx context.Context, p int32, start, end int64, out chan<- Consumed) error {
	first := start
	if start == 0 {
		first = sarama.OffsetOldest // the log may have been trimmed below 0 by an operator
	}
	pc, err := r.consumer.ConsumePartition(r.topic, p, first)
	if err != nil {
		return fmt.Errorf("kafka consume %s/%d from %d: %w", r.topic, p, start, err)
	}
	// Closed before returning, not asynchronously: the next read of p on
	// this consumer (the replay's catch-up) is refused while the old one is
	// still registered ("That topic/partition is already being consumed",
	// seen in CI).
	defer func() { _ = pc.Close() }()
	from := start // the first record proves the log empty from start on
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-pc.Errors():
			if err != nil {
				return fmt.Errorf("kafka read %s/%d: %w", r.topic, p, err)
			}
		case m, ok := <-pc.Messages():
			if !ok {
				return fmt.Errorf("kafka read %s/%d: partition consumer closed", r.topic, p)
			}
			if m.Offset >= end {
				return nil
			}
			c := Consumed{Partition: p, Offset: m.Offset, Hole: max(m.Offset-from, 0), Value: m.Value}
			from = m.Offset + 1
			select {
			case out <- c:
			case <-ctx.Done():
				return ctx.Err()
			}
			if m.Offset+1 >= end {
				return nil
			}
		}
	}
}
