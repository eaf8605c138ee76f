package fanoutbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/domain"
)

// A gateway takes its deliveries from its node's channel: Redis pushes them,
// so a fan-out batch costs no command of the gateway's. A blocking XREAD per
// batch cost Redis 18-20 µs and made the XADD that woke it cost 12 instead
// of 5; a publish to one subscriber costs 4 (docs/benchmarks.md, "Session
// 10"). The channel loses what it cannot deliver (a broken connection, an
// output buffer over Redis's limit); the stream beside it, written in the
// same pipeline and before, is where the subscriber catches up:
//
//   - when its subscription broke: it subscribes again, then delivers every
//     entry of the stream after the last point it caught up to that it has
//     not delivered, before taking the channel's messages again;
//   - when a delivery's Prev shows that deliveries of its partition were
//     lost: the same catch-up, which delivers the lost ones and then that
//     one, in stream order.
//
// "Not delivered" is by partition and seq: a durable delivery at or below
// the last seq delivered for its partition is a duplicate (what the catch-up
// delivered and the channel brings again, or a fan-out's redelivery), and is
// dropped here. Ephemeral pushes (no seq) are not replayed: a typing or
// presence push is stale by then, and a replayed one could not be told from
// one delivered already. What the stream no longer holds stays lost, and the
// gap reaches the Hub, which closes the node's connections with 1012 so the
// clients sync (docs/architecture.md, "Live delivery").

// catchUpPage bounds the entries one catch-up read returns; a catch-up
// reads at most the stream's length (MaxLen) in all.
const catchUpPage = 1000

// idleCheck is how long the subscriber waits on a quiet channel before it
// pings: a connection that died without a word is found within about twice
// this long.
var idleCheck = 15 * time.Second

// Subscribe delivers node's deliveries from now on to handle, in the order
// the fan-outs published them, until ctx ends.
func (b *Bus) Subscribe(ctx context.Context, node string, handle func(domain.Delivery)) error {
	r := &subscriber{bus: b, stream: b.NodeStream(node), channel: b.NodeChannel(node), handle: handle,
		last: map[int32]int64{}, idle: idleCheck}
	ps, err := r.subscribe(ctx)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", r.channel, err)
	}
	// The stream's last entry once the channel is ours: everything after it
	// reaches the channel too, and a catch-up starts there.
	if r.from, err = b.lastID(ctx, r.stream); err != nil {
		_ = ps.Close()
		return fmt.Errorf("subscribe %s: %w", r.stream, err)
	}
	go r.run(ctx, ps)
	return nil
}

// NodeChannel is the sharded pub/sub channel of a gateway node's live
// deliveries; it shares the node stream's hash tag, so one Redis Cluster
// shard serves both.
func (b *Bus) NodeChannel(node string) string { return b.NodeStream(node) + ":live" }

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

// subscriber is one node's subscription; only its goroutine touches it.
type subscriber struct {
	bus             *Bus
	stream, channel string
	handle          func(domain.Delivery)
	from            string          // stream entries up to this id were handled
	last            map[int32]int64 // last seq delivered, by partition
	idle            time.Duration   // idleCheck when it subscribed
}

func (r *subscriber) subscribe(ctx context.Context) (*redis.PubSub, error) {
	ps := r.bus.rdb.SSubscribe(ctx, r.channel)
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		_ = ps.Close()
		return nil, err
	}
	return ps, nil
}

func (r *subscriber) run(ctx context.Context, ps *redis.PubSub) {
	defer func() {
		if ps != nil { // nil: resubscribing ended with ctx
			_ = ps.Close()
		}
	}()
	pinged := false // a ping is out and nothing came since
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, r.idle)
		if err == nil {
			pinged = false
			r.received(ctx, msg)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if isTimeout(err) && !pinged {
			// Quiet: ask. The pong (or anything) within the next idleCheck
			// proves the connection; silence then means it died unheard.
			if pinged = ps.Ping(ctx) == nil; pinged {
				continue
			}
		}
		r.bus.log.Warn("fanout bus: subscription broke; catching up from the stream", "channel", r.channel, "err", err)
		_ = ps.Close()
		if ps = r.resubscribe(ctx); ps == nil {
			return
		}
		pinged = false
		r.catchUp(ctx)
	}
}

// received handles one message of the channel: a delivery, or a
// subscription notice (ignored).
func (r *subscriber) received(ctx context.Context, msg any) {
	m, ok := msg.(*redis.Message)
	if !ok {
		return
	}
	d, err := Decode([]byte(m.Payload))
	if err != nil {
		r.bus.log.Warn("fanout bus: message skipped", "channel", r.channel, "err", err)
		return
	}
	if d.Seq == 0 {
		r.handle(d)
		return
	}
	if !r.isNew(d) {
		return // delivered already
	}
	if last, seen := r.last[d.Partition]; seen && d.Prev > last {
		r.catchUp(ctx) // the lost ones, then d, if the stream has them
		if !r.isNew(d) {
			return
		}
	}
	// Not in the stream (Redis lost it, or the read failed): d goes on,
	// and its Prev shows the Hub the gap.
	r.deliver(d)
}

// isNew reports whether durable d is above the last seq delivered for its
// partition.
func (r *subscriber) isNew(d domain.Delivery) bool {
	last, seen := r.last[d.Partition]
	return !seen || d.Seq > last
}

func (r *subscriber) deliver(d domain.Delivery) {
	if d.Seq != 0 {
		r.last[d.Partition] = max(r.last[d.Partition], d.Seq)
	}
	r.handle(d)
}

// catchUp delivers the stream's durable entries after r.from that were not
// delivered, in stream order, and moves r.from to the last entry read. A
// read that fails is logged and ends it: what it could not deliver stays a
// gap for the next delivery's Prev to show.
func (r *subscriber) catchUp(ctx context.Context) {
	for {
		msgs, err := r.bus.rdb.XRangeN(ctx, r.stream, "("+r.from, "+", catchUpPage).Result()
		if err != nil {
			r.bus.log.Warn("fanout bus: catch-up read failed", "stream", r.stream, "err", err)
			return
		}
		for _, m := range msgs {
			r.from = m.ID
			payload, _ := m.Values["d"].(string)
			d, err := Decode([]byte(payload))
			if err != nil || d.Seq == 0 {
				continue // undecodable (logged when it came live), or ephemeral
			}
			if r.isNew(d) {
				r.deliver(d)
			}
		}
		if len(msgs) < catchUpPage {
			return
		}
	}
}

// resubscribe subscribes again, retrying gently while Redis is away; nil
// once ctx ends.
func (r *subscriber) resubscribe(ctx context.Context) *redis.PubSub {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		ps, err := r.subscribe(ctx)
		if err == nil {
			return ps
		}
		r.bus.log.Warn("fanout bus: subscribe failed", "channel", r.channel, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
