// Package handoff passes the records a process appended to the log straight
// to the fan-out, over Redis (a sharded pub/sub channel and a stream per log
// partition), so that live delivery does not wait for, nor pay for, one
// Kafka fetch per message.
//
// The log stays the truth: a record is handed off only after Kafka acked it
// at its offset, and the fan-out releases a partition's records strictly in
// offset order (kafkalog's sequencer), filling whatever the hand-off lacks
// (a producer that died between the ack and the hand-off, a trimmed
// stream, a record another tool appended) from its own, infrequent reads of
// the log. A lost hand-off costs latency, never an event.
//
// Each record is appended to its partition's stream and published on its
// partition's channel, in one pipeline. The fan-out takes live records from
// the channel, and reads the stream only for what a channel cannot give: the
// records handed off before it subscribed (a partition just assigned to it,
// a subscription that broke and came back). A blocking XREAD per batch cost
// Redis about 30 µs a message (the read, and the wake-up that made the XADD
// cost 12 instead of 5); a publish to one subscriber costs 4. A channel
// alone was tried and reverted: what it cannot give then came from the log
// in one burst at each fan-out start (docs/benchmarks.md, "Session 10").
//
// Every key shares the hash tag {handoff}, so a fan-out subscribes to, and
// reads, all its partitions on one connection, on a Redis Cluster too; the
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

// Channel is partition p's channel.
func Channel(prefix string, p int32) string { return Stream(prefix, p) + ":live" }

// RoutesChannel carries the route changes of gateway nodes (a user id per
// message; infra/fanoutbus). It shares the partitions' hash tag so that a
// fan-out receives it on the connection of its partitions' channels: Redis
// then delivers a change and the records published after it in that order,
// which is what lets a fan-out cache routes (Reader.WatchRoutes).
func RoutesChannel(prefix string) string { return prefix + ":{handoff}:routes" }

// RouteWatcher is told, in order with the records read, of the route
// changes published on RoutesChannel: Changed for one user's, Reset when
// some may have been missed (the subscription is new or came back, records
// came from a stream read, reads stalled).
type RouteWatcher interface {
	Changed(user string)
	Reset()
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
		entry := Encode(r.Offset, r.Value)
		// The stream first: a reader that subscribed after this publish
		// finds the record in the stream.
		ok := w.wb.Add(written,
			redisstore.Cmd{"xadd", Stream(w.cfg.Prefix, r.Partition), "maxlen", "~", w.cfg.MaxLen, "*", "r", entry},
			redisstore.Cmd{"spublish", Channel(w.cfg.Prefix, r.Partition), entry})
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
	msgs       <-chan any
	subscribed []int32
	// backlog holds the partitions whose stream is still to be read, with
	// the id read up to.
	backlog  map[int32]string
	routes   RouteWatcher // nil: route changes are not read
	routesCh string
	lastRead time.Time
}

// WatchRoutes makes the reader subscribe to RoutesChannel too and tell w
// of each change before it returns any record published after it.
func (r *Reader) WatchRoutes(w RouteWatcher) {
	r.Close()
	r.routes, r.routesCh = w, RoutesChannel(r.cfg.Prefix)
}

// routesStale is how long a pause between reads makes the reader distrust
// what it was told: go-redis drops messages from a channel buffer that
// stayed full for a minute.
const routesStale = 30 * time.Second

// NewReader builds a reader.
func NewReader(rdb redis.UniversalClient, cfg Config) (*Reader, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Reader{cfg: cfg, rdb: rdb, backlog: map[int32]string{}}, nil
}

// readBatch bounds the records one Read returns from the streams, all of
// them together: a stream holds MaxLen records of up to about 50 kB each
// (a body of control characters escapes to six times its size), and a
// catch-up reads every assigned partition's. The channel's buffer holds
// channelSize; a buffer full for a minute drops messages: the log has
// them.
const (
	readBatch   = 512
	channelSize = 4096
)

