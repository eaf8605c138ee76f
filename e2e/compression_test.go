package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
)

// CHAT_KAFKA_COMPRESSION=zstd: the producer compresses its batches and every
// consumer (fan-out, projector) reads them: a message reaches the other
// member live and the read model.
func TestCompressedLog(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.Compression = "zstd"
	node := env.StartNode()
	alice, bob := dial(t, env, node, "alice"), dial(t, env, node, "bob")
	conv := createGroup(t, alice, "bob")
	sent := request[msgReply](t, alice, "message.send", map[string]any{"conversation_id": conv.ConversationID,
		"client_msg_id": "z1", "body": "squeezed"}).Message
	var got domain.Message
	if err := json.Unmarshal(nextPush(t, bob, domain.PushMessageNew).Data, &got); err != nil {
		t.Fatal(err)
	}
	if got.MessageID != sent.MessageID || got.Body != "squeezed" {
		t.Fatalf("bob received %+v, want %+v", got, sent)
	}
	testenv.WaitFor(t, 30*time.Second, "the message in the read model", func() bool {
		return env.Count(`SELECT count(*) FROM {s}.messages WHERE message_id=$1`, sent.MessageID) == 1
	})
}
