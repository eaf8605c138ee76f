package app

import (
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/fanout"
	"github.com/parley-chat/parley/infra/kafkalog"
)

// The fan-out gets each consumed record whole, Received included: without
// it a record handed off live would be judged by its producer's clock.
func TestFanoutRecordsKeepLive(t *testing.T) {
	got := fanoutRecords([]kafkalog.Consumed{
		{Partition: 1, Offset: 7, Value: []byte("a"), Received: time.Unix(5, 0)},
		{Partition: 2, Offset: 9, Value: []byte("b")},
	})
	want := []fanout.Record{{Partition: 1, Offset: 7, Value: []byte("a"), Received: time.Unix(5, 0)}, {Partition: 2, Offset: 9, Value: []byte("b")}}
	if !slices.EqualFunc(got, want, func(a, b fanout.Record) bool {
		return a.Partition == b.Partition && a.Offset == b.Offset && string(a.Value) == string(b.Value) && a.Received.Equal(b.Received)
	}) {
		t.Fatalf("records %+v, want %+v", got, want)
	}
}
