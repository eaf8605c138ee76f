package fanout

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/domain"
)

// fakeMembers applies changes like the Redis store: latest seq wins.
type fakeMembers map[string]map[string]domain.Membership

func (f fakeMembers) ApplyMembership(_ context.Context, conv string, seq int64, member bool, users ...string) error {
	if f[conv] == nil {
		f[conv] = map[string]domain.Membership{}
	}
	for _, u := range users {
		if cur := f[conv][u]; seq > cur.Seq {
			m := domain.Membership{Seq: seq, Member: member}
			if !member && cur.Member {
				m.Joined = cur.Seq
			}
			f[conv][u] = m
		}
	}
	return nil
}

func (f fakeMembers) Memberships(_ context.Context, conv string) (map[string]domain.Membership, bool, error) {
	return f[conv], len(f[conv]) > 0, nil
}

func (f fakeMembers) MarkComplete(context.Context, string) error { return nil }
func (f fakeMembers) MarkCreated(context.Context, string) error  { return nil }

type fakeBus struct {
	got     []domain.Delivery
	batches int
}

func (b *fakeBus) PublishBatch(_ context.Context, ds []domain.Delivery) error {
	b.batches++
	b.got = append(b.got, ds...)
	return nil
}

// NodesOf puts every user on node "n1".
func (b *fakeBus) NodesOf(_ context.Context, users []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, u := range users {
		out[u] = []string{"n1"}
	}
	return out, nil
}

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
		if bus.got[i].Seq != domain.SeqOf(int64(i)) || (i > 0 && bus.got[i].Prev != domain.SeqOf(int64(i-1))) {
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

// countingMembers counts the store's reads.
type countingMembers struct {
	fakeMembers
	reads int
}

func (c *countingMembers) Memberships(ctx context.Context, conv string) (map[string]domain.Membership, bool, error) {
	c.reads++
	return c.fakeMembers.Memberships(ctx, conv)
}

// TestMembershipIsHeldInMemory: once a conversation is known, its message
// events cost no store read, and a membership change logged after the
// load still takes effect; Forget makes the next event load it again.
func TestMembershipIsHeldInMemory(t *testing.T) {
	members := &countingMembers{fakeMembers: fakeMembers{"c_1": {"a": {Seq: 1, Member: true}, "b": {Seq: 1, Member: true}}}}
	bus := &fakeBus{}
	h := New(members, bus, nil)
	ctx := context.Background()
	send := event(t, domain.EvMessageSent, "a", domain.MessageSent{MessageID: "m", ClientMsgID: "x", Body: "hi"})
	for i := range 5 {
		if err := h.Handle(ctx, 0, int64(10+i), send); err != nil {
			t.Fatal(err)
		}
	}
	if members.reads != 1 {
		t.Fatalf("store read %d times for 5 events of one conversation, want 1", members.reads)
	}
	if err := h.Handle(ctx, 0, 20, event(t, domain.EvMemberLeft, "b", domain.MemberChanged{UserID: "b"})); err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(ctx, 0, 21, send); err != nil {
		t.Fatal(err)
	}
	if got := bus.got[len(bus.got)-1].Recipients; !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after b left: recipients %v, want [a]", got)
	}
	if members.fakeMembers["c_1"]["b"].Member {
		t.Fatal("the leave was not applied to the shared store")
	}
	h.Forget([]int32{0})
	if err := h.Handle(ctx, 0, 22, send); err != nil {
		t.Fatal(err)
	}
	if members.reads != 2 {
		t.Fatalf("after Forget: %d store reads, want 2", members.reads)
	}
}

// failingBus fails its first n publishes.
type failingBus struct {
	fakeBus
	fail int
}

func (b *failingBus) PublishBatch(ctx context.Context, ds []domain.Delivery) error {
	if b.fail > 0 {
		b.fail--
		return domain.ErrUnavailable
	}
	return b.fakeBus.PublishBatch(ctx, ds)
}

