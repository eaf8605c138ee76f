package e2e

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

func dial(t *testing.T, env *testenv.Env, n *testenv.Node, user string) *wsclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := wsclient.Dial(ctx, n.WS, env.Token(user), wsclient.Options{})
	if err != nil {
		t.Fatalf("dial %s as %s: %v", n.WS, user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func request[T any](t *testing.T, c *wsclient.Client, typ string, data any) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	raw, err := c.Request(ctx, typ, data)
	if err != nil {
		t.Fatalf("%s: %v (connection: %v)", typ, err, c.CloseErr)
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s reply %s: %v", typ, raw, err)
	}
	return v
}

type convReply struct {
	Conversation domain.Conversation `json:"conversation"`
}

type msgReply struct {
	Message domain.Message `json:"message"`
}

func createGroup(t *testing.T, c *wsclient.Client, members ...string) domain.Conversation {
	t.Helper()
	return request[convReply](t, c, "conversation.create", map[string]any{"kind": "group", "title": "t", "members": members}).Conversation
}

// nextPush waits for the next push of type typ, skipping others.
func nextPush(t *testing.T, c *wsclient.Client, typ string) wsclient.Push {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case p, ok := <-c.Pushes:
			if !ok {
				t.Fatalf("connection closed waiting for %s: %v", typ, c.CloseErr)
			}
			if p.Type == typ {
				return p
			}
		case <-timeout:
			t.Fatalf("no %s push within 20s", typ)
		}
	}
}

// sendAtOnce sends the same message.send from every client concurrently and
// returns each reply's message (zero where the request failed).
func sendAtOnce(t *testing.T, clients []*wsclient.Client, conv, cmid, body string) []domain.Message {
	t.Helper()
	var wg sync.WaitGroup
	got := make([]domain.Message, len(clients))
	for i, c := range clients {
		wg.Go(func() {
			raw, err := c.Request(context.Background(), "message.send",
				map[string]any{"conversation_id": conv, "client_msg_id": cmid, "body": body})
			if err != nil {
				t.Error(err)
				return
			}
			var r msgReply
			_ = json.Unmarshal(raw, &r)
			got[i] = r.Message
		})
	}
	wg.Wait()
	return got
}
