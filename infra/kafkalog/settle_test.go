package kafkalog

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ProduceSync lists results in the order they completed, which across
// partitions is not the records' order: each send gets its own record's
// outcome, so a record that failed is never acked as written.
func TestSettleMatchesResultsByRecord(t *testing.T) {
	for _, n := range []int{3, 40} { // the small batches' scan and the map
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			batch := make([]*pendingSend, n)
			res := make(kgo.ProduceResults, n)
			for i := range batch {
				batch[i] = &pendingSend{rec: &kgo.Record{}, done: make(chan error, 1)}
				var err error
				if i%2 == 1 {
					err = fmt.Errorf("record %d failed", i)
				}
				res[n-1-i] = kgo.ProduceResult{Record: batch[i].rec, Err: err} // reversed
			}
			settle(batch, res)
			for i, s := range batch {
				err := <-s.done
				if (i%2 == 1) != (err != nil) || err != nil && err.Error() != fmt.Sprintf("record %d failed", i) {
					t.Fatalf("send %d got %v", i, err)
				}
			}
		})
	}
	lost := &pendingSend{rec: &kgo.Record{}, done: make(chan error, 1)}
	settle([]*pendingSend{lost}, nil)
	if err := <-lost.done; !errors.Is(err, errNoResult) {
		t.Fatalf("a record without a result got %v, want errNoResult", err)
	}
}
