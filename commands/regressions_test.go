package commands

import (
	"context"
	"testing"

	"github.com/parley-chat/parley/domain"
)

// Was a bug (found by these fakes): a send presumed dead completes late, after a takeover appended
// and completed: its Complete (a plain SET) overwrites the takeover's
// record, so every later resend answers a seq the read model does not
// hold the message at (the read model keeps the first append's row).
func TestLateCompletionKeepsTheTakeoversRecord(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	plan := w.log.next(appendPlan{gate: make(chan struct{})})
	ra := goSend(w.node(), context.Background(), "alice", conv, "k1", "hello")
	waitClosed(t, plan.entered, "the original never produced")
	b := w.drive(t, w.sendFn("alice", conv, "k1", "hello"))[0]
	close(plan.gate)
	a := recv(t, ra)
	if a.err != nil || b.err != nil {
		t.Fatal(a.err, b.err)
	}
	_ = w.read.WaitProjected(context.Background(), conv)
	row, _ := w.read.byClientID(conv, "alice", "k1")
	resend := send(t, w.node(), "alice", conv, "k1", "hello")
	if resend.Seq != row.Seq {
		t.Fatalf("resend answers seq %d; the read model has the message at seq %d (takeover acked %d, original %d)",
			resend.Seq, row.Seq, b.m.Seq, a.m.Seq)
	}
}

// Was a bug (found by these fakes): the PendingStale deadline is counted from when a waiter started,
// not from when the record it sees was written. Two retries wait for a
// dead node; the first to time out takes the record over (p:<id>/<n>) and
// produces; the second, whose deadline passed while that produce is in
// flight, reads the new takeover record, finds it "stale" at once, finds
// nothing in the read model yet, takes it over in turn and produces again.
func TestFreshTakeoverIsNotStale(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	w.redis.setRecord(conv, "alice", "k1", "p:m_dead")
	plan := w.log.next(appendPlan{gate: make(chan struct{})}) // retry 1's takeover produce
	ra := goSend(w.node(), context.Background(), "alice", conv, "k1", "retry 1")
	w.clock.waitForWaiter(t)
	w.clock.Advance(pendingPoll) // retry 2 starts one poll later
	rb := goSend(w.node(), context.Background(), "alice", conv, "k1", "retry 2")

	// Time passes while both wait, until retry 1 times out and produces.
	for produced := false; !produced; {
		n, changed := w.clock.state()
		if n == 2 {
			w.clock.Advance(pendingPoll)
			continue
		}
		select {
		case <-plan.entered:
			produced = true
		case <-changed:
		}
	}
	// Retry 2 polls once while that produce is in flight.
	var b sendResult
	bDone := false
	step := func() { // one poll of retry 2, or its end
		for {
			n, changed := w.clock.state()
			if n >= 1 {
				w.clock.Advance(pendingPoll)
				return
			}
			select {
			case b = <-rb:
				bDone = true
				return
			case <-changed:
			}
		}
	}
	step()
	step() // it either waits again (right) or produced and returned
	close(plan.gate)
	a := recv(t, ra)
	for !bDone {
		step()
	}
	if a.err != nil || b.err != nil {
		t.Fatal(a.err, b.err)
	}
	if evs := w.log.sent(conv, "k1"); len(evs) != 1 {
		t.Fatalf("%d appends of k1 reached the log, want 1 (retry 1 acked seq %d, retry 2 seq %d)", len(evs), a.m.Seq, b.m.Seq)
	}
}

// Was a bug (found by these fakes): after a Redis data loss a join landing first (the fan-out,
// behind the log, applies an old member.joined) makes the incomplete hash
// say "member" for a user who left since; RequireMember trusts a member
// answer from an incomplete hash (docs/architecture.md says it answers
// from a complete hash only), so the former member may send.
func TestIncompleteHashDoesNotTrustAStaleJoin(t *testing.T) {
	w := newWorld(t)
	conv := w.group("bob")
	ctx := context.Background()
	_, joined, _ := appendEvent(ctx, w.log, w.clock, domain.EvMemberJoined, conv, "alice", domain.MemberChanged{UserID: "carol"})
	_ = w.redis.ApplyMembership(ctx, conv, joined, true, "carol")
	leave := NewLeaveConversationHandler(w.log, w.redis, w.access(), w.clock)
	if err := leave.Handle(ctx, "carol", LeaveConversation{ConversationID: conv}); err != nil {
		t.Fatal(err)
	}
	w.redis.flushAll()
	_ = w.redis.ApplyMembership(ctx, conv, joined, true, "carol") // the fan-out, behind the log
	_, err := w.node().Handle(ctx, "carol", SendMessage{ConversationID: conv, ClientMsgID: "k1", Body: "after I left"})
	if err == nil {
		t.Fatalf("a former member sent after a Redis loss (the read model says carol left: %v)", w.log.sent(conv, "k1")[0].Seq)
	}
}
