// Package kafkalog is the Kafka adapter: the event log that commands append
// to (with acks=all from an idempotent producer), topic administration and
// the high-water marks readers wait on.
package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/metrics"
)

// Config of the Kafka adapter. Every Kafka client Parley makes is built
// from one (app.KafkaConfig derives it from the process's settings), so the
// brokers never travel without Security.
type Config struct {
	Brokers           []string
	Topic             string
	Partitions        int32
	ReplicationFactor int16
	MinInsyncReplicas int
	Linger            time.Duration // how long a produce request waits for more sends after its first; 0 sends at once
	ExpectWait        time.Duration // longest a produce request waits for sends announced by Expect; 0: none are announced
	Compression       string        // producer batch codec: none (default), gzip, snappy, lz4, zstd
	ClientID          string
	Security          Security // SASL and TLS of every client
}

// validateConsumer reports what a consumer cannot do without.
func (c Config) validateConsumer() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("kafkalog: no brokers")
	case c.Topic == "":
		return errors.New("kafkalog: no topic")
	}
	return nil
}

// Validate reports a config the producer cannot work with.
func (c Config) Validate() error {
	if err := c.validateConsumer(); err != nil {
		return err
	}
	if c.Linger < 0 || c.Linger > time.Second {
		return fmt.Errorf("kafkalog: linger %s outside 0-1s", c.Linger)
	}
	if c.ExpectWait < 0 || c.ExpectWait > time.Minute {
		return fmt.Errorf("kafkalog: expect wait %s outside 0-1m", c.ExpectWait)
	}
	_, err := franzCodec(c.Compression)
	return err
}

// WithClientID returns c with another client id (one per role, in logs and
// broker metrics).
func (c Config) WithClientID(id string) Config {
	c.ClientID = id
	return c
}

// Sarama returns the base config of a Sarama client: Kafka 4 protocol,
// c's client id, and c's security.
func (c Config) Sarama() (*sarama.Config, error) {
	sc := baseSarama(c.ClientID)
	if err := c.Security.applySarama(sc); err != nil {
		return nil, err
	}
	return sc, nil
}

// NewClient connects a Sarama client to c's brokers.
func NewClient(c Config) (sarama.Client, error) {
	sc, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(c.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka client %v: %w", c.Brokers, err)
	}
	return client, nil
}

// NewAdmin connects a Sarama cluster admin to c's brokers.
func NewAdmin(c Config) (sarama.ClusterAdmin, error) {
	sc, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	admin, err := sarama.NewClusterAdmin(c.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka admin %v: %w", c.Brokers, err)
	}
	return admin, nil
}

// SaramaConfig returns a base Sarama config without SASL or TLS.
//
// Deprecated: it cannot reach a broker that requires authentication; use
// Config.Sarama, NewClient or NewAdmin. Kept for benchmarks against the
// local PLAINTEXT broker; TestClientsCarrySecurity keeps it out of
// non-test code.
func SaramaConfig(clientID string) *sarama.Config { return baseSarama(clientID) }

// franzOpts are the options every franz-go client starts from: brokers,
// client id, timeouts and c's security.
func (c Config) franzOpts() ([]kgo.Opt, error) {
	sec, err := c.Security.franzOpts()
	if err != nil {
		return nil, err
	}
	id := c.ClientID
	if id == "" {
		id = "parley"
	}
	return append([]kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(id),
		kgo.MetadataMaxAge(30 * time.Second),
		kgo.DialTimeout(5 * time.Second),
	}, sec...), nil
}

// producerOpts configure the command path's franz-go producer: idempotent
// with acks=all (franz-go's defaults, set explicitly), so a retried batch
// can neither duplicate nor reorder events. The send loop batches (no
// linger by default, so a lone send goes out at once while sends that
// arrive during a request in flight, or are announced by Expect, gather
// into the next one: batching in proportion to load, docs/architecture.md).
// Sarama's SyncProducer sent about one record per request here and cost
// the broker several times more CPU per message (docs/benchmarks.md).
func producerOpts(cfg Config) ([]kgo.Opt, error) {
	codec, err := franzCodec(cfg.Compression)
	if err != nil {
		return nil, err
	}
	opts, err := cfg.franzOpts()
	if err != nil {
		return nil, err
	}
	return append(opts,
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// ProduceSync does not linger (sendLoop gathers instead: Linger,
		// Expect); zero says so.
		kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(codec),
		// The partition is Sarama's hash of the key (Log.Partition), so
		// every reader that computes it agrees with the producer.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// A send fails in bounded time while Kafka is away; the client
		// retries it (docs/reliability.md: a failed send may be written).
		kgo.RecordDeliveryTimeout(10*time.Second),
		kgo.ProduceRequestTimeout(5*time.Second),
	), nil
}

// franzCodec maps CHAT_KAFKA_COMPRESSION to franz-go's codec.
func franzCodec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("kafka compression: unknown codec %q", name)
}

