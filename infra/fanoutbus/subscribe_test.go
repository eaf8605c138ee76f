package fanoutbus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/fanoutbus"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/internal/testenv"
)

// inbox records what a subscriber handed over, in order.
type inbox struct {
	mu  sync.Mutex
	got []domain.Delivery
}

func (in *inbox) handle(d domain.Delivery) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.got = append(in.got, d)
}

func (in *inbox) seqs() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for _, d := range in.got {
		out = append(out, fmt.Sprintf("%s/%d:%d", d.ConversationID, d.Partition, d.Seq))
	}
	return out
}

// subscribed starts a subscriber for node "n1" on a client of its own,
// named so that the test can kill its connections, and returns the
// publishing bus (another client), the subscriber's inbox and the kill.
func subscribed(t *testing.T) (pub *fanoutbus.Bus, rdb *redis.Client, in *inbox, kill func()) {
	t.Helper()
	return subscribedVia(t, nil)
}

// subscribedVia is subscribed with the subscriber's connections made by
// route (given Redis's address) instead of directly.
func subscribedVia(t *testing.T, route func(addr string) string) (pub *fanoutbus.Bus, rdb *redis.Client, in *inbox, kill func()) {
	t.Helper()
	env := testenv.New(t)
	opt, err := redis.ParseURL(env.Cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ReplaceAll(env.Cfg.RedisPrefix, ":", "_") + "_sub"
	subOpt := *opt
	subOpt.ClientName = name
	if route != nil {
		subOpt.Addr = route(opt.Addr)
	}
	subRdb := redis.NewClient(&subOpt)
	rdb = redis.NewClient(opt)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		_, _ = redisstore.DeletePrefix(context.Background(), rdb, env.Cfg.RedisPrefix)
		subRdb.Close()
		rdb.Close()
	})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := fanoutbus.Config{Prefix: env.Cfg.RedisPrefix}
	sub, err := fanoutbus.New(subRdb, cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if pub, err = fanoutbus.New(rdb, cfg, quiet); err != nil {
		t.Fatal(err)
	}
	in = &inbox{}
	if err := sub.Subscribe(ctx, "n1", in.handle); err != nil {
		t.Fatal(err)
	}
	kill = func() {
		list, err := rdb.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		killed := 0
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, " name="+name+" ") {
				id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
				if err := rdb.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err == nil {
					killed++
				}
			}
		}
		if killed == 0 {
			t.Fatal("no connection of the subscriber to kill")
		}
	}
	return pub, rdb, in, kill
}

func delivery(conv string, partition int32, seq, prev int64) domain.Delivery {
	return domain.Delivery{ConversationID: conv, Partition: partition, Seq: seq, Prev: prev, Node: "n1",
		Recipients: []string{"u1"}, Frame: []byte(`{"type":"message.new"}`)}
}

// lose appends a delivery to the node stream without publishing it: what
// the subscriber sees when the channel lost it.
func lose(t *testing.T, rdb *redis.Client, pub *fanoutbus.Bus, d domain.Delivery) {
	t.Helper()
	err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: pub.NodeStream("n1"), Values: []any{"d", fanoutbus.Encode(nil, d)}}).Err()
	if err != nil {
		t.Fatal(err)
	}
}

func publish(t *testing.T, pub *fanoutbus.Bus, ds ...domain.Delivery) {
	t.Helper()
	if err := pub.PublishBatch(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, in *inbox, want ...string) {
	t.Helper()
	poll.Until(t, 10*time.Second, fmt.Sprintf("deliveries %v", want), func() bool { return len(in.seqs()) >= len(want) })
	// Anything more would show up shortly: duplicates are a failure too.
	time.Sleep(100 * time.Millisecond)
	if got := in.seqs(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

// Deliveries reach the subscriber in publish order, through the channel.
func TestSubscribeInOrder(t *testing.T) {
	pub, _, in, _ := subscribed(t)
	publish(t, pub, delivery("a", 0, 1, 0), delivery("b", 1, 1, 0))
	publish(t, pub, delivery("a", 0, 2, 1), delivery("a", 0, 3, 2))
	waitFor(t, in, "a/0:1", "b/1:1", "a/0:2", "a/0:3")
}

// A delivery whose Prev shows that the channel lost deliveries of its
// partition brings them from the stream first, in order, once; another
// partition's deliveries are not held up or repeated.
func TestSubscribeFillsAGapFromTheStream(t *testing.T) {
	pub, rdb, in, _ := subscribed(t)
	publish(t, pub, delivery("a", 0, 1, 0), delivery("b", 1, 1, 0))
	lose(t, rdb, pub, delivery("a", 0, 2, 1))
	lose(t, rdb, pub, delivery("b", 1, 5, 1))
	lose(t, rdb, pub, delivery("", 0, 0, 0)) // an ephemeral push: not replayed
	publish(t, pub, delivery("a", 0, 3, 2))
	publish(t, pub, delivery("b", 1, 6, 5)) // caught up already: no second catch-up
	waitFor(t, in, "a/0:1", "b/1:1", "a/0:2", "b/1:5", "a/0:3", "b/1:6")
}

// A delivery whose lost predecessors the stream does not hold (Redis lost
// the stream, or it never had them) still reaches the Hub, whose gap check
// then closes the node's connections: it is never swallowed.
func TestSubscribePassesAGapTheStreamCannotFill(t *testing.T) {
	pub, rdb, in, _ := subscribed(t)
	publish(t, pub, delivery("a", 0, 1, 0))
	waitFor(t, in, "a/0:1")
	if err := rdb.Del(context.Background(), pub.NodeStream("n1")).Err(); err != nil {
		t.Fatal(err)
	}
	// On the channel only: the stream lost it too.
	d := delivery("a", 0, 3, 2)
	if err := rdb.SPublish(context.Background(), pub.NodeChannel("n1"), fanoutbus.Encode(nil, d)).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, in, "a/0:1", "a/0:3")
	in.mu.Lock()
	defer in.mu.Unlock()
	if got := in.got[1].Prev; got != 2 {
		t.Fatalf("Prev %d reached the Hub, want 2 (its gap check needs it)", got)
	}
}

// A quiet channel is pinged, and its pongs keep the subscription: after
// many quiet periods the same subscriber still delivers, without having
// reconnected (the killed counter of a reconnect would show in CLIENT LIST
// as a new connection id).
func TestSubscribeSurvivesQuiet(t *testing.T) {
	defer fanoutbus.SetIdleCheck(20 * time.Millisecond)()
	pub, rdb, in, _ := subscribed(t)
	ids := func() string {
		list, err := rdb.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, "_sub ") && strings.Contains(line, " ssub=1 ") {
				out = append(out, strings.Fields(line)[0])
			}
		}
		return strings.Join(out, ",")
	}
	before := ids()
	if before == "" {
		t.Fatal("no subscribed connection")
	}
	time.Sleep(300 * time.Millisecond) // about seven ping rounds
	publish(t, pub, delivery("a", 0, 1, 0))
	waitFor(t, in, "a/0:1")
	if after := ids(); after != before {
		t.Fatalf("subscribed connection %q became %q: quiet periods broke it", before, after)
	}
}

