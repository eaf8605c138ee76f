package fanoutbus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/redisstore"
)

// BenchmarkBusDeliveries pushes deliveries through the bus on the real Redis
// (localhost:6379, keys under a fresh bench prefix that is deleted
// afterwards): 8 publishers as the fan-out's partitions, one subscriber as a
// gateway on its node stream. ns/op is per delivery, publish to handle.
//
//	go test -run '^$' -bench BusDeliveries -benchtime 20000x ./infra/fanoutbus/
func BenchmarkBusDeliveries(b *testing.B) { benchBus(b, false) }

// BenchmarkBusSubscribe isolates the gateway side: deliveries are written
// with pipelined XADDs and publishes (much faster than the fan-out publishes them), so the
// rate is what one subscriber can read and decode.
//
//	go test -run '^$' -bench BusSubscribe -benchtime 50000x ./infra/fanoutbus/
func BenchmarkBusSubscribe(b *testing.B) { benchBus(b, true) }

// benchRedis is a client of the real Redis (CHAT_REDIS_URL, else
// localhost), closed when the benchmark ends.
func benchRedis(b *testing.B) *redis.Client {
	url := os.Getenv("CHAT_REDIS_URL")
	if url == "" {
		url = "redis://localhost:6379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	b.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		b.Skipf("redis: %v", err)
	}
	return rdb
}

func benchBus(b *testing.B, pipelined bool) {
	rdb := benchRedis(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("benchbus%d", time.Now().UnixNano())
	defer deleteKeys(rdb, prefix)
	bus, err := New(rdb, Config{Prefix: prefix, MaxLen: 100000}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	var got, warm atomic.Int64
	done := make(chan struct{})
	want := int64(b.N)
	subCtx, stop := context.WithCancel(ctx)
	defer stop()
	if err := bus.Subscribe(subCtx, "n1", func(d domain.Delivery) {
		if d.ConversationID == "warmup" {
			warm.Add(1)
			return
		}
		if got.Add(1) == want {
			close(done)
		}
	}); err != nil {
		b.Fatal(err)
	}
	// A subscriber starts reading a moment after Subscribe returns: wait
	// until every shard's reader sees deliveries (bounded).
	for i := 0; warm.Load() < 1 && i < 500; i++ {
		_ = bus.PublishBatch(ctx, []domain.Delivery{{ConversationID: "warmup", Node: "n1"}})
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	frame := []byte(`{"type":"message.new","seq":1,"data":{"body":"hello hello hello hello hello hello hello hello"}}`)
	rcpt := []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10"}
	b.ResetTimer()
	if pipelined {
		publishPipelined(ctx, b, rdb, bus, frame, rcpt)
	}
	var wg sync.WaitGroup
	const publishers = 8
	for p := range publishers * btoi(!pipelined) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < b.N; i += publishers {
				d := domain.Delivery{ConversationID: fmt.Sprintf("c%d", i%200), Seq: int64(i + 1), Partition: int32(p),
					Recipients: rcpt, Frame: frame, Node: "n1"}
				if err := bus.PublishBatch(ctx, []domain.Delivery{d}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("received %d of %d deliveries", got.Load(), want)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// publishPipelined writes b.N deliveries, 500 per round trip.
func publishPipelined(ctx context.Context, b *testing.B, rdb *redis.Client, bus *Bus, frame []byte, rcpt []string) {
	for start := 0; start < b.N; start += 500 {
		pipe := rdb.Pipeline()
		for i := start; i < min(start+500, b.N); i++ {
			d := domain.Delivery{ConversationID: fmt.Sprintf("c%d", i%200), Seq: int64(i + 1), Recipients: rcpt, Frame: frame}
			payload := Encode(nil, d)
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: bus.NodeStream("n1"), MaxLen: 1_000_000, Approx: true,
				Values: []any{"d", payload}})
			pipe.SPublish(ctx, bus.NodeChannel("n1"), payload)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func deleteKeys(rdb *redis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = redisstore.DeletePrefix(ctx, rdb, prefix)
}

// BenchmarkJoin is a connection's routing on the real Redis: Join (route
// and announcement) then Leave, one user after another. ns/op is per
// join and leave.
//
//	go test -run '^$' -bench 'BenchmarkJoin$' -benchtime 20000x ./infra/fanoutbus/
func BenchmarkJoin(b *testing.B) {
	rdb := benchRedis(b)
	ctx := context.Background()
	prefix := fmt.Sprintf("benchjoin%d", time.Now().UnixNano())
	defer deleteKeys(rdb, prefix)
	bus, err := New(rdb, Config{Prefix: prefix, MaxLen: 1000}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	n := bus.Node("n1")
	i := 0
	for b.Loop() {
		user := fmt.Sprintf("u%d", i%1000)
		i++
		if err := n.Join(ctx, user); err != nil {
			b.Fatal(err)
		}
		if err := n.Leave(ctx, user); err != nil {
			b.Fatal(err)
		}
	}
}
