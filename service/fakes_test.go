package service

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// fakeSession records how a use case drives a connection's stream, one
// line per call, and behaves as gateway.Stream does for what it returns.
type fakeSession struct {
	calls   []string
	last    map[string]int64
	behind  map[string]int // CaughtUp answers false this many times
	roomErr error
}

func newFakeSession() *fakeSession {
	return &fakeSession{last: map[string]int64{}, behind: map[string]int{}}
}

func (f *fakeSession) log(format string, a ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}
func (f *fakeSession) Release()               { f.log("release") }
func (f *fakeSession) Abandon(conv string)    { f.log("abandon %s", conv) }
func (f *fakeSession) Last(conv string) int64 { return f.last[conv] }

func (f *fakeSession) Replay(conv string, from int64) int64 {
	f.log("replay %s %d", conv, from)
	f.last[conv] = max(f.last[conv], from)
	return f.last[conv]
}

func (f *fakeSession) CaughtUp(conv string) bool {
	if f.behind[conv] > 0 {
		f.behind[conv]--
		f.last[conv] += 10 // live pushes moved on while some were dropped
		f.log("behind %s", conv)
		return false
	}
	f.log("caught up %s", conv)
	return true
}

func (f *fakeSession) Resume(conv string) int64 {
	f.log("resume %s", conv)
	return f.last[conv]
}

func (f *fakeSession) Refused(conv string) { f.log("refused %s", conv) }
func (f *fakeSession) HoldOn() func()      { f.log("hold on"); return func() {} }

func (f *fakeSession) Emit(conv string, seq int64, frame []byte) {
	if !strings.Contains(string(frame), fmt.Sprintf(`"seq":%d`, seq)) {
		f.log("bad frame %s %d: %s", conv, seq, frame)
	}
	f.log("emit %s %d", conv, seq)
	f.last[conv] = max(f.last[conv], seq)
}

func (f *fakeSession) WaitRoom(context.Context) error { return f.roomErr }

// fakeReads is a read model of a few conversations: their events by seq,
// and an error per conversation for CatchUp.
type fakeReads struct {
	t         *testing.T
	seqs      map[string][]int64
	errs      map[string]error
	positions map[string]int64
	posErr    error
}

func (f *fakeReads) CatchUp(ctx context.Context, user, conv string, after int64, emit func(projections.StoredEvent) error) (int64, error) {
	if err := f.errs[conv]; err != nil {
		return 0, err
	}
	n := int64(0)
	for _, seq := range f.seqs[conv] {
		if seq <= after {
			continue
		}
		e, err := domain.NewEvent(domain.EvMessageSent, conv, "alice", time.Unix(0, 0),
			domain.MessageSent{MessageID: fmt.Sprintf("m_%s_%d", conv, seq), ClientMsgID: "c", Body: "hi"})
		if err != nil {
			f.t.Fatal(err)
		}
		if err := emit(projections.StoredEvent{Event: e, Seq: seq}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (f *fakeReads) Positions(context.Context, string) (map[string]int64, error) {
	out := make(map[string]int64, len(f.positions))
	for k, v := range f.positions {
		out[k] = v
	}
	return out, f.posErr
}

func (f *fakeReads) Conversations(context.Context, string, projections.ConversationsQuery) (projections.ConversationPage, error) {
	panic("not used")
}

func (f *fakeReads) Search(context.Context, string, projections.SearchQuery) (projections.SearchPage, error) {
	panic("not used")
}

func (f *fakeReads) History(context.Context, string, projections.HistoryQuery) ([]domain.Message, bool, error) {
	panic("not used")
}

func (f *fakeReads) Thread(context.Context, string, projections.ThreadQuery) (projections.Thread, error) {
	panic("not used")
}

// fakePresence: shared lists who shares a conversation with the caller,
// seen who is online or was; asked records whose presence was read.
type fakePresence struct {
	shared map[string]bool
	seen   map[string]domain.Seen
	asked  []string
}

func (f *fakePresence) SharedWith(_ context.Context, _ string, others []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, u := range others {
		out[u] = f.shared[u]
	}
	return out, nil
}

func (f *fakePresence) Presence(_ context.Context, users []string) (map[string]domain.Seen, error) {
	f.asked = append(f.asked, users...)
	out := map[string]domain.Seen{}
	for _, u := range users {
		if s, ok := f.seen[u]; ok {
			out[u] = s
		}
	}
	return out, nil
}
