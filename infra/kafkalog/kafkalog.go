// Package kafkalog is the Kafka adapter: the event log that commands append
// to (with acks=all from an idempotent producer), topic administration and
// the high-water marks readers wait on.
package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/metrics"
)

// Config of the Kafka adapter.
type Config struct {
	Brokers           []string
	Topic             string
	Partitions        int32
	ReplicationFactor int16
	MinInsyncReplicas int
	Linger            time.Duration // producer flush frequency; 0 sends at once
	Compression       string        // producer batch codec: none (default), gzip, snappy, lz4, zstd
	ClientID          string
}

// SaramaConfig returns the base client config every Parley client uses.
func SaramaConfig(clientID string) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V4_0_0_0
	c.ClientID = "parley"
	if clientID != "" {
		c.ClientID = clientID
	}
	c.Metadata.RefreshFrequency = 30 * time.Second
	c.Net.DialTimeout = 5 * time.Second
	return c
}

// ProducerConfig is acks=all, idempotent and one request in flight, so a
// retried batch can neither duplicate nor reorder events.
func ProducerConfig(cfg Config) (*sarama.Config, error) {
	c := SaramaConfig(cfg.ClientID)
	if cfg.Compression != "" {
		if err := c.Producer.Compression.UnmarshalText([]byte(cfg.Compression)); err != nil {
			return nil, fmt.Errorf("kafka compression: %w", err)
		}
	}
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Retry.Max = 10
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Producer.Timeout = 5 * time.Second
	c.Producer.Partitioner = sarama.NewHashPartitioner
	c.Producer.Flush.Frequency = cfg.Linger
	c.Producer.Flush.MaxMessages = 500
	return c, nil
}

// Log appends events and answers where the log ends.
type Log struct {
	cfg      Config
	client   sarama.Client
	producer sarama.SyncProducer
	part     sarama.Partitioner
}

// Open connects the producer and a metadata client.
func Open(cfg Config) (*Log, error) {
	sc, err := ProducerConfig(cfg)
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka client %v: %w", cfg.Brokers, err)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return &Log{cfg: cfg, client: client, producer: producer, part: sarama.NewHashPartitioner(cfg.Topic)}, nil
}

// Close stops the producer and client.
func (l *Log) Close() error {
	return errors.Join(l.producer.Close(), l.client.Close())
}

// Append writes e keyed by its conversation and returns its seq (its offset
// in its partition, plus one) once every in-sync replica has it.
func (l *Log) Append(ctx context.Context, e domain.Event) (int64, error) {
	b, err := encodeEvent(e)
	if err != nil {
		return 0, err
	}
	msg := &sarama.ProducerMessage{
		Topic: l.cfg.Topic,
		Key:   sarama.StringEncoder(e.ConversationID),
		Value: sarama.ByteEncoder(b),
		Headers: []sarama.RecordHeader{
			{Key: []byte("_watermill_message_uuid"), Value: []byte(e.ID)},
			{Key: []byte("type"), Value: []byte(e.Type)},
		},
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	start := time.Now()
	_, offset, err := l.producer.SendMessage(msg)
	if err != nil {
		metrics.ProduceErrors.Inc()
		return 0, fmt.Errorf("%w: kafka produce: %v", domain.ErrUnavailable, err)
	}
	metrics.ProduceLatency.Observe(time.Since(start).Seconds())
	return offset + 1, nil // seq = offset+1, see projections.Record.Seq
}

// Partition is the partition that holds a conversation.
func (l *Log) Partition(conversationID string) (int32, error) {
	parts, err := l.client.Partitions(l.cfg.Topic)
	if err != nil {
		return 0, fmt.Errorf("%w: kafka partitions: %v", domain.ErrUnavailable, err)
	}
	msg := &sarama.ProducerMessage{Topic: l.cfg.Topic, Key: sarama.StringEncoder(conversationID)}
	return l.part.Partition(msg, int32(len(parts)))
}

// HighWaterMark is the offset the next event of partition p will get: every
// event acked before this call has a smaller offset.
func (l *Log) HighWaterMark(_ context.Context, p int32) (int64, error) {
	off, err := l.client.GetOffset(l.cfg.Topic, p, sarama.OffsetNewest)
	if err != nil {
		return 0, fmt.Errorf("%w: kafka high-water mark: %v", domain.ErrUnavailable, err)
	}
	return off, nil
}

// HighWaterMarks returns the high-water mark of every partition.
func (l *Log) HighWaterMarks(ctx context.Context) (map[int32]int64, error) {
	parts, err := l.client.Partitions(l.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("%w: kafka partitions: %v", domain.ErrUnavailable, err)
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		hwm, err := l.HighWaterMark(ctx, p)
		if err != nil {
			return nil, err
		}
		out[p] = hwm
	}
	return out, nil
}

// Ping asks the cluster for metadata. Sarama takes no context, so the
// refresh runs aside and the caller's deadline (a readiness probe's) holds
// even while brokers do not answer; a late refresh ends on Sarama's timeouts.
func (l *Log) Ping(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- l.client.RefreshMetadata(l.cfg.Topic) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("kafka metadata: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafka metadata: %w", ctx.Err())
	}
}
