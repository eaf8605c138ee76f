package e2e

import (
	"context"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// Redis is never the truth: when it loses every key (a restart without
// persistence), membership is rebuilt from the read model, so sends are
// still authorized and pushes still reach every member, and a member who
// left stays out.
func TestRedisDataLossLosesNothing(t *testing.T) {
	env := testenv.New(t)
	n1 := env.StartNode("gateway", "fanout", "projector")
	n2 := env.StartNode("gateway")
	a, b, c := user("a"), user("b"), user("c")
	ca, cb, cc := dial(t, env, n1, a), dial(t, env, n2, b), dial(t, env, n2, c)
	conv := createGroup(t, ca, b, c)
	request[map[string]any](t, cc, "conversation.leave", map[string]any{"conversation_id": conv.ConversationID})
	before := send(t, ca, conv.ConversationID, "before")
	nextPush(t, cb, domain.PushMessageNew)

	// Drop every key of this deployment, as a Redis restart without
	// persistence would.
	rdb := n1.App.Redis.Client()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, env.Cfg.RedisPrefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no keys to drop")
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}

	m := send(t, ca, conv.ConversationID, "after the loss")
	p := nextPush(t, cb, domain.PushMessageNew)
	if p.Seq != m.Seq {
		t.Fatalf("bob got seq %d, want %d", p.Seq, m.Seq)
	}
	wantCode(t, try(cc, "message.send", map[string]any{"conversation_id": conv.ConversationID, "client_msg_id": "x", "body": "y"}), "forbidden")
	// A repeat of a send from before the loss is recognised through the read
	// model, on either node.
	for _, c := range []*wsclient.Client{ca, dial(t, env, n2, a)} {
		again := request[msgReply](t, c, "message.send", map[string]any{"conversation_id": conv.ConversationID,
			"client_msg_id": before.ClientMsgID, "body": "retry"}).Message
		if again.MessageID != before.MessageID || again.Body != "before" {
			t.Fatalf("idempotency lost with Redis: %+v, want %+v", again, before)
		}
	}
	if n := env.Count(`SELECT count(*) FROM {s}.events WHERE conversation_id=$1 AND type='chat.message_sent.v1'`, conv.ConversationID); n != 2 {
		t.Fatalf("%d message_sent events, want 2", n)
	}
}
