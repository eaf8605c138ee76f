package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// A sync replays only what the user could see: a former member gets the
// events it missed up to its own leave (its other devices got them live),
// and a member who left and was added back does not get what was said
// while it was out, though its membership is checked once, when the
// replay begins.
func TestSyncReplaysOnlyWhileAMember(t *testing.T) {
	env := testenv.New(t)
	n := env.StartNode("gateway", "fanout", "projector")
	a, b := user("a"), user("b")
	ca, cb := dial(t, env, n, a), dial(t, env, n, b)
	conv := createGroup(t, ca, b)
	id := conv.ConversationID
	m1 := send(t, ca, id, "before the leave")
	request[map[string]any](t, cb, "conversation.leave", map[string]any{"conversation_id": id})
	m2 := send(t, ca, id, "while b is out")

	// A former member's other device, last at the creation.
	replayed := syncFrom(t, dial(t, env, n, b), id, 0)
	if got, want := replayed, fmt.Sprintf("message.new %d, member.left %s", m1.Seq, b); got != want {
		t.Fatalf("a former member's sync replayed [%s], want [%s]", got, want)
	}

	request[map[string]any](t, ca, "conversation.add_member", map[string]any{"conversation_id": id, "user_id": b})
	m3 := send(t, ca, id, "b is back")
	replayed = syncFrom(t, dial(t, env, n, b), id, 0)
	if strings.Contains(replayed, fmt.Sprintf("message.new %d", m2.Seq)) {
		t.Fatalf("a member added back got a message of the time it was out: [%s]", replayed)
	}
	if want := fmt.Sprintf("message.new %d, member.left %s, member.joined %s, message.new %d", m1.Seq, b, b, m3.Seq); replayed != want {
		t.Fatalf("a member added back: sync replayed [%s], want [%s]", replayed, want)
	}
}

// syncFrom syncs conv from pos on c and lists what it replayed, in order:
// "type seq" for messages, "type user" for membership changes.
func syncFrom(t *testing.T, c *wsclient.Client, conv string, pos int64) string {
	t.Helper()
	request[map[string]any](t, c, "sync", map[string]any{"positions": map[string]int64{conv: pos}})
	var out []string
	for { // the replay's pushes came before the reply
		select {
		case p := <-c.Pushes:
			switch p.Type {
			case domain.PushMessageNew:
				out = append(out, fmt.Sprintf("%s %d", p.Type, p.Seq))
			case domain.PushMemberJoined, domain.PushMemberLeft:
				var m domain.MemberPush
				if err := json.Unmarshal(p.Data, &m); err != nil {
					t.Fatal(err)
				}
				out = append(out, p.Type+" "+m.UserID)
			}
		default:
			return strings.Join(out, ", ")
		}
	}
}

// A client with more conversations than one sync names sends its
// positions in parts, all but the last with "more": a new connection's
// pushes stay held until the last part, so a push of a conversation named
// in a later part does not overtake what that part replays (its replay
// would start after the push, and the events between were lost).
func TestSyncInPartsLosesNothing(t *testing.T) {
	env := testenv.New(t)
	n := env.StartNode("gateway", "fanout", "projector")
	u, v := user("parts"), user("partv")
	cv, live := dial(t, env, n, v), dial(t, env, n, u)
	first, second := createGroup(t, cv, u).ConversationID, createGroup(t, cv, u).ConversationID
	request[map[string]any](t, live, "sync", map[string]any{"positions": map[string]int64{}}) // live from now
	var missed []string
	for i := range 2 {
		missed = append(missed, fmt.Sprintf("message.new %d", send(t, cv, second, fmt.Sprint("missed ", i)).Seq))
	}
	c := dial(t, env, n, u) // the device that was away, at 0 in both
	request[map[string]any](t, c, "sync", map[string]any{"positions": map[string]int64{first: 0}, "more": true})
	m := send(t, cv, second, "while the first part ran")
	for p := nextPush(t, live, domain.PushMessageNew); p.Seq != m.Seq; p = nextPush(t, live, domain.PushMessageNew) {
	} // delivered to u's connections on the node
	replayed := syncFrom(t, c, second, 0)
	if want := strings.Join(append(missed, fmt.Sprintf("message.new %d", m.Seq)), ", "); replayed != want {
		t.Fatalf("the second part gave [%s], want [%s]", replayed, want)
	}
}