// TestRetriedBatchSeesMembershipAsOfItsEvents: a batch whose publish failed
// is retried whole; a leave inside it must not hide the leaver from the
// events before the leave on the retry.
func TestRetriedBatchSeesMembershipAsOfItsEvents(t *testing.T) {
	members := fakeMembers{}
	bus := &failingBus{fail: 1}
	h := New(members, bus, nil)
	ctx := context.Background()
	recs := []Record{
		{Partition: 0, Offset: 0, Value: event(t, domain.EvConversationCreated, "a", domain.ConversationCreated{Kind: "group", Members: []string{"a", "b"}})},
		{Partition: 0, Offset: 1, Value: event(t, domain.EvMessageSent, "a", domain.MessageSent{MessageID: "m", ClientMsgID: "x", Body: "hi"})},
		{Partition: 0, Offset: 2, Value: event(t, domain.EvMemberLeft, "b", domain.MemberChanged{UserID: "b"})},
	}
	if err := h.HandleBatch(ctx, recs); err == nil {
		t.Fatal("the failing publish was not reported")
	}
	if err := h.HandleBatch(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(slices.Values(bus.got[1].Recipients)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("message before the leave: recipients %v, want [a b]", got)
	}
}

// TestRetriedBatchKeepsThePrevChain: a batch whose publish failed is
// retried chained to what was published before it, so a delivery Redis
// lost before the failure stays a gap the gateway sees.
func TestRetriedBatchKeepsThePrevChain(t *testing.T) {
	bus := &failingBus{}
	h := New(fakeMembers{}, bus, nil)
	ctx := context.Background()
	created := event(t, domain.EvConversationCreated, "a", domain.ConversationCreated{Kind: "group", Members: []string{"a", "b"}})
	sent := event(t, domain.EvMessageSent, "a", domain.MessageSent{MessageID: "m", ClientMsgID: "x", Body: "hi"})
	if err := h.HandleBatch(ctx, []Record{{Partition: 0, Offset: 0, Value: created}, {Partition: 0, Offset: 1, Value: sent}}); err != nil {
		t.Fatal(err)
	}
	bus.fail = 1
	next := []Record{{Partition: 0, Offset: 2, Value: event(t, domain.EvMessageSent, "a", domain.MessageSent{MessageID: "m2", ClientMsgID: "y", Body: "again"})}}
	if err := h.HandleBatch(ctx, next); err == nil {
		t.Fatal("the failing publish was not reported")
	}
	if err := h.HandleBatch(ctx, next); err != nil {
		t.Fatal(err)
	}
	last := bus.got[len(bus.got)-1]
	if want := domain.SeqOf(1); last.Seq != domain.SeqOf(2) || last.Prev != want {
		t.Fatalf("retried delivery seq %d prev %d, want seq %d prev %d", last.Seq, last.Prev, domain.SeqOf(2), want)
	}
}

// An event older than MaxAge (the fan-out lagged: down, or retrying, for
// minutes) is not pushed, but it keeps its place in the Prev chain: the
// next delivery names it, so a gateway that delivered neither sees the gap
// and resyncs its clients, whose sync replays it. Skipped silently, the
// clients' positions would move past it for good.
func TestEventTooOldToPushIsAGap(t *testing.T) {
	bus := &fakeBus{}
	h := New(fakeMembers{}, bus, nil)
	now := time.Now()
	h.now = func() time.Time { return now }
	at := func(when time.Time, typ string, payload any) []byte {
		e, err := domain.NewEvent(typ, "c_1", "a", when, payload)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(e)
		return b
	}
	recs := []Record{
		{Partition: 0, Offset: 0, Value: at(now, domain.EvConversationCreated, domain.ConversationCreated{Kind: "group", Members: []string{"a", "b"}})},
		{Partition: 0, Offset: 1, Value: at(now.Add(-h.MaxAge-time.Minute), domain.EvMessageSent, domain.MessageSent{MessageID: "m1", ClientMsgID: "x", Body: "lagged"})},
		{Partition: 0, Offset: 2, Value: at(now, domain.EvMessageSent, domain.MessageSent{MessageID: "m2", ClientMsgID: "y", Body: "fresh"})},
	}
	if err := h.HandleBatch(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	for _, d := range bus.got {
		if d.Seq == domain.SeqOf(1) {
			t.Fatal("an event older than MaxAge was pushed")
		}
	}
	last := bus.got[len(bus.got)-1]
	if last.Seq != domain.SeqOf(2) || last.Prev != domain.SeqOf(1) {
		t.Fatalf("the delivery after the old event: seq %d prev %d, want seq %d prev %d (the gap shown)",
			last.Seq, last.Prev, domain.SeqOf(2), domain.SeqOf(1))
	}
}

// Dropping memberships at MaxConversations drops only memberships: the
// partition's Prev chain goes on, so a delivery Redis lost just before
// still shows as a gap.
func TestMembershipEvictionKeepsThePrevChain(t *testing.T) {
	bus := &fakeBus{}
	h := New(fakeMembers{}, bus, nil)
	h.MaxConversations = 1
	ev := func(conv, typ string, payload any) []byte { return eventAt(t, conv, time.Now(), typ, payload) }
	created := domain.ConversationCreated{Kind: "group", Members: []string{"a", "b"}}
	recs := []Record{
		{Partition: 0, Offset: 0, Value: ev("c_1", domain.EvConversationCreated, created)},
		{Partition: 0, Offset: 1, Value: ev("c_2", domain.EvConversationCreated, created)}, // evicts partition 0's memberships
		{Partition: 0, Offset: 2, Value: ev("c_2", domain.EvMessageSent, domain.MessageSent{MessageID: "m1", ClientMsgID: "x", Body: "hi"})},
	}
	for _, r := range recs {
		if err := h.HandleBatch(context.Background(), []Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	if len(bus.got) != 3 {
		t.Fatalf("%d deliveries, want 3", len(bus.got))
	}
	for i := 1; i < len(bus.got); i++ {
		if bus.got[i].Prev != bus.got[i-1].Seq {
			t.Fatalf("delivery seq %d has Prev %d, want %d: the chain restarted at an eviction", bus.got[i].Seq, bus.got[i].Prev, bus.got[i-1].Seq)
		}
	}
}

// refusingReadModel answers as Postgres does: a conversation id with NUL
// or invalid UTF-8 is refused, every time; another has no members.
type refusingReadModel struct{ refused int }

func (r *refusingReadModel) WaitOffset(context.Context, int32, int64, time.Duration) error {
	return nil
}

func (r *refusingReadModel) Memberships(_ context.Context, conv string) (map[string]domain.Membership, error) {
	if utf8.ValidString(conv) && !strings.Contains(conv, "\x00") {
		return nil, nil
	}
	r.refused++
	return nil, fmt.Errorf(`%w: invalid byte sequence for encoding "UTF8" (SQLSTATE 22021)`, domain.ErrUnavailable)
}

// An event whose conversation id Postgres cannot take (NUL, invalid UTF-8:
// from a foreign or an older producer) is skipped, as the projector sets
// it aside; asking the read model about it would fail on every retry and
// stop the consumer's partitions. The events after it go out.
func TestConversationIDNotTextIsSkipped(t *testing.T) {
	read := &refusingReadModel{}
	bus := &fakeBus{}
	h := New(fakeMembers{"c_1": {"a": {Seq: 1, Member: true}}}, bus, read)
	var recs []Record
	for i, conv := range []string{`c\u0000x`, "c\xffx", "c_1"} {
		// Written by hand: encoding/json would replace the invalid byte.
		b := fmt.Appendf(nil, `{"id":"e_%d","type":"chat.read_marked.v1","conversation_id":"%s","actor":"a","at":%q,"data":{"up_to_seq":1}}`,
			i, conv, time.Now().UTC().Format(time.RFC3339Nano))
		if _, err := domain.DecodeEvent(b); err != nil {
			t.Fatalf("%q does not decode: %v", b, err)
		}
		recs = append(recs, Record{Partition: 0, Offset: int64(i + 1), Value: b})
	}
	if err := h.HandleBatch(context.Background(), recs); err != nil {
		t.Fatalf("handle: %v", err)
	}
	if read.refused != 0 {
		t.Fatalf("the read model was asked %d times about conversations it cannot hold", read.refused)
	}
	if len(bus.got) != 1 || bus.got[0].ConversationID != "c_1" {
		t.Fatalf("published %+v, want only c_1's event", bus.got)
	}
}

// A leave applied before the fan-out reached the events before it (by the
// command path, or by this fan-out before a retry or a reload) does not
// hide the leaver from them: it was a member from its join until the
// leave. Events after the leave, and before the join, do not reach it.
func TestLeaveAppliedAheadStillReachesEarlierEvents(t *testing.T) {
	ms := map[string]domain.Membership{
		"a": {Seq: 1, Member: true},
		"b": {Seq: 5, Member: false, Joined: 2},
		"c": {Seq: 5, Member: false}, // its join unknown (an older store): left out, as before
		// Left at 4 and added back at 6, both applied ahead: a member of
		// [1, 4) and from 6 on.
		"d": {Seq: 6, Member: true, PriorJoined: 1, PriorLeft: 4},
	}
	for seq, want := range map[int64][]string{1: {"a", "d"}, 2: {"a", "b", "d"}, 4: {"a", "b"}, 5: {"a"}, 6: {"a", "d"}} {
		got := RecipientsAt(ms, seq)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("recipients at %d: %v, want %v", seq, got, want)
		}
	}
	// The handler: a message at seq 3 after the cache lost the
	// conversation, with b's leave at 5 already in the store.
	bus := &fakeBus{}
	h := New(fakeMembers{"c_1": ms}, bus, nil)
	if err := h.Handle(context.Background(), 0, 2, event(t, domain.EvMessageSent, "a", domain.MessageSent{MessageID: "m", ClientMsgID: "m", Body: "x"})); err != nil {
		t.Fatal(err)
	}
	if len(bus.got) != 1 || !slices.Contains(bus.got[0].Recipients, "b") || !slices.Contains(bus.got[0].Recipients, "d") {
		t.Fatalf("published %+v, want b and d among the recipients of seq 3", bus.got)
	}
}

// The fan-out's own apply keeps the prior membership of a user added back
// too, so a retry of the batch that holds both reaches it with the events
// of its first membership.
func TestApplyKeepsThePriorMembership(t *testing.T) {
	ms := map[string]domain.Membership{}
	applyTo(ms, 1, true, "u")
	applyTo(ms, 4, false, "u")
	applyTo(ms, 6, true, "u")
	if got, want := ms["u"], (domain.Membership{Seq: 6, Member: true, PriorJoined: 1, PriorLeft: 4}); got != want {
		t.Fatalf("after join 1, leave 4, join 6: %+v, want %+v", got, want)
	}
	for seq, want := range map[int64]bool{2: true, 4: false, 5: false, 6: true} {
		if got := ms["u"].MemberAt(seq); got != want {
			t.Errorf("member at %d: %v, want %v", seq, got, want)
		}
	}
	applyTo(ms, 2, true, "v")
	applyTo(ms, 5, false, "v")
	applyTo(ms, 7, false, "v") // a second leave, from another device
	if v := ms["v"]; v.MemberAt(6) || !v.MemberAt(3) {
		t.Fatalf("after join 2, leave 5, leave 7: %+v member at 6 or not at 3", v)
	}
}

// fakeChains keeps saved chains as the Redis store does, one value a
// partition, replaced whole.
type fakeChains struct {
	saved map[int32]map[string]int64
	saves int
}

func (f *fakeChains) SaveChains(_ context.Context, chains map[int32]map[string]int64) error {
	f.saves++
	for p, c := range chains {
		f.saved[p] = maps.Clone(c)
	}
	return nil
}

func (f *fakeChains) LoadChains(_ context.Context, ps []int32) (map[int32]map[string]int64, error) {
	out := map[int32]map[string]int64{}
	for _, p := range ps {
		if c, ok := f.saved[p]; ok {
			out[p] = maps.Clone(c)
		}
	}
	return out, nil
}

// A partition that moves to another fan-out keeps its Prev chain: the next
// owner's first delivery names the last one the previous owner published,
// so a delivery lost just before the move is still a gap for the gateway.
func TestMovedPartitionKeepsThePrevChain(t *testing.T) {
	ctx := context.Background()
	chains := &fakeChains{saved: map[int32]map[string]int64{}}
	members := fakeMembers{}
	created := domain.ConversationCreated{Kind: "group", Members: []string{"a", "b"}}
	msg := func(id string) []byte {
		return event(t, domain.EvMessageSent, "a", domain.MessageSent{MessageID: id, ClientMsgID: id, Body: "hi"})
	}

	first := &fakeBus{}
	h1 := New(members, first, nil)
	h1.Chains = chains
	h1.Forget([]int32{0}) // assigned
	if err := h1.HandleBatch(ctx, []Record{{Partition: 0, Offset: 0, Value: event(t, domain.EvConversationCreated, "a", created)}, {Partition: 0, Offset: 1, Value: msg("m1")}}); err != nil {
		t.Fatal(err)
	}
	if err := h1.SaveChains(ctx); err != nil { // before the commit of offset 2
		t.Fatal(err)
	}
	if err := h1.SaveChains(ctx); err != nil || chains.saves != 1 {
		t.Fatalf("unchanged chains saved again: %d saves, err %v", chains.saves, err)
	}
	h1.Forget([]int32{0}) // revoked

	second := &fakeBus{}
	h2 := New(members, second, nil)
	h2.Chains = chains
	h2.Forget([]int32{0}) // assigned: resumes at the committed offset 2
	if err := h2.HandleBatch(ctx, []Record{{Partition: 0, Offset: 2, Value: msg("m2")}}); err != nil {
		t.Fatal(err)
	}
	last := first.got[len(first.got)-1]
	if len(second.got) != 1 || second.got[0].Prev != last.Seq {
		t.Fatalf("new owner's first delivery %+v, want Prev %d (the previous owner's last)", second.got, last.Seq)
	}

	// A handler that forgot the partition again loads it again.
	h1.Forget(nil)
	if err := h2.SaveChains(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h1.HandleBatch(ctx, []Record{{Partition: 0, Offset: 3, Value: msg("m3")}}); err != nil {
		t.Fatal(err)
	}
	if got := first.got[len(first.got)-1]; got.Prev != second.got[0].Seq {
		t.Fatalf("delivery after the partition came back has Prev %d, want %d", got.Prev, second.got[0].Seq)
	}
}

// routedBus routes users to the nodes of its map (changed between batches).
type routedBus struct {
	fakeBus
	on map[string][]string
}

func (b *routedBus) NodesOf(_ context.Context, users []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, u := range users {
		out[u] = b.on[u]
	}
	return out, nil
}

// A chain without a delivery for chainIdle is not saved (nor kept): the
// node ids of gateways long gone do not pile up in every partition's chain.
func TestIdleChainsAreDropped(t *testing.T) {
	ctx := context.Background()
	chains := &fakeChains{saved: map[int32]map[string]int64{}}
	bus := &routedBus{on: map[string][]string{"a": {"gone"}, "b": {"gone"}}}
	clock := time.Now()
	h := New(fakeMembers{}, bus, nil)
	h.Chains, h.MaxAge = chains, 0
	h.now = func() time.Time { return clock }
	created := domain.ConversationCreated{Kind: "group", Members: []string{"a", "b"}}
	if err := h.HandleBatch(ctx, []Record{{Partition: 0, Offset: 0, Value: event(t, domain.EvConversationCreated, "a", created)}}); err != nil {
		t.Fatal(err)
	}
	if err := h.SaveChains(ctx); err != nil || chains.saved[0]["gone"] == 0 {
		t.Fatalf("saved %v, err %v: want the chain of node gone", chains.saved, err)
	}
	clock = clock.Add(chainIdle + time.Minute)
	bus.on = map[string][]string{"a": {"n1"}, "b": {"n1"}}
	msg := event(t, domain.EvMessageSent, "a", domain.MessageSent{MessageID: "m1", ClientMsgID: "m1", Body: "hi"})
	if err := h.HandleBatch(ctx, []Record{{Partition: 0, Offset: 1, Value: msg}}); err != nil {
		t.Fatal(err)
	}
	if err := h.SaveChains(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"n1": domain.SeqOf(1)}
	if !maps.Equal(chains.saved[0], want) {
		t.Fatalf("saved chain %v, want %v", chains.saved[0], want)
	}
}

// A record that came on the live hand-off is judged by when it was
// received, on the fan-out's clock, not by its producer's stamp: a node
// whose clock ran minutes behind made each of its sends a gap (and every
// gateway's clients resync). One received long ago (held behind a gap, a
// stalled fan-out) is still too old to push.
func TestLiveRecordIsJudgedByWhenItCame(t *testing.T) {
	bus := &fakeBus{}
	h := New(fakeMembers{}, bus, nil)
	now := time.Now()
	h.now = func() time.Time { return now }
	skewed := now.Add(-h.MaxAge - time.Minute) // the producer's clock
	ev := func(typ string, payload any) []byte { return eventAt(t, "c_1", skewed, typ, payload) }
	msg := func(id string) []byte {
		return ev(domain.EvMessageSent, domain.MessageSent{MessageID: id, ClientMsgID: id, Body: id})
	}
	created := domain.ConversationCreated{Kind: "group", Members: []string{"a", "b"}}
	recs := []Record{
		{Partition: 0, Offset: 0, Value: ev(domain.EvConversationCreated, created), Received: now},
		{Partition: 0, Offset: 1, Value: msg("just-received"), Received: now.Add(-time.Second)},
		{Partition: 0, Offset: 2, Value: msg("from-the-log")},
		{Partition: 0, Offset: 3, Value: msg("received-long-ago"), Received: now.Add(-h.MaxAge - time.Second)},
	}
	if err := h.HandleBatch(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	var pushed []int64
	for _, d := range bus.got {
		pushed = append(pushed, d.Seq)
	}
	if want := []int64{domain.SeqOf(0), domain.SeqOf(1)}; !slices.Equal(pushed, want) {
		t.Fatalf("pushed seqs %v, want %v (the two received just now)", pushed, want)
	}
}

// eventAt is an event of conv by "a" stamped when, encoded as logged.
func eventAt(t *testing.T, conv string, when time.Time, typ string, payload any) []byte {
	t.Helper()
	e, err := domain.NewEvent(typ, conv, "a", when, payload)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(e)
	return b
}
