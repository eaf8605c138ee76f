package fanout

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// TestHandleBatchMatchesHandle: the batching path computes the same
// deliveries (recipients, order, seq, prev) as handling one event at a time,
// across membership changes in the middle of a batch.
func TestHandleBatchMatchesHandle(t *testing.T) {
	at := time.Now()
	var recs []Record
	add := func(conv, typ, actor string, payload any) {
		e, err := domain.NewEvent(typ, conv, actor, at, payload)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(e)
		recs = append(recs, Record{Partition: int32(len(recs) % 2), Offset: int64(len(recs)), Value: b})
	}
	send := func(conv, actor string) {
		add(conv, domain.EvMessageSent, actor, domain.MessageSent{MessageID: "m", ClientMsgID: "k", Body: "hi"})
	}
	add("c_1", domain.EvConversationCreated, "a", domain.ConversationCreated{Kind: "group", Members: []string{"a", "b"}})
	add("c_2", domain.EvConversationCreated, "x", domain.ConversationCreated{Kind: "group", Members: []string{"x", "y"}})
	send("c_1", "a")
	send("c_2", "x")
	send("c_1", "b")
	add("c_1", domain.EvMemberJoined, "a", domain.MemberChanged{UserID: "c"})
	send("c_1", "c")
	send("c_2", "y")
	add("c_1", domain.EvMemberLeft, "b", domain.MemberChanged{UserID: "b"})
	send("c_1", "a")
	recs = append(recs, Record{Partition: 0, Offset: int64(len(recs)), Value: []byte("not json")})
	send("c_2", "x")

	one := &fakeBus{}
	h1 := New(fakeMembers{}, one, nil)
	for _, r := range recs {
		if err := h1.Handle(context.Background(), r.Partition, r.Offset, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	batched := &fakeBus{}
	h2 := New(fakeMembers{}, batched, nil)
	// Split into two batches to cover state carried between batches.
	if err := h2.HandleBatch(context.Background(), recs[:4]); err != nil {
		t.Fatal(err)
	}
	if err := h2.HandleBatch(context.Background(), recs[4:]); err != nil {
		t.Fatal(err)
	}
	if len(batched.got) != len(one.got) {
		t.Fatalf("batched %d deliveries, one by one %d", len(batched.got), len(one.got))
	}
	for i := range one.got {
		a, b := one.got[i], batched.got[i]
		slices.Sort(a.Recipients)
		slices.Sort(b.Recipients)
		if a.Seq != b.Seq || a.Prev != b.Prev || a.ConversationID != b.ConversationID ||
			!slices.Equal(a.Recipients, b.Recipients) || string(a.Frame) != string(b.Frame) {
			t.Errorf("delivery %d: one by one %+v, batched %+v", i, a, b)
		}
	}
	if batched.batches == 0 {
		t.Error("no batch was published")
	}
}
