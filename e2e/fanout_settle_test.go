package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/infra/fanoutbus"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/internal/testenv"
)

// The fan-out writes its deliveries on a connection whose replies it reads
// late, so a batch it handled may not have reached Redis yet. Its Kafka
// offsets must wait for Redis's replies (kafkalog.LiveConfig.Settle): a
// fan-out that died after committing an offset whose deliveries were still
// on the wire would lose them for good. Here the fan-out reaches Redis
// through a proxy that stalls every connection a delivery's XADD goes out
// on (its other reads, the routes', pass): the fan-out handles the
// message, and its offset stays uncommitted until the stall ends and the
// delivery arrives.
func TestFanoutCommitsOnlyWhatRedisTook(t *testing.T) {
	env := testenv.New(t)
	gw := env.StartNode("gateway", "projector")
	proxy := testenv.NewProxy(t, redisHost(t, env.Cfg.RedisURL))
	direct := env.Cfg.RedisURL
	env.Cfg.RedisURL = withHost(t, direct, proxy.Addr())
	env.StartNode("fanout")
	env.Cfg.RedisURL = direct

	a, b := user("a"), user("b")
	ca, cb := dial(t, env, gw, a), dial(t, env, gw, b)
	conv := createGroup(t, ca, b)
	send(t, ca, conv.ConversationID, "before the stall")
	nextPush(t, cb, domain.PushMessageNew)
	group := env.Cfg.GroupPrefix + app.FanoutGroup
	lag := func() int64 {
		ls, err := gw.App.KafkaLog.GroupLag(context.Background(), group)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, l := range ls {
			n += l
		}
		return n
	}
	testenv.WaitFor(t, 20*time.Second, "the fan-out's offsets committed", func() bool { return lag() == 0 })

	proxy.Hold(func(chunk []byte) bool { return bytes.Contains(bytes.ToLower(chunk), []byte("xadd")) })
	handled := testutil.ToFloat64(metrics.FanoutEvents)
	send(t, ca, conv.ConversationID, "during the stall")
	testenv.WaitFor(t, 20*time.Second, "the fan-out handling the message", func() bool {
		return testutil.ToFloat64(metrics.FanoutEvents) > handled
	})
	// Three of the consumer's one-second commit ticks.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if lag() == 0 {
			t.Fatal("the fan-out committed the offset of a delivery Redis had not acknowledged")
		}
	}

	proxy.Release()
	var m domain.Message
	if err := json.Unmarshal(nextPush(t, cb, domain.PushMessageNew).Data, &m); err != nil {
		t.Fatal(err)
	}
	if m.Body != "during the stall" {
		t.Fatalf("push after the stall: %q", m.Body)
	}
	testenv.WaitFor(t, 20*time.Second, "the offsets committed after the stall", func() bool { return lag() == 0 })
}

func redisHost(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func withHost(t *testing.T, raw, host string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = host
	return u.String()
}

// A partition that moves to another fan-out keeps its Prev chain
// (fanout.Chains): the first delivery the new owner publishes to a gateway
// names the last one the old owner published to it, so a delivery that
// gateway lost just before the move would still show as a gap. Before,
// the new owner's chain started at 0, which shows no gap at all.
func TestFanoutHandsOverItsPrevChain(t *testing.T) {
	env := testenv.New(t)
	gw := env.StartNode("gateway", "projector")
	first := env.StartNode("fanout")
	a, b := user("a"), user("b")
	ca, cb := dial(t, env, gw, a), dial(t, env, gw, b)
	conv := createGroup(t, ca, b)
	before := send(t, ca, conv.ConversationID, "before the move")
	nextPushOf(t, cb, "before the move")
	first.Stop()
	env.StartNode("fanout")
	after := send(t, ca, conv.ConversationID, "after the move")
	nextPushOf(t, cb, "after the move")

	ds := streamDeliveries(t, gw)
	// The new owner started after "before" (its offset was committed):
	// had it started earlier, its own chain would name "before" too.
	if n := len(ds[before.Seq]); n != 1 {
		t.Fatalf("%d deliveries of seq %d in the node stream, want 1: the new fan-out did not start from the commit", n, before.Seq)
	}
	if got := ds[after.Seq]; len(got) != 1 || got[0].Prev != before.Seq {
		t.Fatalf("the new fan-out's deliveries of seq %d: %+v, want one with Prev %d (the old fan-out's last)", after.Seq, got, before.Seq)
	}
}

// streamDeliveries are the deliveries in gw's node stream, by seq.
func streamDeliveries(t *testing.T, gw *testenv.Node) map[int64][]domain.Delivery {
	t.Helper()
	stream := gw.App.Bus.NodeStream(gw.App.Cfg.NodeID)
	entries, err := gw.App.Redis.Client().XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64][]domain.Delivery{}
	for _, e := range entries {
		raw, _ := e.Values["d"].(string)
		d, err := fanoutbus.Decode([]byte(raw))
		if err != nil {
			t.Fatalf("stream entry %s: %v", e.ID, err)
		}
		out[d.Seq] = append(out[d.Seq], d)
	}
	return out
}
