// Package fanoutbus carries deliveries from the fanout consumers to the
// gateway nodes over Redis Streams: each gateway node reads a stream of its
// own, which carries only deliveries with a recipient connected to it
// (routes.go), trimmed to the recipients on that node. A stream keeps a
// short buffer, never the truth. Entries carry one field, "d", in the
// binary form of codec.go.
//
// watermill-redisstream carried this bus first, on shard streams that every
// gateway read whole; its publisher sent one XADD per delivery, its fan-out
// subscriber read one entry per round trip, and its JSON envelope cost
// every gateway a parse of every frame (docs/architecture.md, "Libraries").
package fanoutbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/domain"
)

// Config of the bus.
type Config struct {
	Prefix string
	MaxLen int64 // per node stream; 0 means 10000
	// Gather is how long a subscriber lets deliveries gather after a read
	// that returned some, before it reads again: one read per Gather under
	// load instead of one per fan-out batch, for at most that much
	// latency. 0 reads again at once.
	Gather time.Duration
}

// Bus publishes and subscribes deliveries.
type Bus struct {
	cfg     Config
	rdb     redis.UniversalClient
	log     *slog.Logger
	alive   liveness
	lossKey string // set by WatchLoss (the fan-out)
}

// Validate reports a config the bus cannot work with.
func (c Config) Validate() error {
	switch {
	case c.Prefix == "":
		return errors.New("fanoutbus: a key prefix is required")
	case c.MaxLen < 16:
		return fmt.Errorf("fanoutbus: MaxLen %d below 16 (a node stream is a gateway's buffer)", c.MaxLen)
	case c.Gather < 0 || c.Gather > time.Second:
		return fmt.Errorf("fanoutbus: gather %s outside 0-1s", c.Gather)
	}
	return nil
}

// New builds a bus on a Redis client.
func New(rdb redis.UniversalClient, cfg Config, log *slog.Logger) (*Bus, error) {
	if cfg.MaxLen == 0 {
		cfg.MaxLen = 10000
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Bus{cfg: cfg, rdb: rdb, log: log}, nil
}

// Publish sends an ephemeral push (no seq) to the nodes of its recipients.
func (b *Bus) Publish(ctx context.Context, d domain.Delivery) error {
	return b.PublishMany(ctx, []domain.Delivery{d})
}

// PublishMany sends ephemeral pushes (no seq) to the nodes of their
// recipients: one routes lookup and one pipeline for them all.
func (b *Bus) PublishMany(ctx context.Context, ds []domain.Delivery) error {
	var users []string
	for _, d := range ds {
		users = append(users, d.Recipients...)
	}
	nodes, err := b.NodesOf(ctx, users)
	if err != nil {
		return err
	}
	var out []domain.Delivery
	for _, d := range ds {
		out = domain.SplitByNode(d, nodes, out)
	}
	return b.PublishBatch(ctx, out)
}

// PublishBatch appends deliveries to the streams of their nodes (d.Node)
// in one pipeline, in order.
func (b *Bus) PublishBatch(ctx context.Context, ds []domain.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	pipe := b.rdb.Pipeline()
	for _, d := range ds {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: b.NodeStream(d.Node), MaxLen: b.cfg.MaxLen, Approx: true,
			Values: []any{"d", Encode(nil, d)}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("%w: publish deliveries: %v", domain.ErrUnavailable, err)
	}
	return nil
}

// readBatch bounds the entries one XREAD returns. watermill-redisstream's
// fan-out subscriber reads one entry per round trip, which capped a gateway
// at a few thousand deliveries a second (docs/benchmarks.md); reading what
// is there, up to this many, costs one round trip per batch.
const readBatch = 512

// Subscribe reads node's stream from now on and calls handle for each
// delivery, in stream order, until ctx ends.
func (b *Bus) Subscribe(ctx context.Context, node string, handle func(domain.Delivery)) error {
	stream := b.NodeStream(node)
	// Start after the stream's current last entry ("$" would miss entries
	// added between two blocking reads that both timed out).
	last, err := b.lastID(ctx, stream)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", stream, err)
	}
	go b.readStream(ctx, stream, last, handle)
	return nil
}

func (b *Bus) lastID(ctx context.Context, stream string) (string, error) {
	msgs, err := b.rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", err
	}
	if len(msgs) == 0 {
		return "0-0", nil
	}
	return msgs[0].ID, nil
}

func (b *Bus) readStream(ctx context.Context, stream, last string, handle func(domain.Delivery)) {
	for ctx.Err() == nil {
		res, err := b.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{stream, last}, Count: readBatch, Block: time.Second}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.log.Error("fanout bus read failed", "stream", stream, "err", err)
			select { // Redis down: retry, gently
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		for _, xs := range res {
			for _, m := range xs.Messages {
				last = m.ID
				payload, _ := m.Values["d"].(string)
				d, err := Decode([]byte(payload))
				if err != nil {
					b.log.Warn("fanout bus: entry skipped", "stream", stream, "id", m.ID, "err", err)
					continue
				}
				handle(d)
			}
		}
		if b.cfg.Gather > 0 {
			select {
			case <-time.After(b.cfg.Gather):
			case <-ctx.Done():
			}
		}
	}
}

// Close is a no-op: the Redis client belongs to the caller.
func (b *Bus) Close() error { return nil }
