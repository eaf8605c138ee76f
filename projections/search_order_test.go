package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// Within a conversation, search pages by before_seq in seq order: sent_at
// is the sending gateway's clock, read before the append, so it can
// disagree with the log's order, and pages sorted by it but cut by seq
// skipped some matches and repeated others. Both ways of paging give
// every match once, newest first.
func TestSearchPagesInSeqOrderWithinAConversation(t *testing.T) {
	pool := openPool(t)
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	var recs []projections.Record
	add := func(typ string, payload any, sentAt time.Time) {
		data, _ := json.Marshal(payload)
		off := int64(len(recs))
		recs = append(recs, projections.Record{Partition: 0, Offset: off, Event: domain.Event{
			ID: fmt.Sprint("e", off), Type: typ, ConversationID: "c1", Actor: "alice", At: sentAt, Data: data}})
	}
	add(domain.EvConversationCreated, domain.ConversationCreated{Kind: "group", Title: "t", Members: []string{"alice", "bob"}}, at)
	// Clocks of two gateways three seconds apart: seq order m0..m5; by
	// sent_at (ties broken by seq) m1, m0, m3, m2 and m5, m4.
	for i := range 6 {
		skew := time.Duration(i) * time.Second
		if i%2 == 0 {
			skew += 3 * time.Second
		}
		add(domain.EvMessageSent, domain.MessageSent{MessageID: fmt.Sprint("m", i), ClientMsgID: fmt.Sprint("k", i), Body: "lunch plans"}, at.Add(skew))
	}
	st := projections.NewStore(pool, freshSchema(t, pool), testTopic)
	applyAll(t, st, recs, 100)
	want := []string{"m5", "m4", "m3", "m2", "m1", "m0"}
	for _, limit := range []int{1, 2, 4} {
		var got []string
		var before *int64
		for range 10 {
			page, err := st.Search(context.Background(), "bob", projections.SearchQuery{Query: "lunch", ConversationID: "c1", BeforeSeq: before, Limit: &limit})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range page.Messages {
				got = append(got, m.MessageID)
			}
			if len(page.Messages) == 0 || !page.HasMore {
				break
			}
			last := page.Messages[len(page.Messages)-1].Seq
			before = &last
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d, paged by before_seq: %v, want %v", limit, got, want)
		}
		got = nil
		cursor := ""
		for range 10 {
			page, err := st.Search(context.Background(), "bob", projections.SearchQuery{Query: "lunch", ConversationID: "c1", Cursor: cursor, Limit: &limit})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range page.Messages {
				got = append(got, m.MessageID)
			}
			if cursor = page.Next; !page.HasMore {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d, paged by cursor: %v, want %v", limit, got, want)
		}
	}
}