// Log appends events and answers where the log ends.
type Log struct {
	cfg      Config
	client   sarama.Client // metadata, high-water marks
	producer *kgo.Client
	queue    chan *pendingSend
	stop     chan struct{}
	stopped  chan struct{}
	handoff  atomic.Pointer[func([]Consumed)]
	expected expected
}

// SetHandoff has every batch of records the log acked passed to f, with
// their offsets, right after the ack (infra/handoff). f must not block.
func (l *Log) SetHandoff(f func([]Consumed)) { l.handoff.Store(&f) }

type pendingSend struct {
	rec  *kgo.Record
	done chan error
	// state: queued until the send loop takes it or its caller gives up
	// waiting, whichever comes first (one compare-and-swap decides).
	state atomic.Int32
	// announced is its announcement (Expect), released when the loop
	// takes it; nil if it had none.
	announced *expectation
}

const (
	sendQueued int32 = iota
	sendTaken
	sendAbandoned
)

// Open connects the producer and a metadata client.
func Open(cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	opts, err := producerOpts(cfg)
	if err != nil {
		client.Close()
		return nil, err
	}
	producer, err := kgo.NewClient(opts...)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	l := &Log{cfg: cfg, client: client, producer: producer, queue: make(chan *pendingSend, 4096),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	l.expected.nudge = make(chan struct{}, 1)
	go l.sendLoop()
	return l, nil
}

// closeWait bounds how long Close lets a produce in flight finish.
const closeWait = 5 * time.Second

// Close stops the producer and client. A produce in flight gets closeWait
// to finish; past it (a broker that does not answer: an idempotent
// request once sent is never failed by the delivery timeout) closing the
// producer fails it, so a node's shutdown does not wait for Kafka.
func (l *Log) Close() error {
	close(l.stop)
	select {
	case <-l.stopped:
	case <-time.After(closeWait):
	}
	l.producer.Close()
	<-l.stopped
	return l.client.Close()
}

// maxProduceBatch bounds the records of one produce request.
const maxProduceBatch = 2000

// sendLoop produces one batch at a time: the sends that arrived while a
// request was in flight go out together in the next one, with those
// announced (Expect) and, if set, those within the linger (gather.go).
// franz-go alone keeps up to five idempotent requests in flight per broker
// and so sent about one record per request at 1 000 msg/s; the broker's
// CPU is per request (docs/benchmarks.md).
func (l *Log) sendLoop() {
	defer close(l.stopped)
	batch := make([]*pendingSend, 0, 64)
	recs := make([]*kgo.Record, 0, 64)
	take := func(s *pendingSend) {
		// Announced: gone into this request, or its caller gave up.
		s.announced.release()
		if s.state.CompareAndSwap(sendQueued, sendTaken) { // else its caller gave up: never sent
			batch, recs = append(batch, s), append(recs, s.rec)
		}
	}
	size := func() int { return len(batch) }
	for {
		select {
		case <-l.stop:
			for {
				select {
				case s := <-l.queue:
					s.announced.release()
					s.done <- errors.New("kafka producer closed")
				default:
					return
				}
			}
		case first := <-l.queue:
			batch, recs = batch[:0], recs[:0]
			take(first)
			start := time.Now()
			l.linger(start, take, size)
			l.awaitExpected(start, take, size)
		}
	gather:
		for len(batch) < maxProduceBatch {
			select {
			case s := <-l.queue:
				take(s)
			default:
				break gather
			}
		}
		if len(batch) == 0 {
			continue
		}
		res := l.producer.ProduceSync(context.Background(), recs...)
		settle(batch, res)
		metrics.ProduceBatch.Observe(float64(len(batch)))
		l.handOff(res)
	}
}

// settle tells each send of batch its outcome. ProduceSync lists the
// results in the order they completed, which across partitions is not the
// order of the records: a result is matched by its record.
func settle(batch []*pendingSend, res kgo.ProduceResults) {
	if len(batch) <= 16 {
		for _, s := range batch {
			s.done <- resultOf(res, s.rec)
		}
		return
	}
	byRec := make(map[*kgo.Record]error, len(res))
	for _, r := range res {
		byRec[r.Record] = r.Err
	}
	for _, s := range batch {
		err, ok := byRec[s.rec]
		if !ok {
			err = errNoResult
		}
		s.done <- err
	}
}

// errNoResult: franz-go returned no result for a record (it returns one
// for each; kept so that a caller never waits forever).
var errNoResult = errors.New("kafka produce: no result for the record")

func resultOf(res kgo.ProduceResults, rec *kgo.Record) error {
	for _, r := range res {
		if r.Record == rec {
			return r.Err
		}
	}
	return errNoResult
}

// handOff passes the acked records of a produce to the hand-off, if set.
func (l *Log) handOff(res kgo.ProduceResults) {
	f := l.handoff.Load()
	if f == nil {
		return
	}
	acked := make([]Consumed, 0, len(res))
	for _, r := range res {
		if r.Err == nil {
			acked = append(acked, Consumed{Partition: r.Record.Partition, Offset: r.Record.Offset, Value: r.Record.Value})
		}
	}
	(*f)(acked)
}

// Append writes e keyed by its conversation and returns its seq
// (domain.SeqOf its offset in its partition) once every in-sync replica has
// it.
func (l *Log) Append(ctx context.Context, e domain.Event) (int64, error) {
	b, err := encodeEvent(e)
	if err != nil {
		return 0, err
	}
	p, err := l.Partition(e.ConversationID)
	if err != nil {
		return 0, err
	}
	rec := &kgo.Record{Key: []byte(e.ConversationID), Value: b, Partition: p, Headers: eventHeaders(e)}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := l.produce(ctx, rec); err != nil {
		metrics.ProduceErrors.Inc()
		return 0, fmt.Errorf("%w: kafka produce: %v", domain.ErrUnavailable, err)
	}
	metrics.ProduceLatency.Observe(time.Since(start).Seconds())
	return domain.SeqOf(rec.Offset), nil
}

// produce hands rec to the send loop and waits for its outcome. Until the
// loop takes it, the wait ends with ctx (the record is then never sent: a
// Kafka outage holds the loop in a request, and the commands queued behind
// it get an answer in their time instead of hanging). Once taken, the
// outcome is waited for whatever ctx says: franz-go never fails an
// idempotent request it sent and got no answer for, since the broker may
// have written it, and answering then would have the client's retry log
// the event a second time (the chaos test's Kafka restart did).
func (l *Log) produce(ctx context.Context, rec *kgo.Record) error {
	s := &pendingSend{rec: rec, done: make(chan error, 1), announced: expectationOf(ctx)}
	select {
	case l.queue <- s:
	case <-l.stop:
		return errors.New("kafka producer closed")
	case <-ctx.Done():
		return fmt.Errorf("not sent, the producer's queue full: %w", ctx.Err())
	}
	select {
	case err := <-s.done:
		return err
	case <-l.stopped:
	case <-ctx.Done():
		if s.state.CompareAndSwap(sendQueued, sendAbandoned) {
			return fmt.Errorf("not sent, the producer busy: %w", ctx.Err())
		}
		// In a request: written or not, only the broker can say.
	}
	return l.outcome(s)
}

// outcome waits for the result of a send the loop has taken.
func (l *Log) outcome(s *pendingSend) error {
	select {
	case err := <-s.done:
		return err
	case <-l.stopped:
		select {
		case err := <-s.done:
			return err
		default:
			return errors.New("kafka producer closed")
		}
	}
}

// eventHeaders are the record headers of an event: its id (under
// Watermill's uuid key, which earlier versions wrote) and its type.
func eventHeaders(e domain.Event) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: "_watermill_message_uuid", Value: []byte(e.ID)},
		{Key: "type", Value: []byte(e.Type)},
	}
}

