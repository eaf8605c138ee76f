package gateway

import (
	"testing"

	"github.com/parley-chat/parley/domain"
)

func TestGapDetector(t *testing.T) {
	var g gapDetector
	one := func(string) string { return "s" }
	d := func(seq, prev int64) domain.Delivery {
		return domain.Delivery{ConversationID: "c", Partition: 1, Seq: seq, Prev: prev}
	}
	steps := []struct {
		d    domain.Delivery
		want bool
	}{
		{d(10, 5), false},  // first seen: no history to compare
		{d(11, 10), false}, // contiguous
		{d(11, 10), false}, // redelivery
		{d(9, 0), false},   // a restarted fan-out replays older events
		{d(12, 11), false},
		{d(20, 15), true}, // 15 was never seen: lost deliveries
		{d(21, 20), false},
		{d(22, 0), false}, // a new fan-out process does not know prev
		{domain.Delivery{ConversationID: "c", Partition: 1}, false}, // ephemeral
	}
	for i, s := range steps {
		if got := g.missed(s.d, one); got != s.want {
			t.Fatalf("step %d (%+v): missed=%v, want %v", i, s.d, got, s.want)
		}
	}
	if g.missed(domain.Delivery{ConversationID: "c", Partition: 2, Seq: 3, Prev: 1}, one) {
		t.Fatal("another partition shares state")
	}
}
