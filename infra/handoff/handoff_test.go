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

// On the real Redis: records offered reach a reader subscribed to their
// partitions, with their offsets and values, per partition in offer order;
// records of partitions the reader does not own, and records offered before
// it subscribed, do not (the log brings those); a reader whose partitions
// change gets the new set's records from then on.
func TestWriterToReader(t *testing.T) {
	env := testenv.New(t)
	rdb, err := redisstore.NewClient(env.Cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
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
	defer r.Close()
	mk := func(p int32, from, to int64) []kafkalog.Consumed {
		var out []kafkalog.Consumed
		for o := from; o < to; o++ {
			out = append(out, kafkalog.Consumed{Partition: p, Offset: o, Value: fmt.Appendf(nil, `{"p":%d,"o":%d}`, p, o)})
		}
		return out
	}
	readUntil := func(what string, ps []int32, want map[int32][]kafkalog.Consumed) {
		t.Helper()
		got := map[int32][]kafkalog.Consumed{}
		n := 0
		for _, v := range want {
			n += len(v)
		}
		poll.Until(t, 5*time.Second, what, func() bool {
			rs, err := r.Read(ctx, ps)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range rs {
				got[x.Partition] = append(got[x.Partition], x)
			}
			return len(got[0])+len(got[1])+len(got[2]) >= n
		})
		for p, want := range want {
			if len(got[p]) != len(want) {
				t.Fatalf("%s: partition %d: %d records, want %d", what, p, len(got[p]), len(want))
			}
			for i, x := range got[p] {
				if x.Offset != want[i].Offset || !bytes.Equal(x.Value, want[i].Value) {
					t.Fatalf("%s: partition %d record %d: %d %q, want %d %q", what, p, i, x.Offset, x.Value, want[i].Offset, want[i].Value)
				}
			}
		}
		if rs, err := r.Read(ctx, ps); err != nil || len(rs) != 0 {
			t.Fatalf("%s: then a read with nothing new: %d records, %v", what, len(rs), err)
		}
	}
	for _, x := range mk(0, 0, 5) { // before the reader subscribed: the log's
		if err := rdb.SPublish(ctx, handoff.Channel(env.Cfg.RedisPrefix, 0), handoff.Encode(x.Offset, x.Value)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if rs, err := r.Read(ctx, []int32{0, 1}); err != nil || len(rs) != 0 {
		t.Fatalf("first read: %d records, %v; want none (published before it subscribed)", len(rs), err)
	}
	w.Offer(mk(0, 5, 105))
	w.Offer(mk(1, 0, 50))
	w.Offer(mk(2, 0, 7)) // not the reader's
	readUntil("150 records handed off", []int32{0, 1}, map[int32][]kafkalog.Consumed{0: mk(0, 5, 105), 1: mk(1, 0, 50)})
	// Partition 1 is taken away and 2 assigned: 2's records from now on.
	if rs, err := r.Read(ctx, []int32{0, 2}); err != nil || len(rs) != 0 {
		t.Fatalf("read after reassignment: %d records, %v; want none yet", len(rs), err)
	}
	w.Offer(mk(1, 50, 60))
	w.Offer(mk(2, 7, 17))
	readUntil("partition 2's records", []int32{0, 2}, map[int32][]kafkalog.Consumed{2: mk(2, 7, 17)})
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []handoff.Config{{}, {Prefix: "p", Block: time.Microsecond}} {
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