// A broken subscription is taken again, and what the channel lost comes
// from the stream at once (not only when a later delivery reveals it), in
// order, before what the channel brings after; nothing twice.
func TestSubscribeCatchesUpAfterABreak(t *testing.T) {
	pub, rdb, in, kill := subscribed(t)
	publish(t, pub, delivery("a", 0, 1, 0))
	waitFor(t, in, "a/0:1")
	// Lost by the channel, and nothing after them reveals the loss.
	lose(t, rdb, pub, delivery("a", 0, 2, 1))
	lose(t, rdb, pub, delivery("b", 3, 1, 0))
	kill()
	waitFor(t, in, "a/0:1", "a/0:2", "b/3:1")
	poll.Until(t, 10*time.Second, "the subscriber back on its channel", func() bool {
		n, err := rdb.Do(context.Background(), "PUBSUB", "SHARDNUMSUB", pub.NodeChannel("n1")).Slice()
		if err != nil || len(n) != 2 {
			return false
		}
		c, _ := n[1].(int64)
		return c == 1
	})
	publish(t, pub, delivery("a", 0, 3, 2))
	waitFor(t, in, "a/0:1", "a/0:2", "b/3:1", "a/0:3")
}

// A subscription whose connection goes silent (a network path that drops
// everything, the socket still open) is found by the quiet channel's ping,
// taken again on a new connection, and what was published meanwhile comes
// from the stream, in order, once.
func TestSubscribeRecoversFromASilentConnection(t *testing.T) {
	defer fanoutbus.SetIdleCheck(50 * time.Millisecond)()
	px := &silentProxy{t: t}
	pub, _, in, _ := subscribedVia(t, px.start)
	publish(t, pub, delivery("a", 0, 1, 0))
	waitFor(t, in, "a/0:1")
	px.silence() // the subscriber's connections now hear nothing, unknowing
	publish(t, pub, delivery("a", 0, 2, 1), delivery("b", 3, 1, 0))
	waitFor(t, in, "a/0:1", "a/0:2", "b/3:1")
	if n := px.conns.Load(); n < 2 {
		t.Fatalf("%d connections through the proxy: the subscriber did not connect again", n)
	}
	publish(t, pub, delivery("a", 0, 3, 2))
	waitFor(t, in, "a/0:1", "a/0:2", "b/3:1", "a/0:3")
}

// silentProxy forwards TCP connections to Redis; silence makes the
// connections open at that moment drop everything both ways, without
// closing them. Later connections work.
type silentProxy struct {
	t     *testing.T
	conns atomic.Int32
	mu    sync.Mutex
	open  []net.Conn
	muted []*atomic.Bool
}

func (p *silentProxy) start(redisAddr string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.open {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r, err := net.Dial("tcp", redisAddr)
			if err != nil {
				c.Close()
				continue
			}
			p.conns.Add(1)
			muted := &atomic.Bool{}
			p.mu.Lock()
			p.open = append(p.open, c, r)
			p.muted = append(p.muted, muted)
			p.mu.Unlock()
			go pipe(r, c, muted)
			go pipe(c, r, muted)
		}
	}()
	return ln.Addr().String()
}

func (p *silentProxy) silence() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.muted {
		m.Store(true)
	}
}

// pipe copies src to dst until either fails, dropping what it reads once
// muted.
func pipe(dst, src net.Conn, muted *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !muted.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
