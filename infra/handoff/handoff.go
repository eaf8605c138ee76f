// Package handoff passes the records a process appended to the log straight
// to the fan-out, over Redis sharded pub/sub (one channel per log
// partition), so that live delivery does not wait for, nor pay for, one
// Kafka fetch per message.
//
// The log stays the truth: a record is handed off only after Kafka acked it
// at its offset, and the fan-out releases a partition's records strictly in
// offset order (kafkalog's sequencer), filling whatever the hand-off lacks
// (a producer that died between the ack and the hand-off, a message the
// channel dropped, a record published before the fan-out subscribed to its
// partition, a record another tool appended) from its own, infrequent reads
// of the log. A lost hand-off costs latency, never an event; so a channel,
// which keeps nothing, is enough. Until session 10 each partition had a
// stream, which the fan-out read with a blocking XREAD per batch: 50 µs of
// Redis a read, against a publish's 2-4 (docs/benchmarks.md, "Session 10").
//
// Every channel shares the hash tag {handoff}, so a fan-out subscribes to
// all its partitions on one connection, on a Redis Cluster too; the
// hand-off's load lands on one primary (docs/scaling.md).
package handoff

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/infra/redisstore"
)

// Config of the hand-off.
type Config struct {
	Prefix string // the Redis key prefix (CHAT_REDIS_PREFIX)
	// Block is how long a read waits for a record. Default 1 s.
	Block time.Duration
}

func (c *Config) setDefaults() {
	if c.Block == 0 {
		c.Block = time.Second
	}
}

// Validate reports a config the hand-off cannot work with.
func (c Config) Validate() error {
	switch {
	case c.Prefix == "":
		return errors.New("handoff: a key prefix is required")
	case c.Block < time.Millisecond:
		return fmt.Errorf("handoff: Block %s below 1ms", c.Block)
	}
	return nil
}

// Channel is partition p's channel.
func Channel(prefix string, p int32) string {
	return prefix + ":{handoff}:" + strconv.Itoa(int(p))
}

// Encode is the entry of a record: its offset as a uvarint, then its value.
func Encode(offset int64, value []byte) []byte {
	b := binary.AppendUvarint(make([]byte, 0, len(value)+binary.MaxVarintLen64), uint64(offset))
	return append(b, value...)
}

// Decode reads an entry written by Encode.
func Decode(b []byte) (offset int64, value []byte, err error) {
	o, n := binary.Uvarint(b)
	if n <= 0 || o > 1<<62 {
		return 0, nil, errors.New("handoff: bad offset")
	}
	return int64(o), b[n:], nil
}

// Writer hands records off with the process's write-behind pipeline:
// whatever was acked while the previous pipeline was in flight goes out
// together in the next.
type Writer struct {
	cfg Config
	wb  *redisstore.WriteBehind
}

// NewWriter builds a writer on wb.
func NewWriter(wb *redisstore.WriteBehind, cfg Config) (*Writer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Writer{cfg: cfg, wb: wb}, nil
}

// Offer queues acked records without waiting; one that does not fit, or
// whose pipeline fails, is counted and left to the fan-out's reads of the
// log.
func (w *Writer) Offer(recs []kafkalog.Consumed) {
	for _, r := range recs {
		ch, msg := Channel(w.cfg.Prefix, r.Partition), Encode(r.Offset, r.Value)
		ok := w.wb.Add(func(p redis.Pipeliner) { p.SPublish(context.Background(), ch, msg) }, written)
		if !ok {
			metrics.Handoff.WithLabelValues("dropped").Inc()
		}
	}
}

func written(err error) {
	if err != nil {
		metrics.Handoff.WithLabelValues("failed").Inc()
		return
	}
	metrics.Handoff.WithLabelValues("written").Inc()
}

// Reader receives the records handed off for the partitions a fan-out
// owns. Not safe for concurrent use.
type Reader struct {
	cfg        Config
	rdb        redis.UniversalClient
	ps         *redis.PubSub
	msgs       <-chan *redis.Message
	subscribed []int32
}

// NewReader builds a reader.
func NewReader(rdb redis.UniversalClient, cfg Config) (*Reader, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Reader{cfg: cfg, rdb: rdb}, nil
}

// readBatch bounds the records one Read returns.
const readBatch = 2048

// channelSize is how many messages go-redis holds for the reader. A full
// buffer for longer than the send timeout drops messages: the log has them.
const channelSize = 4096

// Read returns the records handed off for partitions since the last read,
// waiting up to Block for one. A partition set that differs from the last
// read's is subscribed anew: records published before that are the log's
// to bring.
func (r *Reader) Read(ctx context.Context, partitions []int32) ([]kafkalog.Consumed, error) {
	if r.ps == nil || !slices.Equal(partitions, r.subscribed) {
		if err := r.subscribe(ctx, partitions); err != nil {
			return nil, err
		}
	}
	t := time.NewTimer(r.cfg.Block)
	defer t.Stop()
	var out []kafkalog.Consumed
	select {
	case m, ok := <-r.msgs:
		if !ok {
			r.Close()
			return nil, errors.New("handoff: subscription closed")
		}
		out = r.add(out, m)
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		// The fan-out stops, or its partitions changed (the next read
		// subscribes anew either way): the subscription ends here, on the
		// reader's own goroutine.
		r.Close()
		return nil, ctx.Err()
	}
	for len(out) < readBatch {
		select {
		case m, ok := <-r.msgs:
			if !ok {
				return out, nil // the next read subscribes again
			}
			out = r.add(out, m)
		default:
			return out, nil
		}
	}
	return out, nil
}

func (r *Reader) subscribe(ctx context.Context, partitions []int32) error {
	r.Close()
	chs := make([]string, len(partitions))
	for i, p := range partitions {
		chs[i] = Channel(r.cfg.Prefix, p)
	}
	ps := r.rdb.SSubscribe(ctx, chs...)
	for range chs { // one confirmation per channel
		if _, err := ps.Receive(ctx); err != nil {
			_ = ps.Close()
			return fmt.Errorf("handoff subscribe: %w", err)
		}
	}
	r.ps, r.subscribed = ps, slices.Clone(partitions)
	r.msgs = ps.Channel(redis.WithChannelSize(channelSize))
	return nil
}

// add decodes a message onto out.
func (r *Reader) add(out []kafkalog.Consumed, m *redis.Message) []kafkalog.Consumed {
	p, err := partitionOf(m.Channel)
	if err != nil {
		metrics.Handoff.WithLabelValues("unreadable").Inc()
		return out
	}
	off, v, err := Decode([]byte(m.Payload))
	if err != nil {
		metrics.Handoff.WithLabelValues("unreadable").Inc()
		return out // the log has it
	}
	return append(out, kafkalog.Consumed{Partition: p, Offset: off, Value: v})
}

func partitionOf(channel string) (int32, error) {
	i := strings.LastIndexByte(channel, ':')
	p, err := strconv.ParseInt(channel[i+1:], 10, 32)
	if err != nil || p < 0 {
		return 0, fmt.Errorf("handoff: channel %q names no partition", channel)
	}
	return int32(p), nil
}

// Close ends the subscription; the next Read subscribes again.
func (r *Reader) Close() {
	if r.ps != nil {
		_ = r.ps.Close()
		r.ps, r.msgs, r.subscribed = nil, nil, nil
	}
}
