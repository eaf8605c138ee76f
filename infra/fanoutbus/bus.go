// Package fanoutbus carries deliveries from the fanout consumers to the
// gateway nodes over Redis: each gateway node has a stream and a sharded
// pub/sub channel of its own, which carry only deliveries with a recipient
// connected to it (routes.go), trimmed to the recipients on that node. The
// gateway takes deliveries from the channel and reads the stream only to
// catch up on what the channel lost (subscribe.go). A stream keeps a short
// buffer, never the truth. Entries carry one field, "d", in the binary form
// of codec.go; a channel message is the same bytes.
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
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/handoff"
)

// Config of the bus.
type Config struct {
	Prefix string
	MaxLen int64 // per node stream; 0 means 10000
}

// Bus publishes and subscribes deliveries.
type Bus struct {
	cfg     Config
	rdb     redis.UniversalClient
	log     *slog.Logger
	alive   liveness
	lossKey string // set by WatchLoss (the fan-out)
	// routeKeys are the route shards' keys, by shard.
	routeKeys [routeShards]string
	routesCh  string   // where route changes are announced
	names     sync.Map // node -> nodeNames: spelled once, not per delivery
}

// nodeNames are a node's stream and channel.
type nodeNames struct{ stream, channel string }

func (b *Bus) namesOf(node string) nodeNames {
	if v, ok := b.names.Load(node); ok {
		return v.(nodeNames)
	}
	n := nodeNames{stream: b.NodeStream(node), channel: b.NodeChannel(node)}
	b.names.Store(node, n)
	return n
}

// Validate reports a config the bus cannot work with.
func (c Config) Validate() error {
	switch {
	case c.Prefix == "":
		return errors.New("fanoutbus: a key prefix is required")
	case c.MaxLen < 16:
		return fmt.Errorf("fanoutbus: MaxLen %d below 16 (a node stream is a gateway's buffer)", c.MaxLen)
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
	b := &Bus{cfg: cfg, rdb: rdb, log: log, routesCh: handoff.RoutesChannel(cfg.Prefix)}
	for i := range b.routeKeys {
		b.routeKeys[i] = cfg.Prefix + ":routes:{r" + strconv.Itoa(i) + "}"
	}
	return b, nil
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
// and publishes each on its node's channel, in one pipeline, in order.
func (b *Bus) PublishBatch(ctx context.Context, ds []domain.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	return b.publish(ctx, b.encode(ds, nil))
}

// published is one delivery as the bus writes it: its node's names and
// its wire form.
type published struct {
	names     nodeNames
	payload   []byte
	partition int32
}

// encode appends ds's wire forms to out, their payloads in one allocation.
func (b *Bus) encode(ds []domain.Delivery, out []published) []published {
	size := 0
	for _, d := range ds {
		size += encodedCap(d)
	}
	buf := make([]byte, 0, size)
	for _, d := range ds {
		start := len(buf)
		buf = Encode(buf, d)
		out = append(out, published{b.namesOf(d.Node), buf[start:len(buf):len(buf)], d.Partition})
	}
	return out
}

// publish writes ps in one pipeline: each appended to its node's stream
// (the catch-up's buffer), then published on its node's channel.
func (b *Bus) publish(ctx context.Context, ps []published) error {
	pipe := b.rdb.Pipeline()
	for _, p := range ps {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: p.names.stream, MaxLen: b.cfg.MaxLen, Approx: true,
			Values: []any{"d", p.payload}})
		pipe.SPublish(ctx, p.names.channel, p.payload)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("%w: publish deliveries: %v", domain.ErrUnavailable, err)
	}
	return nil
}

// Close is a no-op: the Redis client belongs to the caller.
func (b *Bus) Close() error { return nil }
