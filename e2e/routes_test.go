package e2e

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// The fan-out caches which nodes hold a user's connections. A user who
// moves between nodes still gets every message live where it is connected
// now, from its connection's first request on: the cache learns of each
// move before the next message is fanned out.
func TestDeliveryFollowsAUserAcrossNodes(t *testing.T) {
	env := testenv.New(t)
	n1 := env.StartNode("gateway", "fanout", "projector")
	n2 := env.StartNode("gateway")
	alice := dial(t, env, n1, "alice")
	bobOn1 := dial(t, env, n1, "bob")
	conv := createGroup(t, alice, "bob")
	seen := nextPush(t, bobOn1, domain.PushConversationCreated).Seq

	sent := 0
	send := func() int64 {
		t.Helper()
		sent++
		return request[msgReply](t, alice, "message.send", map[string]any{"conversation_id": conv.ConversationID,
			"client_msg_id": fmt.Sprintf("m%d", sent), "body": fmt.Sprintf("hello %d", sent)}).Message.Seq
	}
	receive := func(c *wsclient.Client, where string, seq int64) {
		t.Helper()
		var m domain.Message
		if err := json.Unmarshal(nextPush(t, c, domain.PushMessageNew).Data, &m); err != nil {
			t.Fatal(err)
		}
		if m.Seq != seq {
			t.Fatalf("bob on %s: message seq %d, want %d", where, m.Seq, seq)
		}
		seen = seq
	}
	connect := func(n *testenv.Node) *wsclient.Client {
		t.Helper()
		c := dial(t, env, n, "bob")
		request[map[string]any](t, c, "sync", map[string]any{"positions": map[string]int64{conv.ConversationID: seen}})
		return c
	}

	seq := send() // the fan-out routes bob to node 1 (and caches that)
	receive(bobOn1, "node 1", seq)

	bobOn2 := connect(n2)
	seq = send()
	receive(bobOn1, "node 1", seq)
	receive(bobOn2, "node 2", seq)

	bobOn1.Close()
	seq = send()
	receive(bobOn2, "node 2", seq)

	bobOn2.Close()
	bobBack := connect(n1)
	seq = send()
	receive(bobBack, "node 1 again", seq)
}
