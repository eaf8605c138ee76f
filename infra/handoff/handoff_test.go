package handoff_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/infra/handoff"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/internal/testenv"
)

// On the real Redis: records offered reach a reader, with their offsets
// and values, per partition in offer order. What was offered before the
// reader subscribed comes from the streams; what came after, from the
// channels, once. A partition set that changes, or a subscription that
// broke and came back, has its streams read whole again (the sequencer
// drops what was released before), so nothing offered in between is lost.
func TestWriterToReader(t *testing.T) {
	rdb, w, r, prefix, name := pair(t)
	ctx := context.Background()
	read := func(ps ...int32) []kafkalog.Consumed {
		t.Helper()
		rs, err := r.Read(ctx, ps)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	w.Offer(mk(0, 0, 5)) // before the reader subscribed: in the stream only
	poll.Until(t, 5*time.Second, "the first records written", func() bool {
		n, _ := rdb.XLen(ctx, handoff.Stream(prefix, 0)).Result()
		return n == 5
	})
	before := time.Now()
	rs := read(0, 1)
	if !sameRecords(rs, mk(0, 0, 5)) {
		t.Fatalf("first read: %v, want partition 0's first 5 from its stream", offsets(rs))
	}
	for _, x := range rs {
		if !x.Received.IsZero() {
			t.Fatalf("record %d read from the stream's backlog is stamped as received live", x.Offset)
		}
	}
	// Subscribed now: the channels bring the rest, each record once.
	w.Offer(mk(0, 5, 105))
	w.Offer(mk(1, 0, 50))
	got := map[int32][]kafkalog.Consumed{}
	poll.Until(t, 5*time.Second, "150 records handed off", func() bool {
		for _, x := range read(0, 1) {
			got[x.Partition] = append(got[x.Partition], x)
		}
		return len(got[0]) >= 100 && len(got[1]) >= 50
	})
	if !sameRecords(got[0], mk(0, 5, 105)) || !sameRecords(got[1], mk(1, 0, 50)) {
		t.Fatalf("live: partition 0 %v, partition 1 %v; want 5-104 and 0-49, once, in order", offsets(got[0]), offsets(got[1]))
	}
	for _, x := range append(got[0], got[1]...) {
		if x.Received.Before(before) || x.Received.After(time.Now()) {
			t.Fatalf("record %d/%d from the channel stamped received at %v, want between %v and now", x.Partition, x.Offset, x.Received, before)
		}
	}
	if rs := read(0, 1); len(rs) != 0 {
		t.Fatalf("a read with nothing new: %v", offsets(rs))
	}
	// Partition 1 is taken away, then assigned again: both streams are
	// read whole, and what was offered while 1 was not read is there.
	read(0)
	w.Offer(mk(1, 50, 60))
	readWhole(t, read, map[int32]int64{0: 105, 1: 60}, "after reassignment")
	// The subscription's connection is killed: go-redis subscribes again,
	// and the reader reads the streams whole (what was published while it
	// was away is in them).
	resubscribed := testutil.ToFloat64(metrics.HandoffResubscribes)
	kill(t, rdb, name)
	w.Offer(mk(1, 60, 70))
	readWhole(t, read, map[int32]int64{0: 105, 1: 70}, "after the broken subscription")
	if got := testutil.ToFloat64(metrics.HandoffResubscribes) - resubscribed; got < 1 {
		t.Errorf("parley_handoff_resubscribes_total rose by %v, want at least 1", got)
	}
}

// pair is a hand-off writer and reader on the real Redis, under a fresh
// prefix; name is the reader's client name (for kill).
func pair(t *testing.T) (rdb *redis.Client, w *handoff.Writer, r *handoff.Reader, prefix, name string) {
	t.Helper()
	env := testenv.New(t)
	opt, err := redis.ParseURL(env.Cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	prefix = env.Cfg.RedisPrefix
	name = strings.ReplaceAll(prefix, ":", "_") + "_reader"
	readOpt := *opt
	readOpt.ClientName = name
	rdb, readRdb := redis.NewClient(opt), redis.NewClient(&readOpt)
	cfg := handoff.Config{Prefix: prefix, Block: 50 * time.Millisecond}
	wb := redisstore.NewWriteBehind(rdb, 1024, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if w, err = handoff.NewWriter(wb, cfg); err != nil {
		t.Fatal(err)
	}
	if r, err = handoff.NewReader(readRdb, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		wb.Close()
		_, _ = redisstore.DeletePrefix(context.Background(), rdb, prefix)
		rdb.Close()
		readRdb.Close()
	})
	return rdb, w, r, prefix, name
}

// mk is partition p's records [from, to).
func mk(p int32, from, to int64) []kafkalog.Consumed {
	var out []kafkalog.Consumed
	for o := from; o < to; o++ {
		out = append(out, kafkalog.Consumed{Partition: p, Offset: o, Value: fmt.Appendf(nil, `{"p":%d,"o":%d}`, p, o)})
	}
	return out
}

// A catch-up reads the streams a page at a time, whatever their number:
// a stream's records may be large, and a fan-out assigned every
// partition reads them all at once. Every record comes, in order.
func TestCatchUpIsPaged(t *testing.T) {
	rdb, w, r, prefix, _ := pair(t)
	ctx := context.Background()
	ps := []int32{0, 1, 2, 3, 4, 5, 6, 7}
	for _, p := range ps { // one partition at a time: the write-behind queue holds 1024
		w.Offer(mk(p, 0, 300))
		poll.Until(t, 5*time.Second, "the records written", func() bool {
			n, _ := rdb.XLen(ctx, handoff.Stream(prefix, p)).Result()
			return n == 300
		})
	}
	got := map[int32][]kafkalog.Consumed{}
	for reads := 0; len(got) < len(ps) || slices.ContainsFunc(ps, func(p int32) bool { return len(got[p]) < 300 }); reads++ {
		if reads > 100 {
			t.Fatalf("the streams not read whole after %d reads", reads)
		}
		rs, err := r.Read(ctx, ps)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) > handoff.ReadBatch {
			t.Fatalf("a read returned %d records, the page is %d", len(rs), handoff.ReadBatch)
		}
		for _, x := range rs {
			got[x.Partition] = append(got[x.Partition], x)
		}
	}
	for _, p := range ps {
		if !sameRecords(got[p], mk(p, 0, 300)) {
			t.Fatalf("partition %d: %v, want 0-299 once, in order", p, offsets(got[p]))
		}
	}
}

// readWhole reads until every offset below want[p] of each partition p came
// (a record may come twice, from the channel and from the stream: the
// sequencer keeps the first).
func readWhole(t *testing.T, read func(...int32) []kafkalog.Consumed, want map[int32]int64, what string) {
	t.Helper()
	seen := map[int32]map[int64]bool{}
	ps := make([]int32, 0, len(want))
	for p := range want {
		seen[p] = map[int64]bool{}
		ps = append(ps, p)
	}
	slices.Sort(ps)
	complete := func() bool {
		for p, n := range want {
			for o := range n {
				if !seen[p][o] {
					return false
				}
			}
		}
		return true
	}
	poll.Until(t, 5*time.Second, "both streams whole "+what, func() bool {
		for _, x := range read(ps...) {
			seen[x.Partition][x.Offset] = true
		}
		return complete()
	})
}

func sameRecords(got, want []kafkalog.Consumed) bool {
	return slices.EqualFunc(got, want, func(a, b kafkalog.Consumed) bool {
		return a.Partition == b.Partition && a.Offset == b.Offset && bytes.Equal(a.Value, b.Value)
	})
}

func offsets(rs []kafkalog.Consumed) []string {
	out := make([]string, len(rs))
	for i, x := range rs {
		out[i] = fmt.Sprintf("%d/%d", x.Partition, x.Offset)
	}
	return out
}

// kill closes the connections of the client named name.
func kill(t *testing.T, rdb *redis.Client, name string) {
	t.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " name="+name+" ") {
			id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
			if rdb.Do(context.Background(), "CLIENT", "KILL", "ID", id).Err() == nil {
				killed++
			}
		}
	}
	if killed == 0 {
		t.Fatal("no connection of the reader to kill")
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
