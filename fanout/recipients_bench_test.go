package fanout

import (
	"strconv"
	"testing"

	"github.com/parley-chat/parley/domain"
)

// Recipients of each event, computed by the fan-out from the membership.
//
//	go test -run '^$' -bench . -benchmem ./fanout/
func BenchmarkRecipientsAt(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		ms := map[string]domain.Membership{}
		for i := range n {
			ms["user_"+strconv.Itoa(i)] = domain.Membership{Seq: int64(i + 1), Member: i%10 != 9}
		}
		b.Run(strconv.Itoa(n)+"-members", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if len(RecipientsAt(ms, int64(n))) == 0 {
					b.Fatal("no recipients")
				}
			}
		})
	}
}
