package gateway

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/parley-chat/parley/domain"
)

// recorder is a stream's out: the seqs of the frames it let through (each
// frame is its seq's decimal text), and the overflows.
type recorder struct {
	seqs      []string
	overflows int
}

func (r *recorder) out(f []byte) bool {
	if f == nil {
		r.overflows++
		return false
	}
	r.seqs = append(r.seqs, string(f))
	return true
}

func live(s *Stream, conv string, seqs ...int64) {
	for _, seq := range seqs {
		s.Deliver(domain.Delivery{ConversationID: conv, Seq: seq, Frame: []byte(itoa(seq))})
	}
}

func replay(s *Stream, conv string, seqs ...int64) {
	for _, seq := range seqs {
		s.Emit(conv, seq, []byte(itoa(seq)))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A replay that live pushes overtake by more than the paused buffer holds
// does not close the connection: the pushes past the buffer are dropped,
// CaughtUp says the replay must go on, and the second pass from the read
// model brings them, each once, in order.
func TestStreamReplayDropsLivePushesPastTheBuffer(t *testing.T) {
	r := &recorder{}
	s := NewStream(r.out, 3)
	s.Release()
	if from := s.Replay("c", 10); from != 10 {
		t.Fatalf("Replay from %d, want 10", from)
	}
	replay(s, "c", 11, 12)
	live(s, "c", 13, 14, 15, 16, 17) // 16 and 17 do not fit
	if r.overflows != 0 {
		t.Fatal("a live push past the buffer of a replaying conversation closed the connection")
	}
	if s.CaughtUp("c") {
		t.Fatal("CaughtUp after dropped pushes: want the replay to go on")
	}
	replay(s, "c", 13, 14, 15, 16, 17) // from Last: the read model has them
	if !s.CaughtUp("c") {
		t.Fatal("CaughtUp after the second pass: want true")
	}
	live(s, "c", 18)
	if want := []string{"11", "12", "13", "14", "15", "16", "17", "18"}; !slices.Equal(r.seqs, want) || r.overflows != 0 {
		t.Fatalf("out %v with %d overflows, want %v and none", r.seqs, r.overflows, want)
	}
}

// Without drops, CaughtUp lets the held pushes through after the replay,
// skipping those the replay already sent.
func TestStreamReplayCaughtUpReleasesHeldPushes(t *testing.T) {
	r := &recorder{}
	s := NewStream(r.out, 8)
	s.Release()
	s.Replay("c", 0)
	live(s, "c", 3, 4)
	replay(s, "c", 1, 2, 3)
	if !s.CaughtUp("c") {
		t.Fatal("CaughtUp without drops: want true")
	}
	if want := []string{"1", "2", "3", "4"}; !slices.Equal(r.seqs, want) {
		t.Fatalf("out %v, want %v", r.seqs, want)
	}
}

// A sync that failed abandons the replay: the conversation stays paused,
// and past the buffer the connection closes, as after Pause.
func TestStreamAbandonedReplayOverflows(t *testing.T) {
	r := &recorder{}
	s := NewStream(r.out, 3)
	s.Release()
	s.Replay("c", 10)
	live(s, "c", 11, 12, 13, 14) // 14 dropped while replaying
	s.Abandon("c")
	if r.overflows != 0 || len(r.seqs) != 0 {
		t.Fatalf("before Abandon took effect: out %v, %d overflows", r.seqs, r.overflows)
	}
	live(s, "c", 15)
	if r.overflows != 1 || len(r.seqs) != 0 {
		t.Fatalf("abandoned replay: out %v, %d overflows; want nothing out and 1 overflow", r.seqs, r.overflows)
	}
}

// A sync of conversations that are not the user's leaves nothing behind:
// each is forgotten, however many a client names. One the connection was
// given pushes of keeps its position, so none of them comes twice.
func TestStreamRefusedReplayIsForgotten(t *testing.T) {
	r := &recorder{}
	s := NewStream(r.out, 8)
	s.Release()
	for i := range 1000 {
		conv := "stranger-" + itoa(int64(i))
		s.Replay(conv, 5)
		s.Refused(conv)
	}
	live(s, "left", 1, 2)
	s.Replay("left", 0)
	live(s, "left", 3)
	s.Refused("left")
	live(s, "left", 2, 3)
	s.mu.Lock()
	n := len(s.last) + len(s.paused) + len(s.replaying) + len(s.behind) + len(s.fresh)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d entries left in the stream, want the one conversation it delivered", n)
	}
	if want := []string{"1", "2", "3"}; !slices.Equal(r.seqs, want) {
		t.Fatalf("out %v, want %v", r.seqs, want)
	}
}

// The live pushes a replay has sent already leave the paused buffer when it
// fills: a long replay into a busy group kept them, the buffer stayed full,
// every later push was dropped and the replay went round again until the
// sync timed out (and the next push closed the connection).
func TestStreamReplayPrunesWhatItSent(t *testing.T) {
	r := &recorder{}
	s := NewStream(r.out, 3)
	s.Release()
	s.Replay("c", 10)
	live(s, "c", 11, 12, 13)
	replay(s, "c", 11, 12, 13, 14, 15) // the read model, past the live ones
	live(s, "c", 16, 17, 18)
	if !s.CaughtUp("c") {
		t.Fatal("CaughtUp with room for every push not yet sent: want true")
	}
	if want := []string{"11", "12", "13", "14", "15", "16", "17", "18"}; !slices.Equal(r.seqs, want) || r.overflows != 0 {
		t.Fatalf("out %v with %d overflows, want %v and none", r.seqs, r.overflows, want)
	}
}

// What a connection holds back is bounded in bytes across its
// conversations: past MaxHeldBytes a replaying conversation's push is
// dropped (its replay goes on), and any other's closes the connection.
func TestStreamHeldIsBoundedInBytes(t *testing.T) {
	r := &recorder{}
	s := NewStream(r.out, 1000)
	s.Release()
	frame := make([]byte, 1<<20)
	for i := range 12 {
		s.Replay(fmt.Sprint("c", i), 0)
		s.Deliver(domain.Delivery{ConversationID: fmt.Sprint("c", i), Seq: 5, Frame: frame})
	}
	if r.overflows != 0 {
		t.Fatal("a replaying conversation's push past the bound closed the connection")
	}
	if s.bytes > MaxHeldBytes {
		t.Fatalf("%d bytes held, bound %d", s.bytes, MaxHeldBytes)
	}
	if s.CaughtUp("c11") {
		t.Fatal("CaughtUp after its push was dropped: want the replay to go on")
	}
	s.Pause("p", 0) // a paused conversation not replaying: past the bound, the connection closes
	s.Deliver(domain.Delivery{ConversationID: "p", Seq: 1, Frame: frame})
	if r.overflows != 1 {
		t.Fatalf("%d overflows, want the paused push past the bound to close the connection", r.overflows)
	}
	for i := range 12 {
		s.CaughtUp(fmt.Sprint("c", i))
	}
	if s.bytes != 0 {
		t.Fatalf("%d bytes counted after every replay caught up and nothing is held", s.bytes)
	}
}

// While a sync in parts holds a new connection's pushes, only those of the
// conversations no part has named yet wait: a named conversation's pushes
// and ephemeral ones (typing, presence) go their way, so a long first part
// does not fill the hold and close the connection.
func TestStreamHoldKeepsOnlyWhatIsNotNamed(t *testing.T) {
	r := &recorder{}
	s := NewStream(r.out, 3)
	defer s.HoldOn()()
	s.Replay("a", 0) // part 1 names a, from the start
	if !s.CaughtUp("a") {
		t.Fatal("CaughtUp: want true")
	}
	live(s, "a", 1, 2, 3, 4, 5)
	for range 5 {
		s.Deliver(domain.Delivery{Frame: []byte("0")}) // typing
	}
	live(s, "b", 7, 8) // not named yet: held
	if r.overflows != 0 {
		t.Fatalf("%d overflows while a part holds", r.overflows)
	}
	if want := []string{"1", "2", "3", "4", "5", "0", "0", "0", "0", "0"}; !slices.Equal(r.seqs, want) {
		t.Fatalf("out %v, want %v", r.seqs, want)
	}
	s.Release() // the last part
	if want := []string{"7", "8"}; !slices.Equal(r.seqs[10:], want) {
		t.Fatalf("after the last part: %v, want %v", r.seqs[10:], want)
	}
}

// While a sync in parts runs, another request (typing, history between
// the parts) does not end the hold: only the last part does. Before, it
// let a push of a conversation a later part names through, and that
// part's replay started after it.
func TestStreamPartsAreNotEndedByAnotherRequest(t *testing.T) {
	r := &recorder{}
	s := NewStream(r.out, 8)
	next := s.HoldOn() // part 1
	s.Replay("a", 0)
	s.CaughtUp("a")
	next()
	live(s, "b", 7) // named by part 2, not yet: held
	s.FirstRequest()
	if len(r.seqs) != 0 {
		t.Fatalf("a request between the parts let %v through", r.seqs)
	}
	s.HoldOn() // part 2, the last
	s.Replay("b", 3)
	s.Release()
	s.CaughtUp("b")
	if want := []string{"7"}; !slices.Equal(r.seqs, want) {
		t.Fatalf("after the last part: %v, want %v", r.seqs, want)
	}
}

// A hold timer that fires as HoldOn stops it (too late to stop) is stale
// and ends nothing: the sync that came holds on.
func TestStreamStaleHoldTimerEndsNothing(t *testing.T) {
	r := &recorder{}
	s := NewStream(r.out, 8)
	s.StartHold()
	s.mu.Lock()
	gen := s.holdGen // the timer armed now
	s.mu.Unlock()
	s.HoldOn()
	live(s, "b", 7)
	s.expire(gen) // it fired anyway
	if len(r.seqs) != 0 {
		t.Fatalf("a stale timer let %v through", r.seqs)
	}
	s.Release()
	if want := []string{"7"}; !slices.Equal(r.seqs, want) {
		t.Fatalf("after the release: %v, want %v", r.seqs, want)
	}
}
