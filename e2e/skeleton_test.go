package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
)

// A message from a WebSocket on node 1 reaches a WebSocket on node 2 through
// Kafka and Redis, in seq order, and lands in Postgres exactly once.
func TestCrossNodeDelivery(t *testing.T) {
	env := testenv.New(t)
	n1 := env.StartNode("gateway", "fanout", "projector")
	n2 := env.StartNode("gateway")
	alice := dial(t, env, n1, "alice")
	bob := dial(t, env, n2, "bob")

	conv := createGroup(t, alice, "bob")
	created := nextPush(t, bob, domain.PushConversationCreated)
	if created.Seq != conv.LastSeq {
		t.Fatalf("conversation.created seq %d, ack said %d", created.Seq, conv.LastSeq)
	}

	const n = 100
	acked := make([]int64, n)
	for i := range n {
		m := request[msgReply](t, alice, "message.send", map[string]any{
			"conversation_id": conv.ConversationID, "client_msg_id": fmt.Sprintf("m%d", i), "body": fmt.Sprintf("hello %d", i)})
		acked[i] = m.Message.Seq
		if i > 0 && acked[i] <= acked[i-1] {
			t.Fatalf("ack seqs not increasing: %d then %d", acked[i-1], acked[i])
		}
	}
	for i := range n {
		p := nextPush(t, bob, domain.PushMessageNew)
		var m domain.Message
		if err := json.Unmarshal(p.Data, &m); err != nil {
			t.Fatal(err)
		}
		if m.Seq != acked[i] || p.Seq != acked[i] {
			t.Fatalf("push %d: seq %d (frame %d), want %d", i, m.Seq, p.Seq, acked[i])
		}
		if m.Body != fmt.Sprintf("hello %d", i) || m.SenderID != "alice" {
			t.Fatalf("push %d: %+v", i, m)
		}
	}
	testenv.WaitFor(t, 20*time.Second, "100 rows in Postgres", func() bool {
		return env.Count(`SELECT count(*) FROM {s}.messages WHERE conversation_id=$1`, conv.ConversationID) == n
	})
	if got := env.Count(`SELECT count(DISTINCT seq) FROM {s}.messages WHERE conversation_id=$1`, conv.ConversationID); got != n {
		t.Fatalf("distinct seqs in Postgres: %d", got)
	}
}
