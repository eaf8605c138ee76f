package projections_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// A record produced twice byte for byte (an at-least-once mirror of the
// topic writes its copies with the same event id) is two events of the
// log, at two seqs: the events view keeps both, whether the store
// remembers the message ids it wrote (the live projector) or not (the
// replay switch's catch-up, the dry run), which matched the rows its
// messages insert wrote by event id alone and so dropped the copy.
func TestRecordProducedTwiceKeepsBothEvents(t *testing.T) {
	pool := openPool(t)
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	var recs []projections.Record
	add := func(id, typ string, data string) {
		off := int64(len(recs))
		recs = append(recs, projections.Record{Partition: 0, Offset: off, Event: domain.Event{
			ID: id, Type: typ, ConversationID: "c1", Actor: "alice", At: at, Data: json.RawMessage(data)}})
	}
	add("e0", domain.EvConversationCreated, `{"kind":"group","title":"t","members":["alice","bob"]}`)
	add("e1", domain.EvMessageSent, `{"message_id":"m1","client_msg_id":"k1","body":"hello"}`)
	add("e1", domain.EvMessageSent, `{"message_id":"m1","client_msg_id":"k1","body":"hello"}`)
	var want []int64
	for _, r := range recs {
		want = append(want, domain.SeqOf(r.Offset))
	}
	for _, ids := range []bool{true, false} {
		for _, size := range []int{1, 3} {
			schema := freshSchema(t, pool)
			st := projections.NewStore(pool, schema, testTopic)
			if !ids {
				st = st.WithoutSentIDs()
			}
			applyAll(t, st, recs, size)
			rows, err := pool.Query(context.Background(), `SELECT seq FROM "`+schema+`".events WHERE conversation_id = 'c1' ORDER BY seq`)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for rows.Next() {
				var seq int64
				if err := rows.Scan(&seq); err != nil {
					t.Fatal(err)
				}
				got = append(got, seq)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("id memory %v, batches of %d: events at seqs %v, want %v", ids, size, got, want)
			}
		}
	}
}
