package e2e

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/projections"
)

// Replies and threads on two nodes (PROTOCOL.md "Extensions"): reply_to is
// validated (a message of the same conversation), carried by the ack, the
// push, history, sync and an idempotent resend; thread pages a message's
// replies, for members only.
func TestReplies(t *testing.T) {
	env := testenv.New(t)
	n1 := env.StartNode()
	n2 := env.StartNode("gateway")
	a, b, c := user("ra"), user("rb"), user("rc")
	ca, cb, cc := dial(t, env, n1, a), dial(t, env, n2, b), dial(t, env, n2, c)
	conv := createGroup(t, ca, b).ConversationID
	other := createGroup(t, cc, a).ConversationID
	root := send(t, ca, conv, "where do we meet?")
	elsewhere := send(t, cc, other, "not in the group")

	reply := func(cl interface{}, body, to, cmid string) map[string]any {
		return map[string]any{"conversation_id": conv, "client_msg_id": cmid, "body": body, "reply_to": to}
	}
	// A reply sent right after its root: the read model may not hold the
	// root yet, and the send waits for it.
	r1 := request[msgReply](t, cb, "message.send", reply(cb, "at the station", root.MessageID, "r1")).Message
	if r1.ReplyTo != root.MessageID {
		t.Fatalf("ack %+v, want reply_to %s", r1, root.MessageID)
	}
	for {
		p := nextPush(t, ca, domain.PushMessageNew)
		var m domain.Message
		_ = json.Unmarshal(p.Data, &m)
		if m.MessageID == r1.MessageID {
			if m.ReplyTo != root.MessageID {
				t.Errorf("a's push %+v, want reply_to", m)
			}
			break
		}
	}
	again := request[msgReply](t, cb, "message.send", reply(cb, "at the station", root.MessageID, "r1")).Message
	if again.MessageID != r1.MessageID || again.ReplyTo != root.MessageID {
		t.Errorf("resend %+v, want the first reply with its reply_to", again)
	}
	r2 := request[msgReply](t, ca, "message.send", reply(ca, "which exit?", root.MessageID, "r2")).Message
	r3 := request[msgReply](t, cb, "message.send", reply(cb, "north", r2.MessageID, "r3")).Message // a reply to a reply

	wantCode(t, try(cb, "message.send", reply(cb, "x", "m_nosuch", "bad1")), "bad_request")
	wantCode(t, try(ca, "message.send", reply(ca, "x", elsewhere.MessageID, "bad2")), "bad_request")
	wantCode(t, try(cb, "message.send", reply(cb, "x", "not an id", "bad3")), "bad_request")

	thread := func(data map[string]any) projections.Thread {
		return request[projections.Thread](t, cb, "thread", data)
	}
	ids := func(ms []domain.Message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.MessageID)
		}
		return out
	}
	th := thread(map[string]any{"conversation_id": conv, "message_id": root.MessageID})
	if th.Root.MessageID != root.MessageID || !slices.Equal(ids(th.Messages), []string{r1.MessageID, r2.MessageID}) || th.HasMore {
		t.Errorf("thread of the root: root %s, replies %v (more %v), want r1, r2", th.Root.MessageID, ids(th.Messages), th.HasMore)
	}
	page := thread(map[string]any{"conversation_id": conv, "message_id": root.MessageID, "limit": 1})
	if !slices.Equal(ids(page.Messages), []string{r2.MessageID}) || !page.HasMore {
		t.Errorf("first page of 1: %v (more %v), want r2 and more", ids(page.Messages), page.HasMore)
	}
	page = thread(map[string]any{"conversation_id": conv, "message_id": root.MessageID, "limit": 1, "before_seq": page.Messages[0].Seq})
	if !slices.Equal(ids(page.Messages), []string{r1.MessageID}) || page.HasMore {
		t.Errorf("second page: %v (more %v), want r1 and no more", ids(page.Messages), page.HasMore)
	}
	if th := thread(map[string]any{"conversation_id": conv, "message_id": r2.MessageID}); !slices.Equal(ids(th.Messages), []string{r3.MessageID}) {
		t.Errorf("thread of r2: %v, want r3", ids(th.Messages))
	}
	wantCode(t, try(cc, "thread", map[string]any{"conversation_id": conv, "message_id": root.MessageID}), "not_found")
	wantCode(t, try(cb, "thread", map[string]any{"conversation_id": conv, "message_id": "m_nosuch"}), "not_found")
	wantCode(t, try(cb, "thread", map[string]any{"conversation_id": conv, "message_id": root.MessageID, "limit": 500}), "bad_request")

	// history and sync carry reply_to.
	h := request[historyReply](t, cb, "history", map[string]any{"conversation_id": conv})
	for _, m := range h.Messages {
		if m.MessageID == r3.MessageID && m.ReplyTo != r2.MessageID {
			t.Errorf("history: %+v, want reply_to %s", m, r2.MessageID)
		}
	}
	late := dial(t, env, n1, b)
	request[map[string]any](t, late, "sync", map[string]any{"positions": map[string]int64{conv: root.Seq}})
	testenv.WaitFor(t, 20*time.Second, "sync to replay r3", func() bool {
		for {
			select {
			case p := <-late.Pushes:
				var m domain.Message
				if p.Type == domain.PushMessageNew && json.Unmarshal(p.Data, &m) == nil && m.MessageID == r3.MessageID {
					if m.ReplyTo != r2.MessageID {
						t.Errorf("sync replayed %+v, want reply_to", m)
					}
					return true
				}
			default:
				return false
			}
		}
	})
}

// An edited reply is pushed whole: with its reply_to (a client that
// replaces its copy with the pushed message kept the thread link).
func TestEditedReplyKeepsReplyTo(t *testing.T) {
	env := testenv.New(t)
	n := env.StartNode()
	a, b := user("ea"), user("eb")
	ca, cb := dial(t, env, n, a), dial(t, env, n, b)
	conv := createGroup(t, ca, b).ConversationID
	root := send(t, ca, conv, "root")
	r := request[msgReply](t, cb, "message.send", map[string]any{"conversation_id": conv, "client_msg_id": "er",
		"body": "reply", "reply_to": root.MessageID}).Message
	request[msgReply](t, cb, "message.edit", map[string]any{"conversation_id": conv, "message_id": r.MessageID, "body": "reply, edited"})
	var m domain.Message
	if err := json.Unmarshal(nextPush(t, ca, domain.PushMessageEdited).Data, &m); err != nil {
		t.Fatal(err)
	}
	if m.MessageID != r.MessageID || m.ReplyTo != root.MessageID || m.Body != "reply, edited" {
		t.Fatalf("message.edited pushed %+v, want the reply with reply_to %s", m, root.MessageID)
	}
}
