package projections_test

import (
	"context"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// A send produced twice (a presumed-dead owner that was only slow) leaves
// one message; the conversation list still shows it as the last message,
// though the duplicate's seq is the conversation's last message seq.
func TestConversationListKeepsTheLastMessageAfterADuplicate(t *testing.T) {
	pool := openPool(t)
	var recs []projections.Record
	add := func(typ string, payload any) { recs = appendEvent(recs, "c1", typ, payload) }
	add(domain.EvConversationCreated, domain.ConversationCreated{Kind: "group", Title: "t", Members: []string{"alice", "bob"}})
	sent := domain.MessageSent{MessageID: "m1", ClientMsgID: "k1", Body: "hello"}
	add(domain.EvMessageSent, sent)
	add(domain.EvMessageSent, sent)
	for _, ids := range []bool{true, false} {
		for _, size := range []int{1, 3} {
			st := projections.NewStore(pool, freshSchema(t, pool), testTopic)
			if !ids {
				st = st.WithoutSentIDs()
			}
			applyAll(t, st, recs, size)
			page, err := st.ConversationsOf(context.Background(), "bob", "", 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Conversations) != 1 || page.Conversations[0].LastMessage == nil || page.Conversations[0].LastMessage.MessageID != "m1" {
				t.Fatalf("id memory %v, batches of %d: conversation list %+v, want c1 with m1 last", ids, size, page.Conversations)
			}
		}
	}
}
