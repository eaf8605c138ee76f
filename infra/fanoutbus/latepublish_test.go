//go:build linux

package fanoutbus_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/fanoutbus"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/poll"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// latePublisher publishes through pub's routes, on a late connection to
// the Redis at addr.
func latePublisher(t *testing.T, pub *fanoutbus.Bus, addr string) *fanoutbus.LatePublisher {
	t.Helper()
	fake := redis.NewClient(&redis.Options{Addr: addr})
	late := redisstore.NewLate(fake, quietLog, "fanout")
	if late == nil {
		t.Fatal("no late connection for a plain TCP Redis")
	}
	p := fanoutbus.NewLatePublisher(pub.RouteCache(), late)
	t.Cleanup(func() {
		p.Close()
		fake.Close()
	})
	return p
}

func publishLate(t *testing.T, p *fanoutbus.LatePublisher, ds ...domain.Delivery) {
	t.Helper()
	if err := p.PublishBatch(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
}

// Batches written late reach the gateway in order, and Settle finds every
// reply: nothing is held or published twice.
func TestLatePublisherDelivers(t *testing.T) {
	pub, rdb, in, _ := subscribed(t)
	again := testutil.ToFloat64(metrics.FanoutRepublished)
	p := latePublisher(t, pub, rdb.Options().Addr)
	publishLate(t, p, delivery("a", 0, 1, 0), delivery("b", 1, 1, 0))
	publishLate(t, p, delivery("a", 0, 2, 1))
	if err := p.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.Held() != 0 {
		t.Fatalf("%d batches held after Settle", p.Held())
	}
	waitFor(t, in, "a/0:1", "b/1:1", "a/0:2")
	if got := testutil.ToFloat64(metrics.FanoutRepublished) - again; got != 0 {
		t.Fatalf("%v deliveries published again", got)
	}
	if n, err := rdb.XLen(context.Background(), pub.NodeStream("n1")).Result(); err != nil || n != 3 {
		t.Fatalf("node stream holds %d entries (%v), want 3", n, err)
	}
}

// swallowingRedis answers a late connection's handshake (PING) and takes
// what is written after it without applying it or answering: a Redis that
// stopped reading (hang) or, 100 ms after the first batch, died with it
// unread (closed tells when the connection was closed).
func swallowingRedis(t *testing.T, hang bool) (addr string, closed <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done, stop := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		ln.Close()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err != nil { // the PING
					return
				}
				if _, err := c.Write([]byte("+PONG\r\n")); err != nil {
					return
				}
				_, _ = c.Read(buf) // the batch, lost
				if hang {
					<-stop
					return
				}
				time.Sleep(100 * time.Millisecond)
				c.Close()
				close(done)
			}()
		}
	}()
	return ln.Addr().String(), done
}

// A batch written on a connection that broke before its replies came is
// published again through the pool, before anything published after it:
// at Settle (before the consumer commits), or at the next publish.
func TestLatePublisherPublishesAgainWhatABrokenConnectionHeld(t *testing.T) {
	for _, settle := range []bool{true, false} {
		pub, _, in, _ := subscribed(t)
		again := testutil.ToFloat64(metrics.FanoutRepublished)
		addr, closed := swallowingRedis(t, false)
		p := latePublisher(t, pub, addr)
		publishLate(t, p, delivery("a", 0, 1, 0), delivery("a", 0, 2, 1))
		if p.Held() != 1 {
			t.Fatalf("%d batches held, want 1", p.Held())
		}
		want := []string{"a/0:1", "a/0:2"}
		if !settle {
			<-closed
			publishLate(t, p, delivery("a", 0, 3, 2))
			want = append(want, "a/0:3")
		}
		settleAll(t, p)
		waitFor(t, in, want...)
		if got := testutil.ToFloat64(metrics.FanoutRepublished) - again; got != 2 {
			t.Fatalf("%v deliveries published again, want 2", got)
		}
	}
}

// A Redis that takes a batch and stops answering is given up within the
// late connection's timeout: Settle then publishes the batch through the
// pool instead of waiting on it.
func TestLatePublisherGivesUpOnAStalledRedis(t *testing.T) {
	pub, _, in, _ := subscribed(t)
	addr, _ := swallowingRedis(t, true)
	p := latePublisher(t, pub, addr)
	publishLate(t, p, delivery("a", 0, 1, 0))
	start := time.Now()
	if err := p.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("Settle waited %s on a stalled Redis", waited)
	}
	if p.Held() != 0 {
		t.Fatalf("%d batches held after Settle", p.Held())
	}
	waitFor(t, in, "a/0:1")
}

