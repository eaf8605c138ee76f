package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// SIGTERM on a gateway (App.Run's context ending) stops accepting, answers
// the commands in flight, and closes clients with 1012 so they reconnect
// elsewhere; nothing acked is lost.
func TestGracefulShutdown(t *testing.T) {
	env := testenv.New(t)
	n1 := env.StartNode("gateway", "fanout", "projector")
	n2 := env.StartNode("gateway")
	a := user("a")
	ca := dial(t, env, n2, a)
	conv := createGroup(t, ca, user("b"))

	// Four senders keep commands in flight; the node stops mid-stream.
	var mu sync.Mutex
	var acked []int64
	tenAcked := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				raw, err := ca.Request(context.Background(), "message.send", map[string]any{
					"conversation_id": conv.ConversationID, "client_msg_id": fmt.Sprint("g", g, "-", i), "body": "x"})
				var we *wsclient.Error
				if errors.As(err, &we) {
					t.Errorf("a command in flight during shutdown got %v; it must be answered or not read at all", err)
				}
				if err != nil {
					return
				}
				var r msgReply
				_ = json.Unmarshal(raw, &r)
				mu.Lock()
				acked = append(acked, r.Message.Seq)
				if len(acked) >= 10 {
					once.Do(func() { close(tenAcked) })
				}
				mu.Unlock()
			}
		}()
	}
	<-tenAcked
	n2.Stop()
	wg.Wait()
	<-ca.Done()
	var ce *websocket.CloseError
	if !errors.As(ca.CloseErr, &ce) || ce.Code != 1012 {
		t.Fatalf("client closed with %v, want 1012 (reconnect elsewhere)", ca.CloseErr)
	}
	// The client reconnects to the other node and everything acked is there.
	cb := dial(t, env, n1, a)
	testenv.WaitFor(t, 20*time.Second, "acked messages in history", func() bool {
		h := request[historyReply](t, cb, "history", map[string]any{"conversation_id": conv.ConversationID, "limit": 200})
		got := map[int64]bool{}
		for _, m := range h.Messages {
			got[m.Seq] = true
		}
		for _, s := range acked {
			if !got[s] {
				return false
			}
		}
		return true
	})
	t.Logf("%d messages acked before the node stopped", len(acked))
	if _, _, err := wsclient.Dial(context.Background(), n2.WS, env.Token(a), wsclient.Options{}); err == nil {
		t.Fatal("a stopped node accepted a connection")
	}
}

// Resume while the projector is down: sync waits for the read model to
// catch up with the log rather than answer with a gap.
func TestSyncWaitsForLaggingProjector(t *testing.T) {
	env := testenv.New(t)
	n1 := env.StartNode("gateway", "fanout")
	proj := env.StartNode("projector")
	a, b := user("a"), user("b")
	ca := dial(t, env, n1, a)
	conv := createGroup(t, ca, b)
	first := send(t, ca, conv.ConversationID, "seen")
	testenv.WaitFor(t, 20*time.Second, "first message projected", func() bool {
		return env.Count(`SELECT count(*) FROM {s}.messages WHERE conversation_id=$1`, conv.ConversationID) == 1
	})
	proj.Stop()
	var want []int64
	for i := range 10 {
		want = append(want, send(t, ca, conv.ConversationID, fmt.Sprint("while down ", i)).Seq)
	}
	cb := dial(t, env, n1, b)
	type syncResult struct {
		raw json.RawMessage
		err error
	}
	res := make(chan syncResult, 1)
	go func() {
		raw, err := cb.Request(context.Background(), "sync", map[string]any{"positions": map[string]int64{conv.ConversationID: first.Seq}})
		res <- syncResult{raw, err}
	}()
	env.StartNode("projector") // a new projector takes the partitions over
	r := <-res
	if r.err != nil {
		t.Fatalf("sync: %v", r.err)
	}
	var got []int64
	for len(got) < len(want) {
		got = append(got, nextPush(t, cb, domain.PushMessageNew).Seq)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("synced %v, want %v", got, want)
		}
	}
}
