package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// A client that was away while its group sent many messages resumes on the
// other node with sync and gets every one, at the pace it reads: the replay
// waits for room in the send queue instead of overflowing it (which closed
// the connection with 1008 "client reads too slowly" and made a phone
// that had been in a pocket for an hour reconnect and fail forever).
func TestLongResumeIsFlowControlled(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.RateLimit, env.Cfg.RateBurst = 100000, 100000
	// The sender's node keeps the default queue: its client gets a reply
	// and a push per send, and a queue of 16 there overflowed (1008 to the
	// sender) in 1-2 runs of 4 beside the Socket.IO tests. The fan-out
	// released no batch above 8 records in instrumented runs, so the
	// likely cause is the writer waiting for a core on a loaded machine;
	// either way it is not what this test is about.
	n1 := env.StartNode("gateway", "fanout", "projector")
	env.Cfg.SendQueue = 16 // the replay is 25 times the resuming node's queue
	n2 := env.StartNode("gateway")
	a, b := user("a"), user("b")
	ca := dial(t, env, n1, a)
	conv := createGroup(t, ca, b)
	const missed = 400
	var last int64
	for i := range missed {
		last = send(t, ca, conv.ConversationID, fmt.Sprint("m", i)).Seq
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cb, _, err := wsclient.Dial(ctx, n2.WS, env.Token(b), wsclient.Options{PushBuf: 2 * missed})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	got := 0
	done := make(chan struct{})
	go func() { // read as fast as pushes come
		defer close(done)
		for p := range cb.Pushes {
			if p.Type == domain.PushMessageNew {
				if got++; p.Seq == last {
					return
				}
			}
		}
	}()
	request[map[string]any](t, cb, "sync", map[string]any{"positions": map[string]int64{conv.ConversationID: 0}})
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("replayed %d of %d messages in 30 s (connection: %v)", got, missed, cb.CloseErr)
	}
	if got != missed {
		t.Fatalf("replayed %d messages, want %d (connection: %v)", got, missed, cb.CloseErr)
	}
	select {
	case <-cb.Done():
		t.Fatalf("the connection closed after the replay: %v", cb.CloseErr)
	default:
	}
}