// settleAll settles p, which must end holding nothing.
func settleAll(t *testing.T, p *fanoutbus.LatePublisher) {
	t.Helper()
	poll.Until(t, 10*time.Second, "every batch settled", func() bool {
		return p.Settle(context.Background()) == nil && p.Held() == 0
	})
}

// A batch Redis refused is not dropped: it is published again through the
// pool, and while Redis refuses it Settle fails (the consumer commits
// nothing) and so does the next publish (the consumer retries), as the
// pipeline would; once Redis takes it, it is in the node's stream. Batches
// settled before it are not held or published again.
func TestLatePublisherDoesNotDropARefusal(t *testing.T) {
	pub, rdb, _, _ := subscribed(t)
	ctx := context.Background()
	stream := pub.NodeStream("n1")
	p := latePublisher(t, pub, rdb.Options().Addr)
	again := testutil.ToFloat64(metrics.FanoutRepublished)
	refused := metrics.RedisErrors.WithLabelValues("fanout_refused")
	refusedBefore, writeBehindBefore := testutil.ToFloat64(refused), testutil.ToFloat64(metrics.RedisErrors.WithLabelValues("late_refused"))
	publishLate(t, p, delivery("b", 1, 1, 0), delivery("b", 1, 2, 1))
	publishLate(t, p, delivery("b", 1, 3, 2))
	settleAll(t, p)
	if err := rdb.Del(ctx, stream).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, stream, "not a stream", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	publishLate(t, p, delivery("a", 0, 1, 0))
	if err := p.Settle(ctx); err == nil {
		t.Fatal("Settle succeeded while Redis refused the batch")
	}
	if p.Held() != 1 {
		t.Fatalf("%d batches held after a refusal, want 1", p.Held())
	}
	if err := p.PublishBatch(ctx, []domain.Delivery{delivery("a", 0, 2, 1)}); err == nil {
		t.Fatal("a publish went on past a batch Redis refused")
	}
	if err := rdb.Del(ctx, stream).Err(); err != nil {
		t.Fatal(err)
	}
	if err := p.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	msgs, err := rdb.XRange(ctx, stream, "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("node stream: %d entries (%v), want the refused one", len(msgs), err)
	}
	d, err := fanoutbus.Decode([]byte(msgs[0].Values["d"].(string)))
	if err != nil || d.ConversationID != "a" || d.Seq != 1 {
		t.Fatalf("node stream holds %s/%d (%v), want a/1", d.ConversationID, d.Seq, err)
	}
	// The refused batch alone, tried again three times: at the first
	// Settle and the publish (both refused), and at the last Settle.
	if got := testutil.ToFloat64(metrics.FanoutRepublished) - again; got != 3 {
		t.Fatalf("%v deliveries published again, want 3", got)
	}
	// Counted as the fan-out's, apart from the write-behind's refusals.
	if testutil.ToFloat64(refused) <= refusedBefore {
		t.Fatal("the refusal was not counted as op=fanout_refused")
	}
	if got := testutil.ToFloat64(metrics.RedisErrors.WithLabelValues("late_refused")); got != writeBehindBefore {
		t.Fatalf("op=late_refused went from %v to %v: the fan-out's refusal counted as the write-behind's", writeBehindBefore, got)
	}
}

// A burst whose replies would pass what a late connection may owe goes
// through the pool, and is not held.
func TestLatePublisherSendsABurstThroughThePool(t *testing.T) {
	pub, rdb, _, _ := subscribed(t)
	p := latePublisher(t, pub, rdb.Options().Addr)
	burst := make([]domain.Delivery, fanoutbus.MaxHeldReplies/2+1)
	for i := range burst {
		burst[i] = delivery("a", 0, int64(i+1), int64(i))
	}
	publishLate(t, p, burst...)
	if p.Held() != 0 {
		t.Fatalf("%d batches held after a burst", p.Held())
	}
	if n, err := rdb.XLen(context.Background(), pub.NodeStream("n1")).Result(); err != nil || n != int64(len(burst)) {
		t.Fatalf("node stream holds %d entries (%v), want %d", n, err, len(burst))
	}
}

// The deliveries held of partitions the fan-out gave up (Forget: their
// offsets were not committed, and their next owner publishes them) are not
// published again by it; the others are.
func TestLatePublisherForgetsThePartitionsItGaveUp(t *testing.T) {
	pub, _, in, _ := subscribed(t)
	addr, _ := swallowingRedis(t, true)
	p := latePublisher(t, pub, addr)
	publishLate(t, p, delivery("a", 0, 1, 0), delivery("b", 1, 1, 0))
	p.Forget([]int32{0})
	if p.Held() != 1 {
		t.Fatalf("%d batches held, want 1 (its replies are still owed)", p.Held())
	}
	settleAll(t, p)
	waitFor(t, in, "b/1:1")
}
