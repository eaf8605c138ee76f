package commands

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Unit tests of the access rules (access.go) on the fakes of fakes_test.go:
// a member acts; a former member gets forbidden; anyone else not found (so
// outsiders cannot probe which conversations exist); a cache that does not
// hold the whole conversation is rebuilt from the caught-up read model.

// groupWithFormer creates alice, bob and carol's group and has carol leave.
func groupWithFormer(t *testing.T, w *world) string {
	t.Helper()
	conv := w.group("bob", "carol")
	leave := NewLeaveConversationHandler(w.log, w.redis, w.access(), w.clock)
	if err := leave.Handle(context.Background(), "carol", LeaveConversation{ConversationID: conv}); err != nil {
		t.Fatal(err)
	}
	return conv
}

// wantAccess checks RequireMember for each user (nil: a member).
func wantAccess(t *testing.T, a Access, conv string, want map[string]error) {
	t.Helper()
	for user, w := range want {
		err := a.RequireMember(context.Background(), conv, user)
		if w == nil && err != nil || w != nil && !errors.Is(err, w) {
			t.Errorf("%s: err %v, want %v", user, err, w)
		}
	}
}

var rules = map[string]error{"alice": nil, "bob": nil, "carol": domain.ErrForbidden, "mallory": domain.ErrNotFound}

// A complete cache answers alone.
func TestAccessFromCompleteCache(t *testing.T) {
	w := newWorld(t)
	conv := groupWithFormer(t, w)
	wantAccess(t, w.access(), conv, rules)
	if waits, _ := w.read.counts(); waits != 0 {
		t.Fatalf("%d read-model waits with a complete cache", waits)
	}
}

// Redis lost its data: the first check, whoever asks, waits for the read
// model, rebuilds the whole conversation into the cache and marks it
// complete; later checks answer from the cache.
func TestAccessRebuiltAfterCacheLoss(t *testing.T) {
	for first, want := range rules {
		t.Run("first "+first, func(t *testing.T) {
			w := newWorld(t)
			conv := groupWithFormer(t, w)
			w.redis.flushAll()
			a := w.access()
			wantAccess(t, a, conv, map[string]error{first: want})
			if waits, _ := w.read.counts(); waits != 1 {
				t.Fatalf("%d read-model waits, want 1", waits)
			}
			ms, complete := w.membersOf(conv)
			if !complete || len(ms) != 3 || !ms["alice"].Member || !ms["bob"].Member || ms["carol"].Member || ms["carol"].Seq == 0 {
				t.Fatalf("rebuilt cache %v complete %v: want alice, bob members, carol's leave", ms, complete)
			}
			wantAccess(t, a, conv, rules)
			if waits, _ := w.read.counts(); waits != 1 {
				t.Fatalf("%d read-model waits after the rebuild, want none more", waits)
			}
		})
	}
}