// Read returns the records handed off for partitions since the last read,
// waiting up to Block for one. A partition set that differs from the last
// read's is subscribed anew, and its streams are read whole first (the
// sequencer drops what was released before): they hold what was handed off
// before the subscription, so live delivery resumes without waiting for
// the log. A subscription that broke and came back is caught up the same
// way.
func (r *Reader) Read(ctx context.Context, partitions []int32) ([]kafkalog.Consumed, error) {
	defer func() { r.lastRead = time.Now() }()
	// What the channel holds came after the last read ended, at the
	// earliest: its records are stamped with that (a stall counts).
	since := r.lastRead
	if since.IsZero() {
		since = time.Now()
	}
	if r.routes != nil && !r.lastRead.IsZero() && time.Since(r.lastRead) > routesStale {
		r.routes.Reset()
	}
	if r.ps == nil || !slices.Equal(partitions, r.subscribed) {
		if err := r.subscribe(ctx, partitions); err != nil {
			return nil, err
		}
	}
	out, err := r.take(nil, since)
	if err != nil || len(r.backlog) > 0 {
		if err == nil {
			out, err = r.readBacklog(ctx, out)
		}
		return out, err
	}
	if len(out) > 0 {
		return out, nil
	}
	t := time.NewTimer(r.cfg.Block)
	defer t.Stop()
	select {
	case m, ok := <-r.msgs:
		if out, err = r.add(nil, m, ok, since); err != nil {
			return nil, err
		}
		return r.take(out, since)
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// take appends what the channel holds, without waiting; since stamps its
// records (Consumed.Received).
func (r *Reader) take(out []kafkalog.Consumed, since time.Time) ([]kafkalog.Consumed, error) {
	for len(out) < channelSize {
		select {
		case m, ok := <-r.msgs:
			var err error
			if out, err = r.add(out, m, ok, since); err != nil {
				return out, err
			}
		default:
			return out, nil
		}
	}
	return out, nil
}

func (r *Reader) subscribe(ctx context.Context, partitions []int32) error {
	r.Close()
	chs := make([]string, len(partitions), len(partitions)+1)
	for i, p := range partitions {
		chs[i] = Channel(r.cfg.Prefix, p)
	}
	if r.routes != nil {
		chs = append(chs, r.routesCh)
	}
	ps := r.rdb.SSubscribe(ctx, chs...)
	for range chs { // one confirmation per channel
		if _, err := ps.Receive(ctx); err != nil {
			_ = ps.Close()
			return fmt.Errorf("handoff subscribe: %w", err)
		}
	}
	r.ps, r.subscribed = ps, slices.Clone(partitions)
	r.msgs = ps.ChannelWithSubscriptions(redis.WithChannelSize(channelSize))
	r.catchUpAll()
	return nil
}

// catchUpAll reads every subscribed partition's stream from its start.
// Route changes published meanwhile are not in any stream: the watcher
// forgets what it knew.
func (r *Reader) catchUpAll() {
	if r.routes != nil {
		r.routes.Reset()
	}
	clear(r.backlog)
	for _, p := range r.subscribed {
		r.backlog[p] = "0-0"
	}
}

// add decodes a message onto out, received at since. A subscription notice after the first
// ones means go-redis reconnected: what was published meanwhile is in the
// streams.
func (r *Reader) add(out []kafkalog.Consumed, msg any, ok bool, since time.Time) ([]kafkalog.Consumed, error) {
	if !ok {
		r.Close()
		return out, errors.New("handoff: subscription closed")
	}
	m, isMsg := msg.(*redis.Message)
	if !isMsg {
		metrics.HandoffResubscribes.Inc()
		r.catchUpAll()
		return out, nil
	}
	if r.routes != nil && m.Channel == r.routesCh {
		r.routes.Changed(m.Payload)
		return out, nil
	}
	p, err := partitionOf(m.Channel)
	if err != nil {
		metrics.Handoff.WithLabelValues("unreadable").Inc()
		return out, nil
	}
	off, v, err := Decode([]byte(m.Payload))
	if err != nil {
		metrics.Handoff.WithLabelValues("unreadable").Inc()
		return out, nil // the log has it
	}
	return append(out, kafkalog.Consumed{Partition: p, Offset: off, Value: v, Received: since}), nil
}

func partitionOf(channel string) (int32, error) {
	rest, ok := strings.CutSuffix(channel, ":live")
	i := strings.LastIndexByte(rest, ':')
	p, err := strconv.ParseInt(rest[i+1:], 10, 32)
	if !ok || err != nil || p < 0 {
		return 0, fmt.Errorf("handoff: channel %q names no partition", channel)
	}
	return int32(p), nil
}

// readBacklog reads the next page of the streams still to be read, without
// waiting; a stream that returns less than a page is read to its end.
func (r *Reader) readBacklog(ctx context.Context, out []kafkalog.Consumed) ([]kafkalog.Consumed, error) {
	keys := make([]string, 0, 2*len(r.backlog))
	byKey := make(map[string]int32, len(r.backlog))
	for p := range r.backlog {
		k := Stream(r.cfg.Prefix, p)
		keys = append(keys, k)
		byKey[k] = p
	}
	for _, k := range keys[:len(byKey)] {
		keys = append(keys, r.backlog[byKey[k]])
	}
	page := max(readBatch/int64(len(byKey)), 16)
	res, err := r.rdb.XRead(ctx, &redis.XReadArgs{Streams: keys, Count: page, Block: -1}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return out, fmt.Errorf("handoff read: %w", err)
	}
	full := map[int32]bool{}
	for _, xs := range res {
		p, ok := byKey[xs.Stream]
		if !ok {
			return out, fmt.Errorf("handoff: unexpected stream %q", xs.Stream)
		}
		for _, m := range xs.Messages {
			r.backlog[p] = m.ID
			raw, _ := m.Values["r"].(string)
			off, v, err := Decode([]byte(raw))
			if err != nil {
				metrics.Handoff.WithLabelValues("unreadable").Inc()
				continue // the log has it
			}
			out = append(out, kafkalog.Consumed{Partition: p, Offset: off, Value: v})
		}
		full[p] = int64(len(xs.Messages)) == page
	}
	for p := range r.backlog {
		if !full[p] {
			delete(r.backlog, p)
		}
	}
	if len(res) > 0 && r.routes != nil {
		// A stream's record may follow a route change still on its way
		// down the subscription.
		r.routes.Reset()
	}
	return out, nil
}

// Close ends the subscription; the next Read subscribes again.
func (r *Reader) Close() {
	if r.ps != nil {
		_ = r.ps.Close()
		r.ps, r.msgs, r.subscribed = nil, nil, nil
	}
	clear(r.backlog)
}
