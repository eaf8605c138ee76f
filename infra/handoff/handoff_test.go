package handoff_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/parley-chat/parley/infra/handoff"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/internal/testenv"
)

// On the real Redis: records offered reach a reader, with their offsets
// and values, per partition in offer order; a partition read for the first
// time, or again after it was not read, is read from its stream's oldest
// entry (the sequencer drops what was handled before).
func TestWriterToReader(t *testing.T) {
	env := testenv.New(t)
	rdb, err := redisstore.NewClient(env.Cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = redisstore.DeletePrefix(context.Background(), rdb, env.Cfg.RedisPrefix)
		rdb.Close()
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := handoff.Config{Prefix: env.Cfg.RedisPrefix, Block: 50 * time.Millisecond}
	wb := redisstore.NewWriteBehind(rdb, 1024, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer wb.Close()
	w, err := handoff.NewWriter(wb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := handoff.NewReader(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(p int32, from, to int64) []kafkalog.Consumed {
		var out []kafkalog.Consumed
		for o := from; o < to; o++ {
			out = append(out, kafkalog.Consumed{Partition: p, Offset: o, Value: fmt.Appendf(nil, `{"p":%d,"o":%d}`, p, o)})
		}
		return out
	}
	w.Offer(mk(0, 0, 5)) // before the reader's first read
	poll.Until(t, 5*time.Second, "the first records written", func() bool {
		n, _ := rdb.XLen(ctx, handoff.Stream(env.Cfg.RedisPrefix, 0)).Result()
		return n == 5
	})
	w.Offer(mk(0, 5, 105))
	w.Offer(mk(1, 0, 50))
	got := map[int32][]kafkalog.Consumed{}
	poll.Until(t, 5*time.Second, "150 records handed off", func() bool {
		rs, err := r.Read(ctx, []int32{0, 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range rs {
			got[x.Partition] = append(got[x.Partition], x)
		}
		return len(got[0]) == 105 && len(got[1]) == 50
	})
	for p, want := range map[int32][]kafkalog.Consumed{0: mk(0, 0, 105), 1: mk(1, 0, 50)} {
		for i, x := range got[p] {
			if x.Offset != want[i].Offset || !bytes.Equal(x.Value, want[i].Value) {
				t.Fatalf("partition %d record %d: %d %q, want %d %q", p, i, x.Offset, x.Value, want[i].Offset, want[i].Value)
			}
		}
	}
	if rs, err := r.Read(ctx, []int32{0, 1}); err != nil || len(rs) != 0 {
		t.Fatalf("a read with nothing new: %d records, %v", len(rs), err)
	}
	// Partition 1 is taken away, then assigned again: it is read whole.
	if _, err := r.Read(ctx, []int32{0}); err != nil {
		t.Fatal(err)
	}
	if rs, err := r.Read(ctx, []int32{0, 1}); err != nil || len(rs) != 50 || rs[0].Offset != 0 {
		t.Fatalf("read after reassignment: %d records, %v; want partition 1's 50", len(rs), err)
	}
	// Another set of the same size in between: both are read whole again.
	if _, err := r.Read(ctx, []int32{2, 3}); err != nil {
		t.Fatal(err)
	}
	if rs, err := r.Read(ctx, []int32{0, 1}); err != nil || len(rs) != 155 {
		t.Fatalf("read after a swap of partitions: %d records, %v; want all 155", len(rs), err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []handoff.Config{{}, {Prefix: "p", MaxLen: 3, Block: time.Second}, {Prefix: "p", MaxLen: 100, Block: time.Microsecond}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: valid", c)
		}
	}
	if _, err := handoff.NewReader(nil, handoff.Config{Prefix: "p"}); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(handoff.Encode(0, []byte(`{}`)))
	f.Add(handoff.Encode(1<<40, nil))
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		off, v, err := handoff.Decode(b)
		if err != nil {
			return
		}
		if off < 0 {
			t.Fatalf("negative offset %d", off)
		}
		o2, v2, err := handoff.Decode(handoff.Encode(off, v))
		if err != nil || o2 != off || !bytes.Equal(v2, v) {
			t.Fatalf("round trip of %d %q: %d %q %v", off, v, o2, v2, err)
		}
	})
}
