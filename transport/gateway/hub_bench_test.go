package gateway

import (
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/parley-chat/parley/domain"
)

// Fan-out routing on a gateway: one delivery from the bus to the local
// connections of its recipients, through each connection's ordering Stream.
//
//	go test -run '^$' -bench . -benchmem ./transport/gateway/

type countingClient struct {
	user string
	n    atomic.Int64
}

func (c *countingClient) UserID() string            { return c.user }
func (c *countingClient) Deliver(d domain.Delivery) { c.n.Add(1) }

// BenchmarkHubDeliver routes deliveries to 10 recipients on a hub holding
// conns connections (one per user); half the recipients are local, as with
// two gateway nodes.
func BenchmarkHubDeliver(b *testing.B) {
	for _, conns := range []int{1_000, 10_000, 100_000} {
		b.Run(strconv.Itoa(conns)+"-conns", func(b *testing.B) {
			h := NewHub(0, 0)
			h.StreamOf = func(string) string { return "s" }
			for i := range conns {
				if err := h.Register(&countingClient{user: "u" + strconv.Itoa(i)}); err != nil {
					b.Fatal(err)
				}
			}
			var ds []domain.Delivery
			for g := range 1000 {
				d := domain.Delivery{ConversationID: "c" + strconv.Itoa(g), Frame: []byte(`{"type":"message.new"}`)}
				for k := range 5 { // five members here, five on the other node
					u := strconv.Itoa((g*5 + k) % conns)
					d.Recipients = append(d.Recipients, "u"+u, "remote-u"+u)
				}
				ds = append(ds, d)
			}
			seq := int64(0)
			b.ReportAllocs()
			for b.Loop() {
				seq++
				d := ds[seq%int64(len(ds))]
				d.Seq, d.Prev = seq, seq-1
				h.Deliver(d)
			}
		})
	}
}

// BenchmarkStreamDeliver is one connection's ordering filter.
func BenchmarkStreamDeliver(b *testing.B) {
	s := NewStream(func([]byte) bool { return true }, 256)
	s.Release()
	frame := []byte(`{"type":"message.new"}`)
	convs := []string{"c1", "c2", "c3", "c4"}
	seq := int64(0)
	b.ReportAllocs()
	for b.Loop() {
		seq++
		s.Deliver(domain.Delivery{ConversationID: convs[seq%4], Seq: seq, Frame: frame})
	}
}
