// Package fanoutbus carries deliveries from the fanout consumers to every
// gateway node over Redis Streams (watermill-redisstream). A few shard
// streams carry all conversations, so each node holds a few connections, not
// one per conversation; a stream keeps a short buffer, never the truth.
package fanoutbus

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/domain"
)

// Config of the bus.
type Config struct {
	Prefix string
	Shards int
	MaxLen int64 // per shard stream; 0 means 10000
}

// Bus publishes and subscribes deliveries.
type Bus struct {
	cfg    Config
	rdb    redis.UniversalClient
	pub    *redisstream.Publisher
	logger watermill.LoggerAdapter
}

// New builds a bus on a Redis client.
func New(rdb redis.UniversalClient, cfg Config, log *slog.Logger) (*Bus, error) {
	if cfg.MaxLen == 0 {
		cfg.MaxLen = 10000
	}
	logger := watermill.NewSlogLoggerWithLevelMapping(log.With("component", "fanoutbus"), nil)
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb, DefaultMaxlen: cfg.MaxLen}, logger)
	if err != nil {
		return nil, fmt.Errorf("redisstream publisher: %w", err)
	}
	return &Bus{cfg: cfg, rdb: rdb, pub: pub, logger: logger}, nil
}

// Stream is the shard stream of a conversation.
func (b *Bus) Stream(conv string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(conv))
	return b.streamName(int(h.Sum32() % uint32(b.cfg.Shards)))
}

func (b *Bus) streamName(shard int) string {
	return b.cfg.Prefix + ":{fanout." + strconv.Itoa(shard) + "}"
}

// Publish sends a delivery to every gateway node.
func (b *Bus) Publish(ctx context.Context, d domain.Delivery) error {
	payload, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("marshal delivery: %w", err)
	}
	msg := message.NewMessage(watermill.NewShortUUID(), payload)
	msg.SetContext(ctx)
	if err := b.pub.Publish(b.Stream(d.ConversationID), msg); err != nil {
		return fmt.Errorf("%w: publish delivery: %v", domain.ErrUnavailable, err)
	}
	return nil
}

// Subscribe reads every shard stream from now on and calls handle for each
// delivery, in stream order per shard, until ctx ends.
func (b *Bus) Subscribe(ctx context.Context, handle func(domain.Delivery)) error {
	var wg sync.WaitGroup
	for shard := range b.cfg.Shards {
		sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client:                        b.rdb,
			DisableIndefiniteInitialBlock: true,
		}, b.logger)
		if err != nil {
			return fmt.Errorf("redisstream subscriber: %w", err)
		}
		ch, err := sub.Subscribe(ctx, b.streamName(shard))
		if err != nil {
			return fmt.Errorf("subscribe shard %d: %w", shard, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sub.Close()
			for msg := range ch {
				var d domain.Delivery
				if err := json.Unmarshal(msg.Payload, &d); err == nil {
					handle(d)
				}
				msg.Ack()
			}
		}()
	}
	go func() { wg.Wait() }()
	return nil
}

// Close closes the publisher.
func (b *Bus) Close() error { return b.pub.Close() }
