package projections

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// BenchmarkBuildBatch is the CPU side of a projector batch: reducing
// records to the argument arrays of each table's unnest statement (no
// database; BenchmarkProjector in bench_test.go measures the whole apply).
//
//	go test -run '^$' -bench BuildBatch -benchmem ./projections/
func BenchmarkBuildBatch(b *testing.B) {
	for _, size := range []int{100, 1000, 5000} {
		recs := benchRecords(b, size)
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if bb := buildBatch(recs, nil); bb.eventLog.rows+len(bb.folded) != len(recs) {
					b.Fatalf("events %d + folded %d, want %d", bb.eventLog.rows, len(bb.folded), len(recs))
				}
			}
			b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// benchRecords is a mix like live traffic: mostly sends, some reads, edits,
// deletes and membership changes over 50 conversations.
func benchRecords(b testing.TB, n int) []Record {
	b.Helper()
	at := time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)
	body := strings.Repeat("hello ", 16)
	recs := make([]Record, 0, n)
	for i := range n {
		conv := "c_" + strconv.Itoa(i%50)
		actor := "user_" + strconv.Itoa(i%500)
		var typ string
		var p any
		switch i % 20 {
		case 0:
			typ, p = domain.EvConversationCreated, domain.ConversationCreated{Kind: "group", Title: "t", Members: []string{actor, "user_x"}}
		case 1:
			typ, p = domain.EvMemberJoined, domain.MemberChanged{UserID: "user_j" + strconv.Itoa(i)}
		case 2:
			typ, p = domain.EvMemberLeft, domain.MemberChanged{UserID: "user_j" + strconv.Itoa(i-1)}
		case 3, 4:
			typ, p = domain.EvReadMarked, domain.ReadMarked{UpToSeq: int64(i)}
		case 5:
			typ, p = domain.EvMessageEdited, domain.MessageEdited{MessageID: "m_" + strconv.Itoa(i-10), MessageSeq: int64(i - 9),
				ClientMsgID: "k" + strconv.Itoa(i-10), SentAt: at, Body: body}
		case 6:
			typ, p = domain.EvMessageDeleted, domain.MessageDeleted{MessageID: "m_" + strconv.Itoa(i-11), MessageSeq: int64(i - 10)}
		default:
			typ, p = domain.EvMessageSent, domain.MessageSent{MessageID: "m_" + strconv.Itoa(i), ClientMsgID: "k" + strconv.Itoa(i), Body: body}
		}
		e, err := domain.NewEvent(typ, conv, actor, at, p)
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, Record{Partition: int32(i % 8), Offset: int64(i), Event: e})
	}
	return recs
}