// After a loss a later change can land first (the fan-out applies a join):
// the hash is incomplete and not trusted for anyone it does not show as a
// member.
func TestAccessIncompleteCache(t *testing.T) {
	w := newWorld(t)
	conv := groupWithFormer(t, w)
	w.redis.flushAll()
	add := NewAddMemberHandler(w.log, w.redis, w.access(), w.clock)
	_, seq, err := appendEvent(context.Background(), w.log, w.clock, domain.EvMemberJoined, conv, "alice", domain.MemberChanged{UserID: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.redis.ApplyMembership(context.Background(), conv, seq, true, "dave"); err != nil { // as the fan-out does
		t.Fatal(err)
	}
	if _, complete := w.membersOf(conv); complete {
		t.Fatal("a hash holding one change is complete")
	}
	wantAccess(t, w.access(), conv, map[string]error{"carol": domain.ErrForbidden})
	wantAccess(t, w.access(), conv, map[string]error{"alice": nil, "dave": nil, "mallory": domain.ErrNotFound})
	if waits, _ := w.read.counts(); waits != 1 {
		t.Fatalf("%d read-model waits, want the one rebuild", waits)
	}
	// The rebuilt cache serves the other use cases: dave is in already.
	if err := add.Handle(context.Background(), "alice", AddMember{ConversationID: conv, UserID: "dave"}); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("adding dave again: err %v, want conflict", err)
	}
}

// A conversation nobody created is not found, and no hash is marked
// complete for it; an unavailable read model is unavailable, never
// not found.
func TestAccessUnknownOrUnavailable(t *testing.T) {
	w := newWorld(t)
	wantAccess(t, w.access(), "c_nobody", map[string]error{"alice": domain.ErrNotFound})
	if _, complete := w.membersOf("c_nobody"); complete {
		t.Fatal("an unknown conversation was marked complete")
	}
	conv := groupWithFormer(t, w)
	w.redis.flushAll()
	w.read.waitErr = domain.ErrUnavailable
	wantAccess(t, w.access(), conv, map[string]error{"alice": domain.ErrUnavailable, "mallory": domain.ErrUnavailable})
	if _, complete := w.membersOf(conv); complete {
		t.Fatal("the cache was marked complete without the read model")
	}
}

// Exists (direct conversation.create) answers from a complete cache, else
// from the caught-up read model.
func TestAccessExists(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	for _, lose := range []bool{false, true} {
		if lose {
			w.redis.flushAll()
		}
		for c, want := range map[string]bool{conv: true, "c_nobody": false} {
			if got, err := w.access().Exists(context.Background(), c); err != nil || got != want {
				t.Errorf("lost %v: Exists(%s) = %v, %v; want %v", lose, c, got, err, want)
			}
		}
	}
	if waits, _ := w.read.counts(); waits != 3 {
		t.Fatalf("%d read-model waits, want one per unknown check (3)", waits)
	}
}

// The direct conversation of a pair is created once; opening it again
// returns it from the read model.
func TestCreateDirectOnce(t *testing.T) {
	w := newWorld(t)
	h := NewCreateConversationHandler(w.log, w.redis, w.access(), w.read, w.read, w.clock)
	c1, err := h.Handle(context.Background(), "alice", CreateConversation{Kind: domain.KindDirect, Members: []string{"bob"}})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := h.Handle(context.Background(), "bob", CreateConversation{Kind: domain.KindDirect, Members: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	if c1.ConversationID != c2.ConversationID || c2.LastSeq != c1.LastSeq || w.log.len() != 1 {
		t.Fatalf("created %+v then %+v, %d events; want one conversation", c1, c2, w.log.len())
	}
}

// aliceMessage is a group with a former member (groupWithFormer), a
// message alice sent there, and the handlers that change it.
func aliceMessage(t *testing.T) (*world, string, domain.Message, EditMessageHandler, DeleteMessageHandler) {
	w := newWorld(t)
	conv := groupWithFormer(t, w)
	m := send(t, w.node(), "alice", conv, "k1", "hello")
	return w, conv, m, NewEditMessageHandler(w.log, w.access(), w.read, w.read, w.redis, w.clock),
		NewDeleteMessageHandler(w.log, w.access(), w.read, w.read, w.redis, w.clock)
}

// Only the sender edits or deletes a message, only while a member; a
// deleted message is not edited.
func TestOwnMessages(t *testing.T) {
	w, conv, m, edit, del := aliceMessage(t)
	ctx := context.Background()
	for user, want := range map[string]error{"bob": domain.ErrForbidden, "carol": domain.ErrForbidden, "mallory": domain.ErrNotFound} {
		if _, err := edit.Handle(ctx, user, EditMessage{ConversationID: conv, MessageID: m.MessageID, Body: "x"}); !errors.Is(err, want) {
			t.Errorf("%s edits: err %v, want %v", user, err, want)
		}
	}
	w.clock.Advance(time.Second)
	got, err := edit.Handle(ctx, "alice", EditMessage{ConversationID: conv, MessageID: m.MessageID, Body: "edited"})
	if err != nil || got.Body != "edited" || got.Seq != m.Seq || got.EditedAt == nil || !got.EditedAt.Equal(w.clock.Now()) {
		t.Fatalf("edit: %+v, %v", got, err)
	}
	if err := del.Handle(ctx, "alice", DeleteMessage{ConversationID: conv, MessageID: m.MessageID}); err != nil {
		t.Fatal(err)
	}
	n := w.log.len()
	if err := del.Handle(ctx, "alice", DeleteMessage{ConversationID: conv, MessageID: m.MessageID}); err != nil || w.log.len() != n {
		t.Fatalf("deleting again: err %v, %d new events; want a no-op", err, w.log.len()-n)
	}
	if _, err := edit.Handle(ctx, "alice", EditMessage{ConversationID: conv, MessageID: m.MessageID, Body: "again"}); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("editing a deleted message: err %v, want conflict", err)
	}
}

// Typing goes to the other current members only, through Redis.
func TestTypingRecipients(t *testing.T) {
	w := newWorld(t)
	conv := groupWithFormer(t, w)
	bus := &fakeBus{}
	h := NewTypingHandler(w.redis, bus, w.access(), w.clock)
	if err := h.Handle(context.Background(), "alice", Typing{ConversationID: conv}); err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(context.Background(), "carol", Typing{ConversationID: conv}); !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("a former member types: err %v", err)
	}
	if len(bus.got) != 1 || len(bus.got[0].Recipients) != 1 || bus.got[0].Recipients[0] != "bob" || bus.got[0].EventAtUnixMs != w.clock.Now().UnixMilli() {
		t.Fatalf("deliveries %+v, want one to bob", bus.got)
	}
	if w.log.len() != 2 {
		t.Fatal("typing was logged")
	}
}

// A user's typing in a conversation goes out at most once a second: the
// repeats in between are answered and not pushed, so a client sending it
// in a loop cannot make every member's connection carry its rate.
func TestTypingRepeatsAreCoalesced(t *testing.T) {
	w := newWorld(t)
	conv := groupWithFormer(t, w)
	bus := &fakeBus{}
	h := NewTypingHandler(w.redis, bus, w.access(), w.clock)
	typing := func() {
		t.Helper()
		if err := h.Handle(context.Background(), "alice", Typing{ConversationID: conv}); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		typing()
	}
	if len(bus.got) != 1 {
		t.Fatalf("10 typing at once pushed %d times, want once", len(bus.got))
	}
	w.clock.Advance(typingEvery)
	typing()
	if len(bus.got) != 2 {
		t.Fatalf("typing a second later pushed %d times in all, want 2", len(bus.got))
	}
}

// A message ends its sender's typing (clients clear the indicator on it),
// so typing again right after goes out at once.
func TestTypingAfterAMessageGoesOutAtOnce(t *testing.T) {
	w := newWorld(t)
	conv := groupWithFormer(t, w)
	bus := &fakeBus{}
	hs := New(Deps{Log: w.log, Members: w.redis, Read: w.read, Fresh: w.read, Idem: w.redis, Ephemeral: bus, Locks: w.redis, Clock: w.clock})
	typing := func() {
		t.Helper()
		if err := hs.Typing.Handle(context.Background(), "alice", Typing{ConversationID: conv}); err != nil {
			t.Fatal(err)
		}
	}
	typing()
	if _, err := hs.SendMessage.Handle(context.Background(), "alice", SendMessage{ConversationID: conv, ClientMsgID: "k1", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	typing()
	if len(bus.got) != 2 {
		t.Fatalf("typing, a message, typing within a second pushed typing %d times, want 2", len(bus.got))
	}
}

// Once its event is in the log a membership change is accepted: a cache
// write that fails after it (Redis refusing writes) is not the client's
// error. Answered unavailable, the client retried and logged it again.
func TestMembershipChangeLoggedIsAcceptedWhateverTheCache(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	ctx := context.Background()
	w.redis.before = func(op string) error {
		if op == "ApplyMembership" || op == "MarkCreated" {
			return fmt.Errorf("%w: READONLY", domain.ErrUnavailable)
		}
		return nil
	}
	before := w.log.len()
	create := NewCreateConversationHandler(w.log, w.redis, w.access(), w.read, w.read, w.clock)
	if _, err := create.Handle(ctx, "alice", CreateConversation{Kind: domain.KindGroup, Members: []string{"bob"}}); err != nil {
		t.Fatalf("create with the cache refusing writes: %v, want ok", err)
	}
	if err := NewAddMemberHandler(w.log, w.redis, w.access(), w.clock).Handle(ctx, "alice", AddMember{ConversationID: conv, UserID: "carol"}); err != nil {
		t.Fatalf("add_member with the cache refusing writes: %v, want ok", err)
	}
	if err := NewLeaveConversationHandler(w.log, w.redis, w.access(), w.clock).Handle(ctx, "bob", LeaveConversation{ConversationID: conv}); err != nil {
		t.Fatalf("leave with the cache refusing writes: %v, want ok", err)
	}
	if got := w.log.len() - before; got != 3 {
		t.Fatalf("%d events logged, want the three changes once each", got)
	}
}

// A sender's edit racing its delete from another device is serialized by
// the message's lock: the edit that comes second finds the message deleted
// (conflict) instead of being logged after the delete, where its push and
// sync carried the deleted message's new body as not deleted.
func TestEditRacingDeleteIsSerialized(t *testing.T) {
	w, conv, m, edit, del := aliceMessage(t)
	ctx := context.Background()
	gate := make(chan struct{})
	plan := w.log.next(appendPlan{gate: gate}) // the delete's append waits
	deleted := make(chan error, 1)
	go func() {
		deleted <- del.Handle(ctx, "alice", DeleteMessage{ConversationID: conv, MessageID: m.MessageID})
	}()
	<-plan.entered
	before := w.log.tries()
	edited := make(chan error, 1)
	go func() {
		_, err := edit.Handle(ctx, "alice", EditMessage{ConversationID: conv, MessageID: m.MessageID, Body: "edited"})
		edited <- err
	}()
	// Unserialized, the edit reads the message (not deleted yet) and
	// appends now; give it the chance.
	deadline := time.Now().Add(200 * time.Millisecond)
	for w.log.tries() == before && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	close(gate)
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if err := <-edited; !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("the edit racing the delete: err %v, want conflict", err)
	}
	for _, e := range w.log.upTo(-1) {
		if e.Type == domain.EvMessageEdited {
			t.Fatalf("an edit was logged: %+v", e)
		}
	}
}