// Partition is the partition that holds a conversation.
func (l *Log) Partition(conversationID string) (int32, error) {
	parts, err := l.client.Partitions(l.cfg.Topic)
	if err != nil {
		return 0, fmt.Errorf("%w: kafka partitions: %v", domain.ErrUnavailable, err)
	}
	return PartitionOf(conversationID, int32(len(parts))), nil
}

// PartitionOf is the partition of a key among n: Sarama's hash partitioner
// (FNV-1a, sign dropped), which wrote every earlier record, computed with
// a hasher of its own per call. Sarama's partitioner shares one hasher and
// is not safe for concurrent use: called from concurrent sends it put a
// conversation's message in a wrong partition (docs/architecture.md).
func PartitionOf(key string, n int32) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	p := int32(h.Sum32()) % n
	if p < 0 {
		p = -p
	}
	return p
}

// HighWaterMark is the offset the next event of partition p will get: every
// event acked before this call has a smaller offset.
func (l *Log) HighWaterMark(ctx context.Context, p int32) (int64, error) {
	off, err := aside(ctx, func() (int64, error) { return l.client.GetOffset(l.cfg.Topic, p, sarama.OffsetNewest) })
	if err != nil {
		return 0, fmt.Errorf("%w: kafka high-water mark: %v", domain.ErrUnavailable, err)
	}
	return off, nil
}

// aside runs f, a Sarama call (which takes no context), in its own
// goroutine, so that the caller's deadline holds while brokers do not
// answer; a call left behind ends on Sarama's own timeouts.
func aside[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
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
	_, err := aside(ctx, func() (struct{}, error) { return struct{}{}, l.client.RefreshMetadata(l.cfg.Topic) })
	if err != nil {
		return fmt.Errorf("kafka metadata: %w", err)
	}
	return nil
}
