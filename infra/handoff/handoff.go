// Package handoff passes the records a process appended to the log straight
// to the fan-out, over Redis streams (one per log partition), so that live
// delivery does not wait for, nor pay for, one Kafka fetch per message.
//
// The log stays the truth: a record is handed off only after Kafka acked it
// at its offset, and the fan-out releases a partition's records strictly in
// offset order (kafkalog's sequencer), filling whatever the hand-off lacks
// (a producer that died between the ack and the hand-off, a trimmed
// stream, a record another tool appended) from its own, infrequent reads of
// the log. A lost hand-off costs latency, never an event.
//
// Every stream shares the hash tag {handoff}, so a fan-out reads all its
// partitions with one XREAD, on a Redis Cluster too; the hand-off's load
// lands on one primary (docs/scaling.md).
package handoff

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/infra/redisstore"
)

// Config of the hand-off.
type Config struct {
	Prefix string // the Redis key prefix (CHAT_REDIS_PREFIX)
	// MaxLen bounds each partition's stream (approximately); a fan-out that
	// falls further behind reads the rest from the log. Default 4096.
	MaxLen int64
	// Block is how long a read waits for a record. Default 1 s.
	Block time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxLen == 0 {
		c.MaxLen = 4096
	}
	if c.Block == 0 {
		c.Block = time.Second
	}
}

// Validate reports a config the hand-off cannot work with.
func (c Config) Validate() error {
	switch {
	case c.Prefix == "":
		return errors.New("handoff: a key prefix is required")
	case c.MaxLen < 16:
		return fmt.Errorf("handoff: MaxLen %d below 16", c.MaxLen)
	case c.Block < time.Millisecond:
		return fmt.Errorf("handoff: Block %s below 1ms", c.Block)
	}
	return nil
}

// Stream is the key of partition p's stream.
func Stream(prefix string, p int32) string {
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
		args := &redis.XAddArgs{Stream: Stream(w.cfg.Prefix, r.Partition), MaxLen: w.cfg.MaxLen, Approx: true,
			Values: []any{"r", Encode(r.Offset, r.Value)}}
		ok := w.wb.Add(func(p redis.Pipeliner) { p.XAdd(context.Background(), args) }, written)
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

// Reader reads the streams of the partitions a fan-out owns. Not safe for
// concurrent use.
type Reader struct {
	cfg  Config
	rdb  redis.UniversalClient
	last map[int32]string // stream id read up to, per partition
}

// NewReader builds a reader.
func NewReader(rdb redis.UniversalClient, cfg Config) (*Reader, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Reader{cfg: cfg, rdb: rdb, last: map[int32]string{}}, nil
}

const readBatch = 2048

// Read returns the records handed off for partitions since the last read,
// waiting up to Block for one. A partition read for the first time (just
// assigned) is read from its stream's oldest entry: the records since the
// group's committed offset are likely there (the sequencer drops older
// ones), so live delivery resumes without waiting for the log.
func (r *Reader) Read(ctx context.Context, partitions []int32) ([]kafkalog.Consumed, error) {
	keys := make([]string, len(partitions), 2*len(partitions))
	byKey := make(map[string]int32, len(partitions))
	for i, p := range partitions {
		keys[i] = Stream(r.cfg.Prefix, p)
		byKey[keys[i]] = p
	}
	for _, p := range partitions {
		id, ok := r.last[p]
		if !ok {
			id = "0-0"
		}
		keys = append(keys, id)
	}
	r.forgetOthers(byKey)
	res, err := r.rdb.XRead(ctx, &redis.XReadArgs{Streams: keys, Count: readBatch, Block: r.cfg.Block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("handoff read: %w", err)
	}
	var out []kafkalog.Consumed
	for _, xs := range res {
		p, ok := byKey[xs.Stream]
		if !ok {
			return nil, fmt.Errorf("handoff: unexpected stream %q", xs.Stream)
		}
		for _, m := range xs.Messages {
			r.last[p] = m.ID
			raw, _ := m.Values["r"].(string)
			off, v, err := Decode([]byte(raw))
			if err != nil {
				metrics.Handoff.WithLabelValues("unreadable").Inc()
				continue // the log has it
			}
			out = append(out, kafkalog.Consumed{Partition: p, Offset: off, Value: v})
		}
	}
	return out, nil
}

// forgetOthers drops the positions of partitions no longer read, so that
// a partition assigned again is read whole.
func (r *Reader) forgetOthers(read map[string]int32) {
	for p := range r.last {
		if _, ok := read[Stream(r.cfg.Prefix, p)]; !ok {
			delete(r.last, p)
		}
	}
}
