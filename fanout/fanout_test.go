package fanout

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// fakeMembers applies changes like the Redis store: latest seq wins.
type fakeMembers map[string]map[string]domain.Membership

func (f fakeMembers) ApplyMembership(_ context.Context, conv string, seq int64, member bool, users ...string) error {
	if f[conv] == nil {
		f[conv] = map[string]domain.Membership{}
	}
	for _, u := range users {
		if seq > f[conv][u].Seq {
			f[conv][u] = domain.Membership{Seq: seq, Member: member}
		}
	}
	return nil
}

func (f fakeMembers) Memberships(_ context.Context, conv string) (map[string]domain.Membership, bool, error) {
	return f[conv], len(f[conv]) > 0, nil
}

func (f fakeMembers) MarkComplete(context.Context, string) error { return nil }
func (f fakeMembers) MarkCreated(context.Context, string) error  { return nil }

type fakeBus struct{ got []domain.Delivery }

func (b *fakeBus) Publish(_ context.Context, d domain.Delivery) error {
	b.got = append(b.got, d)
	return nil
}
func (b *fakeBus) Stream(string) string { return "s" }

func event(t *testing.T, typ string, actor string, payload any) []byte {
	t.Helper()
	e, err := domain.NewEvent(typ, "c_1", actor, time.Now(), payload)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(e)
	return b
}

func TestRecipientsFollowTheLog(t *testing.T) {
	members, bus := fakeMembers{}, &fakeBus{}
	h := New(members, bus, nil)
	ctx := context.Background()
	steps := []struct {
		value []byte
		want  []string
	}{
		{event(t, domain.EvConversationCreated, "a", domain.ConversationCreated{Kind: "group", Members: []string{"a", "b"}}), []string{"a", "b"}},
		{event(t, domain.EvMessageSent, "a", domain.MessageSent{MessageID: "m1", ClientMsgID: "x", Body: "hi"}), []string{"a", "b"}},
		{event(t, domain.EvMemberJoined, "a", domain.MemberChanged{UserID: "c"}), []string{"a", "b", "c"}},
		{event(t, domain.EvMemberLeft, "b", domain.MemberChanged{UserID: "b"}), []string{"a", "b", "c"}}, // the leaver hears its leave
		{event(t, domain.EvMessageSent, "a", domain.MessageSent{MessageID: "m2", ClientMsgID: "y", Body: "bye"}), []string{"a", "c"}},
	}
	for i, s := range steps {
		if err := h.Handle(ctx, 0, int64(i), s.value); err != nil {
			t.Fatal(err)
		}
		got := slices.Sorted(slices.Values(bus.got[i].Recipients))
		if !slices.Equal(got, s.want) {
			t.Fatalf("step %d: recipients %v, want %v", i, got, s.want)
		}
		if bus.got[i].Seq != int64(i)+1 || (i > 0 && bus.got[i].Prev != int64(i)) {
			t.Fatalf("step %d: seq %d prev %d", i, bus.got[i].Seq, bus.got[i].Prev)
		}
	}
}

func TestJoinAppliedAheadIsNotARecipientOfEarlierEvents(t *testing.T) {
	members := fakeMembers{"c_1": {"a": {Seq: 1, Member: true}, "late": {Seq: 50, Member: true}}}
	if got := RecipientsAt(members["c_1"], 10); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("recipients at 10: %v", got)
	}
}

func TestPoisonEventIsSkipped(t *testing.T) {
	bus := &fakeBus{}
	if err := New(fakeMembers{}, bus, nil).Handle(context.Background(), 0, 0, []byte("not json")); err != nil || len(bus.got) != 0 {
		t.Fatalf("poison: err %v, published %d", err, len(bus.got))
	}
}
