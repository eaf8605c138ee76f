package e2e

// The conformance suite walks PROTOCOL.md row by row against two real nodes:
// node 1 runs every role, node 2 only the gateway, so every push a client on
// node 2 receives crossed Kafka and Redis.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/fanoutbus"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

type suite struct {
	env    *testenv.Env
	n1, n2 *testenv.Node
}

func newSuite(t *testing.T) *suite {
	env := testenv.New(t)
	env.Cfg.IdemPendingStale = time.Second
	return &suite{env: env, n1: env.StartNode("gateway", "fanout", "projector"), n2: env.StartNode("gateway")}
}

var userSeq struct {
	sync.Mutex
	n int
}

// user returns a fresh user id, so subtests never see each other's events.
func user(name string) string {
	userSeq.Lock()
	defer userSeq.Unlock()
	userSeq.n++
	return fmt.Sprintf("%s%d", name, userSeq.n)
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var we *wsclient.Error
	if !errors.As(err, &we) || we.Code != code {
		t.Fatalf("got %v, want error %s", err, code)
	}
	if we.Message == "" {
		t.Fatalf("error %s without a message", code)
	}
}

func try(c *wsclient.Client, typ string, data any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.Request(ctx, typ, data)
	return err
}

func send(t *testing.T, c *wsclient.Client, conv, body string) domain.Message {
	t.Helper()
	return request[msgReply](t, c, "message.send", map[string]any{
		"conversation_id": conv, "client_msg_id": domain.NewID("k"), "body": body}).Message
}

// noPush asserts that, after a later marker push of type marker arrives,
// no push of type typ came before it.
func pushesUntil(t *testing.T, c *wsclient.Client, marker func(wsclient.Push) bool) []wsclient.Push {
	t.Helper()
	var got []wsclient.Push
	timeout := time.After(20 * time.Second)
	for {
		select {
		case p, ok := <-c.Pushes:
			if !ok {
				t.Fatalf("connection closed: %v", c.CloseErr)
			}
			got = append(got, p)
			if marker(p) {
				return got
			}
		case <-timeout:
			t.Fatalf("marker push not received; got %d pushes", len(got))
		}
	}
}

func isMessage(body string) func(wsclient.Push) bool {
	return func(p wsclient.Push) bool {
		var m domain.Message
		return p.Type == domain.PushMessageNew && json.Unmarshal(p.Data, &m) == nil && m.Body == body
	}
}

func TestConformance(t *testing.T) {
	s := newSuite(t)
	t.Run("Auth", s.testAuth)
	t.Run("MalformedFrames", s.testMalformed)
	t.Run("FrameTooLarge", s.testTooLarge)
	t.Run("CreateGroup", s.testCreateGroup)
	t.Run("CreateDirect", s.testCreateDirect)
	t.Run("AddMember", s.testAddMember)
	t.Run("AddMemberToAFullGroup", s.testGroupFull)
	t.Run("Leave", s.testLeave)
	t.Run("SendValidation", s.testSendValidation)
	t.Run("EditDelete", s.testEditDelete)
	t.Run("TypingIsEphemeral", s.testTyping)
	t.Run("ReadAndUnread", s.testReadUnread)
	t.Run("History", s.testHistory)
	t.Run("SyncResume", s.testSync)
	t.Run("OneOrderConcurrentSenders", s.testOneOrder)
	t.Run("IdempotentSendRace", s.testIdempotentRace)
	t.Run("IdempotentSendAfterDeadNode", s.testIdempotentDeadNode)
	t.Run("IdempotentSendAfterFailedProduce", s.testIdempotentFailedProduce)
	t.Run("TwoTabsTwoNodes", s.testTwoTabs)
	t.Run("DeliveriesOnlyWhereRecipientsAre", s.testRouting)
	t.Run("HTTPAPI", s.testHTTP)
}

func (s *suite) testAuth(t *testing.T) {
	ctx := context.Background()
	for name, tok := range map[string]string{"missing": "", "garbage": "x.y.z"} {
		_, resp, err := wsclient.Dial(ctx, s.n1.WS, tok, wsclient.Options{})
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s token: err %v, status %v; want 401 before upgrade", name, err, resp)
		}
	}
	// Browsers pass the token as access_token.
	c, _, err := wsclient.Dial(ctx, s.n1.WS+"?access_token="+s.env.Token(user("q")), "", wsclient.Options{})
	if err != nil {
		t.Fatalf("access_token query: %v", err)
	}
	c.Close()
	// Dev token endpoint.
	resp, err := http.Post(s.n2.HTTP+"/api/v1/dev/token", "application/json", strings.NewReader(`{"user_id":"dev_user"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	c, _, err = wsclient.Dial(ctx, s.n1.WS, tok.Token, wsclient.Options{})
	if err != nil {
		t.Fatalf("dev token from node 2 refused on node 1: %v", err)
	}
	c.Close()
	resp, _ = http.Post(s.n2.HTTP+"/api/v1/dev/token", "application/json", strings.NewReader(`{"user_id":"bad user"}`))
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("invalid dev user: %d", resp.StatusCode)
	}
	resp.Body.Close()
}

func (s *suite) testMalformed(t *testing.T) {
	c := dial(t, s.env, s.n1, user("m"))
	for _, tc := range []struct {
		frame, want string
		id          int64
	}{
		{`{nope`, "not a JSON object", 0},
		{`{"type":"conversation.list"}`, "id is required", 0},
		{`{"id":-1,"type":"conversation.list"}`, "positive integer", 0},
		{`{"id":11,"type":"no.such"}`, `unknown type "no.such"`, 11},
		{`{"id":12,"type":"message.send","data":{"conversation_id":7}}`, "conversation_id must be a string", 12},
		{`{"id":13,"type":"message.send","data":[]}`, "data must be a JSON object", 13},
		{"{\"id\":14,\"type\":\"message.send\",\"data\":{\"body\":\"\xff\"}}", "not valid UTF-8", 0},
		{`{"id":15,"type":"history","data":{"conversation_id":"c_x","limit":0}}`, "limit must be 1-200", 15},
		{`{"id":16,"type":"history","data":{"conversation_id":"c_x","limit":201}}`, "limit must be 1-200", 16},
	} {
		ch := c.Expect(tc.id)
		if err := c.WriteRaw([]byte(tc.frame)); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-ch:
			if f.Type != "error" || f.Error == nil || f.Error.Code != "bad_request" || !strings.Contains(f.Error.Message, tc.want) {
				t.Fatalf("%s: got %+v %+v, want bad_request %q", tc.frame, f, f.Error, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no reply", tc.frame)
		}
	}
	// The connection stays open and usable.
	request[map[string]any](t, c, "conversation.list", map[string]any{})
}

func (s *suite) testTooLarge(t *testing.T) {
	c := dial(t, s.env, s.n2, user("big"))
	big := `{"id":1,"type":"message.send","data":{"body":"` + strings.Repeat("a", 70<<10) + `"}}`
	_ = c.WriteRaw([]byte(big))
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed after a 70 KiB frame")
	}
	var ce *websocket.CloseError
	if !errors.As(c.CloseErr, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("close error %v, want 1009", c.CloseErr)
	}
}

func (s *suite) testCreateGroup(t *testing.T) {
	a, b, c := user("a"), user("b"), user("c")
	ca, cb := dial(t, s.env, s.n1, a), dial(t, s.env, s.n2, b)
	conv := request[convReply](t, ca, "conversation.create", map[string]any{"kind": "group", "title": "Team", "members": []string{b, c, b}}).Conversation
	if conv.Kind != "group" || conv.Title != "Team" || !slices.Equal(conv.Members, sortStrings(a, b, c)) || conv.LastSeq < 1 || conv.CreatedAt.IsZero() {
		t.Fatalf("conversation %+v", conv)
	}
	p := nextPush(t, cb, domain.PushConversationCreated)
	var got domain.ConversationCreatedPush
	_ = json.Unmarshal(p.Data, &got)
	if got.Conversation.ConversationID != conv.ConversationID || got.Seq != conv.LastSeq {
		t.Fatalf("pushed %+v", got)
	}
	for _, bad := range []map[string]any{
		{"kind": "circle", "members": []string{b}},
		{"kind": "group", "members": []string{"bad id"}},
		{"kind": "group", "title": strings.Repeat("t", 201), "members": []string{b}},
		{"kind": "group", "members": "bob"},
	} {
		wantCode(t, try(ca, "conversation.create", bad), "bad_request")
	}
}

func sortStrings(v ...string) []string { slices.Sort(v); return v }

func (s *suite) testCreateDirect(t *testing.T) {
	a, b := user("a"), user("b")
	ca, cb := dial(t, s.env, s.n1, a), dial(t, s.env, s.n2, b)
	first := request[convReply](t, ca, "conversation.create", map[string]any{"kind": "direct", "members": []string{b}}).Conversation
	again := request[convReply](t, cb, "conversation.create", map[string]any{"kind": "direct", "members": []string{a}}).Conversation
	if first.ConversationID != again.ConversationID || first.Kind != "direct" {
		t.Fatalf("same pair, different conversations: %+v %+v", first, again)
	}
	if again.CreatedAt.Unix() != first.CreatedAt.Unix() {
		t.Fatalf("second create returned a different conversation: %+v", again)
	}
	wantCode(t, try(ca, "conversation.create", map[string]any{"kind": "direct", "members": []string{b, user("x")}}), "bad_request")
	wantCode(t, try(ca, "conversation.create", map[string]any{"kind": "direct", "members": []string{a}}), "bad_request")
	wantCode(t, try(ca, "conversation.add_member", map[string]any{"conversation_id": first.ConversationID, "user_id": user("z")}), "bad_request")
	wantCode(t, try(ca, "conversation.leave", map[string]any{"conversation_id": first.ConversationID}), "bad_request")
	// An outsider cannot tell that the pair talks.
	out := dial(t, s.env, s.n1, user("o"))
	wantCode(t, try(out, "history", map[string]any{"conversation_id": first.ConversationID}), "not_found")
}

func (s *suite) testAddMember(t *testing.T) {
	a, b, d := user("a"), user("b"), user("d")
	ca, cd := dial(t, s.env, s.n1, a), dial(t, s.env, s.n2, d)
	conv := createGroup(t, ca, b)
	send(t, ca, conv.ConversationID, "before join")
	request[map[string]any](t, ca, "conversation.add_member", map[string]any{"conversation_id": conv.ConversationID, "user_id": d})
	send(t, ca, conv.ConversationID, "after join")
	got := pushesUntil(t, cd, isMessage("after join"))
	if got[0].Type != domain.PushMemberJoined {
		t.Fatalf("first push to the joiner is %s, want member.joined", got[0].Type)
	}
	for _, p := range got {
		if isMessage("before join")(p) || p.Type == domain.PushConversationCreated {
			t.Fatalf("joiner received %s from before joining", p.Type)
		}
	}
	wantCode(t, try(ca, "conversation.add_member", map[string]any{"conversation_id": conv.ConversationID, "user_id": d}), "conflict")
	outsider := dial(t, s.env, s.n1, user("o"))
	wantCode(t, try(outsider, "conversation.add_member", map[string]any{"conversation_id": conv.ConversationID, "user_id": user("x")}), "not_found")
	wantCode(t, try(ca, "conversation.add_member", map[string]any{"conversation_id": conv.ConversationID, "user_id": "no spaces"}), "bad_request")
}

func (s *suite) testLeave(t *testing.T) {
	a, b := user("a"), user("b")
	ca, cb := dial(t, s.env, s.n1, a), dial(t, s.env, s.n2, b)
	cb2 := dial(t, s.env, s.n1, b) // bob's second tab, on the other node
	conv := createGroup(t, ca, b)
	request[map[string]any](t, cb, "conversation.leave", map[string]any{"conversation_id": conv.ConversationID})
	send(t, ca, conv.ConversationID, "after leave")
	send(t, ca, conv.ConversationID, "marker")
	for _, c := range []*wsclient.Client{cb, cb2} {
		left := nextPush(t, c, domain.PushMemberLeft)
		var mp domain.MemberPush
		_ = json.Unmarshal(left.Data, &mp)
		if mp.UserID != b {
			t.Fatalf("member.left %+v", mp)
		}
	}
	// Alice sees the leave and her own messages; bob's connections see nothing after.
	pushesUntil(t, ca, isMessage("marker"))
	wantCode(t, try(cb, "message.send", map[string]any{"conversation_id": conv.ConversationID, "client_msg_id": "x", "body": "hi"}), "forbidden")
	wantCode(t, try(cb, "history", map[string]any{"conversation_id": conv.ConversationID}), "forbidden")
	// Probe each of bob's connections with a push that arrives after the messages.
	probe := createGroup(t, ca, b)
	for _, c := range []*wsclient.Client{cb, cb2} {
		got := pushesUntil(t, c, func(p wsclient.Push) bool {
			return p.Type == domain.PushConversationCreated && strings.Contains(string(p.Data), probe.ConversationID)
		})
		for _, p := range got {
			if p.Type == domain.PushMessageNew {
				t.Fatalf("a member who left received %s", p.Data)
			}
		}
	}
}

func (s *suite) testSendValidation(t *testing.T) {
	a := user("a")
	ca := dial(t, s.env, s.n1, a)
	conv := createGroup(t, ca, user("b"))
	base := func(k, v string) map[string]any {
		m := map[string]any{"conversation_id": conv.ConversationID, "client_msg_id": "c1", "body": "hi"}
		m[k] = v
		return m
	}
	wantCode(t, try(ca, "message.send", base("client_msg_id", "")), "bad_request")
	wantCode(t, try(ca, "message.send", base("client_msg_id", strings.Repeat("x", 65))), "bad_request")
	wantCode(t, try(ca, "message.send", base("body", "")), "bad_request")
	wantCode(t, try(ca, "message.send", base("body", strings.Repeat("é", 4097))), "too_large")
	wantCode(t, try(ca, "message.send", base("conversation_id", "")), "bad_request")
	wantCode(t, try(ca, "message.send", base("conversation_id", "c_does_not_exist")), "not_found")
	// U+0000 cannot be stored (Postgres text, jsonb): acked, it stopped the
	// projector for every conversation of its partition.
	for _, k := range []string{"body", "client_msg_id"} {
		err := try(ca, "message.send", base(k, "a\u0000b"))
		wantCode(t, err, "bad_request")
		if !strings.Contains(err.Error(), k) {
			t.Errorf("U+0000 in %s: %v does not name the field", k, err)
		}
	}
	wantCode(t, try(ca, "conversation.create", map[string]any{"kind": "group", "title": "t\u0000", "members": []string{user("b")}}), "bad_request")
	m := request[msgReply](t, ca, "message.send", base("body", strings.Repeat("é", 4096))).Message
	if len(m.Body) != 8192 || m.Seq < 1 || m.SenderID != a || m.MessageID == "" || m.SentAt.IsZero() || m.Deleted {
		t.Fatalf("8192-byte message: %+v", m)
	}
	out := dial(t, s.env, s.n2, user("o"))
	wantCode(t, try(out, "message.send", base("client_msg_id", "c2")), "not_found")
}

func (s *suite) testEditDelete(t *testing.T) {
	a, b := user("a"), user("b")
	ca, cb := dial(t, s.env, s.n1, a), dial(t, s.env, s.n2, b)
	conv := createGroup(t, ca, b)
	m := send(t, ca, conv.ConversationID, "first")
	edited := request[msgReply](t, ca, "message.edit", map[string]any{"conversation_id": conv.ConversationID, "message_id": m.MessageID, "body": "second"}).Message
	if edited.Body != "second" || edited.EditedAt == nil || edited.Seq != m.Seq {
		t.Fatalf("edit reply %+v", edited)
	}
	p := nextPush(t, cb, domain.PushMessageEdited)
	var em domain.Message
	_ = json.Unmarshal(p.Data, &em)
	if em.MessageID != m.MessageID || em.Body != "second" || em.EditedAt == nil || p.Seq <= m.Seq {
		t.Fatalf("message.edited %+v (frame seq %d)", em, p.Seq)
	}
	wantCode(t, try(cb, "message.edit", map[string]any{"conversation_id": conv.ConversationID, "message_id": m.MessageID, "body": "x"}), "forbidden")
	wantCode(t, try(cb, "message.delete", map[string]any{"conversation_id": conv.ConversationID, "message_id": m.MessageID}), "forbidden")
	wantCode(t, try(ca, "message.edit", map[string]any{"conversation_id": conv.ConversationID, "message_id": "m_nope", "body": "x"}), "not_found")
	request[map[string]any](t, ca, "message.delete", map[string]any{"conversation_id": conv.ConversationID, "message_id": m.MessageID})
	dp := nextPush(t, cb, domain.PushMessageDeleted)
	var del domain.MessageDeletedPush
	_ = json.Unmarshal(dp.Data, &del)
	if del.MessageID != m.MessageID || del.Seq != dp.Seq || del.Seq <= p.Seq {
		t.Fatalf("message.deleted %+v", del)
	}
	wantCode(t, try(ca, "message.edit", map[string]any{"conversation_id": conv.ConversationID, "message_id": m.MessageID, "body": "x"}), "conflict")
	h := request[struct{ Messages []domain.Message }](t, cb, "history", map[string]any{"conversation_id": conv.ConversationID})
	if len(h.Messages) != 1 || !h.Messages[0].Deleted || h.Messages[0].Body != "" || h.Messages[0].Seq != m.Seq {
		t.Fatalf("history after delete: %+v", h.Messages)
	}
}

func (s *suite) testTyping(t *testing.T) {
	a, b := user("a"), user("b")
	ca, cb := dial(t, s.env, s.n1, a), dial(t, s.env, s.n2, b)
	conv := createGroup(t, ca, b)
	created := nextPush(t, cb, domain.PushConversationCreated)
	request[map[string]any](t, ca, "typing", map[string]any{"conversation_id": conv.ConversationID})
	p := nextPush(t, cb, domain.PushTyping)
	var tp domain.TypingPush
	_ = json.Unmarshal(p.Data, &tp)
	if tp.UserID != a || tp.ConversationID != conv.ConversationID || p.Seq != 0 {
		t.Fatalf("typing push %+v seq %d", tp, p.Seq)
	}
	send(t, ca, conv.ConversationID, "after typing")
	// A fresh connection that syncs from before the typing gets no typing.
	cb2 := dial(t, s.env, s.n1, b)
	request[map[string]any](t, cb2, "sync", map[string]any{"positions": map[string]int64{conv.ConversationID: created.Seq}})
	for _, p := range pushesUntil(t, cb2, isMessage("after typing")) {
		if p.Type == domain.PushTyping {
			t.Fatal("typing was replayed by sync")
		}
	}
	if n := s.env.Count(`SELECT count(*) FROM {s}.events WHERE conversation_id=$1 AND type NOT IN ('chat.conversation_created.v1','chat.message_sent.v1')`, conv.ConversationID); n != 0 {
		t.Fatalf("%d unexpected events logged (typing must not be)", n)
	}
	wantCode(t, try(dial(t, s.env, s.n1, user("o")), "typing", map[string]any{"conversation_id": conv.ConversationID}), "not_found")
}

type listReply struct {
	Conversations []domain.Conversation `json:"conversations"`
}

func (s *suite) testReadUnread(t *testing.T) {
	a, b := user("a"), user("b")
	ca, cb := dial(t, s.env, s.n1, a), dial(t, s.env, s.n2, b)
	conv := createGroup(t, ca, b)
	var last domain.Message
	for i := range 3 {
		last = send(t, ca, conv.ConversationID, fmt.Sprint("m", i))
	}
	unread := func() int64 {
		for _, c := range request[listReply](t, cb, "conversation.list", map[string]any{}).Conversations {
			if c.ConversationID == conv.ConversationID {
				if c.LastSeq < last.Seq {
					return -1
				}
				return c.Unread
			}
		}
		return -2
	}
	testenv.WaitFor(t, 20*time.Second, "3 unread", func() bool { return unread() == 3 })
	request[map[string]any](t, cb, "read", map[string]any{"conversation_id": conv.ConversationID, "seq": last.Seq})
	p := nextPush(t, ca, domain.PushRead)
	var rp domain.ReadPush
	_ = json.Unmarshal(p.Data, &rp)
	if rp.UserID != b || rp.UpToSeq != last.Seq || rp.Seq <= last.Seq {
		t.Fatalf("read push %+v", rp)
	}
	testenv.WaitFor(t, 20*time.Second, "0 unread", func() bool { return unread() == 0 })
	wantCode(t, try(cb, "read", map[string]any{"conversation_id": conv.ConversationID, "seq": -1}), "bad_request")
	wantCode(t, try(cb, "read", map[string]any{"conversation_id": conv.ConversationID, "seq": "x"}), "bad_request")
}

type historyReply struct {
	Messages []domain.Message `json:"messages"`
	HasMore  bool             `json:"has_more"`
}

func (s *suite) testHistory(t *testing.T) {
	a := user("a")
	ca := dial(t, s.env, s.n1, a)
	conv := createGroup(t, ca, user("b"))
	var seqs []int64
	for i := range 7 {
		seqs = append(seqs, send(t, ca, conv.ConversationID, fmt.Sprint("h", i)).Seq)
	}
	var h historyReply
	testenv.WaitFor(t, 20*time.Second, "history", func() bool {
		h = request[historyReply](t, ca, "history", map[string]any{"conversation_id": conv.ConversationID, "limit": 3})
		return len(h.Messages) == 3 && h.Messages[2].Seq == seqs[6]
	})
	if !h.HasMore || h.Messages[0].Seq != seqs[4] {
		t.Fatalf("newest page: %+v more=%v", h.Messages, h.HasMore)
	}
	h = request[historyReply](t, ca, "history", map[string]any{"conversation_id": conv.ConversationID, "limit": 3, "before_seq": seqs[4]})
	if len(h.Messages) != 3 || h.Messages[0].Seq != seqs[1] || h.Messages[2].Seq != seqs[3] || !h.HasMore {
		t.Fatalf("second page: %+v", h.Messages)
	}
	h = request[historyReply](t, ca, "history", map[string]any{"conversation_id": conv.ConversationID, "before_seq": seqs[1]})
	if len(h.Messages) != 1 || h.HasMore {
		t.Fatalf("last page: %+v %v", h.Messages, h.HasMore)
	}
}

func (s *suite) testSync(t *testing.T) {
	a, b := user("a"), user("b")
	ca := dial(t, s.env, s.n1, a)
	conv := createGroup(t, ca, b)
	first := send(t, ca, conv.ConversationID, "seen")
	// Bob is offline while these happen.
	var want []int64
	for i := range 20 {
		want = append(want, send(t, ca, conv.ConversationID, fmt.Sprint("missed", i)).Seq)
	}
	edit := request[msgReply](t, ca, "message.edit", map[string]any{"conversation_id": conv.ConversationID, "message_id": first.MessageID, "body": "seen, edited"})
	_ = edit
	cb := dial(t, s.env, s.n2, b)
	r := request[struct{ Positions map[string]int64 }](t, cb, "sync", map[string]any{"positions": map[string]int64{conv.ConversationID: first.Seq}})
	// Live traffic after the sync continues the same stream.
	want = append(want, send(t, ca, conv.ConversationID, "live").Seq)
	got := pushesUntil(t, cb, isMessage("live"))
	var msgSeqs []int64
	var last int64
	edited := false
	for _, p := range got {
		if p.Seq <= last {
			t.Fatalf("push seq %d after %d: out of order or duplicate", p.Seq, last)
		}
		last = p.Seq
		switch p.Type {
		case domain.PushMessageNew:
			msgSeqs = append(msgSeqs, p.Seq)
		case domain.PushMessageEdited:
			edited = true
		}
	}
	if !slices.Equal(msgSeqs, want) || !edited {
		t.Fatalf("synced message seqs %v, want %v (edit seen: %v)", msgSeqs, want, edited)
	}
	if r.Positions[conv.ConversationID] < want[len(want)-2] {
		t.Fatalf("sync positions %v", r.Positions)
	}
	wantCode(t, try(cb, "sync", map[string]any{"positions": map[string]any{conv.ConversationID: "x"}}), "bad_request")
	wantCode(t, try(cb, "sync", map[string]any{"positions": map[string]any{conv.ConversationID: -1}}), "bad_request")
}

func (s *suite) testOneOrder(t *testing.T) {
	a, b, c, d := user("a"), user("b"), user("c"), user("d")
	ca, cb := dial(t, s.env, s.n1, a), dial(t, s.env, s.n2, b)
	cc, cd := dial(t, s.env, s.n1, c), dial(t, s.env, s.n2, d)
	conv := createGroup(t, ca, b, c, d)
	const per = 40
	var mu sync.Mutex
	var acked []int64
	var wg sync.WaitGroup
	for _, sender := range []*wsclient.Client{ca, cb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				raw, err := sender.Request(context.Background(), "message.send", map[string]any{
					"conversation_id": conv.ConversationID, "client_msg_id": fmt.Sprint("o", i), "body": "x"})
				if err != nil {
					t.Error(err)
					return
				}
				var r msgReply
				_ = json.Unmarshal(raw, &r)
				mu.Lock()
				acked = append(acked, r.Message.Seq)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(acked)
	for _, rc := range []*wsclient.Client{cc, cd} {
		var got []int64
		for len(got) < 2*per {
			p := nextPush(t, rc, domain.PushMessageNew)
			got = append(got, p.Seq)
		}
		if !slices.Equal(got, acked) {
			t.Fatalf("receiver order %v\nwant acked order %v", got, acked)
		}
	}
}

func (s *suite) testIdempotentRace(t *testing.T) {
	a := user("a")
	c1, c2 := dial(t, s.env, s.n1, a), dial(t, s.env, s.n2, a)
	conv := createGroup(t, c1, user("b"))
	var first domain.Message
	for round := range 5 {
		cmid := fmt.Sprint("race", round)
		got := sendAtOnce(t, []*wsclient.Client{c1, c2}, conv.ConversationID, cmid, "once")
		if got[0].MessageID == "" || got[0].MessageID != got[1].MessageID || got[0].Seq != got[1].Seq {
			t.Fatalf("racing sends got different messages: %+v %+v", got[0], got[1])
		}
		if round == 0 {
			first = got[0]
		}
	}
	// A later repeat returns the first message too, whole: with the same
	// body (answered from the idempotency record) and with another one
	// (answered from the read model).
	for _, body := range []string{"once", "different body"} {
		again := request[msgReply](t, c2, "message.send", map[string]any{"conversation_id": conv.ConversationID, "client_msg_id": "race0", "body": body}).Message
		if again.MessageID != first.MessageID || again.Seq != first.Seq || again.Body != "once" ||
			!again.SentAt.Equal(first.SentAt) || again.SenderID != a || again.ClientMsgID != "race0" || again.ConversationID != conv.ConversationID {
			t.Fatalf("repeat with body %q returned %+v, want %+v", body, again, first)
		}
	}
	testenv.WaitFor(t, 20*time.Second, "5 rows", func() bool {
		return s.env.Count(`SELECT count(*) FROM {s}.messages WHERE conversation_id=$1`, conv.ConversationID) == 5
	})
	if n := s.env.Count(`SELECT count(*) FROM {s}.events WHERE conversation_id=$1 AND type='chat.message_sent.v1'`, conv.ConversationID); n != 5 {
		t.Fatalf("%d message_sent events logged, want 5", n)
	}
}

func (s *suite) testTwoTabs(t *testing.T) {
	a, b := user("a"), user("b")
	ca := dial(t, s.env, s.n1, a)
	tab1, tab2 := dial(t, s.env, s.n1, b), dial(t, s.env, s.n2, b)
	conv := createGroup(t, ca, b)
	m := send(t, ca, conv.ConversationID, "both tabs")
	for _, tab := range []*wsclient.Client{tab1, tab2} {
		p := nextPush(t, tab, domain.PushMessageNew)
		if p.Seq != m.Seq {
			t.Fatalf("tab got seq %d want %d", p.Seq, m.Seq)
		}
	}
}

func (s *suite) testHTTP(t *testing.T) {
	a := user("a")
	ca := dial(t, s.env, s.n1, a)
	conv := createGroup(t, ca, user("b"))
	tok := s.env.Token(a)
	do := func(method, path, body, token string) (int, []byte) {
		req, _ := http.NewRequest(method, s.n2.HTTP+path, bytes.NewBufferString(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	path := "/api/v1/conversations/" + conv.ConversationID + "/messages"
	var seqs []int64
	for i := range 4 {
		st, b := do("POST", path, fmt.Sprintf(`{"client_msg_id":"h%d","body":"via http %d"}`, i, i), tok)
		var r msgReply
		_ = json.Unmarshal(b, &r)
		if st != http.StatusCreated || r.Message.Seq < 1 {
			t.Fatalf("POST message: %d %s", st, b)
		}
		seqs = append(seqs, r.Message.Seq)
	}
	st, b := do("POST", path, `{"client_msg_id":"h0","body":"again"}`, tok)
	if !strings.Contains(string(b), `"via http 0"`) || st != http.StatusCreated {
		t.Fatalf("idempotent POST: %d %s", st, b)
	}
	var h historyReply
	testenv.WaitFor(t, 20*time.Second, "http history", func() bool {
		_, b := do("GET", path+"?limit=2", "", tok)
		h = historyReply{}
		_ = json.Unmarshal(b, &h)
		return len(h.Messages) == 2 && h.Messages[1].Seq == seqs[3]
	})
	if !h.HasMore {
		t.Fatal("has_more false with 4 messages and limit 2")
	}
	_, b = do("GET", fmt.Sprintf("%s?after_seq=%d&limit=10", path, seqs[0]), "", tok)
	h = historyReply{}
	_ = json.Unmarshal(b, &h)
	if len(h.Messages) != 3 || h.Messages[0].Seq != seqs[1] || h.HasMore {
		t.Fatalf("after_seq page: %s", b)
	}
	_, b = do("GET", fmt.Sprintf("%s?before_seq=%d", path, seqs[2]), "", tok)
	h = historyReply{}
	_ = json.Unmarshal(b, &h)
	if len(h.Messages) != 2 || h.Messages[1].Seq != seqs[1] {
		t.Fatalf("before_seq page: %s", b)
	}
	st, b = do("GET", "/api/v1/conversations", "", tok)
	if st != 200 || !strings.Contains(string(b), conv.ConversationID) {
		t.Fatalf("list: %d %s", st, b)
	}
	for _, tc := range []struct {
		method, path, body, token, code string
		status                          int
	}{
		{"GET", "/api/v1/conversations", "", "", "unauthorized", 401},
		{"GET", path + "?limit=500", "", tok, "bad_request", 400},
		{"GET", path + "?before_seq=x", "", tok, "bad_request", 400},
		{"POST", path, `{"client_msg_id":"x"}`, tok, "bad_request", 400},
		{"POST", path, `{`, tok, "bad_request", 400},
		{"GET", path, "", s.env.Token(user("o")), "not_found", 404},
	} {
		st, b := do(tc.method, tc.path, tc.body, tc.token)
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(b, &e)
		if st != tc.status || e.Error.Code != tc.code || e.Error.Message == "" {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, st, b, tc.status, tc.code)
		}
	}
}

// testRouting: a gateway's stream carries only deliveries with a recipient
// connected to it, naming only its recipients; a user who connects to
// another node is reached there from its first connection on.
func (s *suite) testRouting(t *testing.T) {
	a, b := user("a"), user("b")
	ca, cb := dial(t, s.env, s.n1, a), dial(t, s.env, s.n1, b)
	conv := createGroup(t, ca, b)
	rdb, bus := s.n1.App.Redis.Client(), s.n1.App.Bus
	ctx := context.Background()
	stream1, stream2 := bus.NodeStream(s.n1.App.Cfg.NodeID), bus.NodeStream(s.n2.App.Cfg.NodeID)
	len2 := rdb.XLen(ctx, stream2).Val()
	send(t, ca, conv.ConversationID, "only n1")
	nextPushOf(t, cb, "only n1")
	if got := rdb.XLen(ctx, stream2).Val(); got != len2 {
		t.Fatalf("node 2 (no recipient) got %d deliveries", got-len2)
	}
	cb2 := dial(t, s.env, s.n2, b) // b's second tab, on node 2
	send(t, ca, conv.ConversationID, "both nodes")
	nextPushOf(t, cb2, "both nodes")
	nextPushOf(t, cb, "both nodes")
	last, err := rdb.XRevRangeN(ctx, stream2, "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatalf("node 2's stream: %v %v", last, err)
	}
	d, err := fanoutbus.Decode([]byte(last[0].Values["d"].(string)))
	if err != nil || !slices.Equal(d.Recipients, []string{b}) {
		t.Fatalf("node 2's delivery names %v (err %v), want only %s", d.Recipients, err, b)
	}
	if n := rdb.XLen(ctx, stream1).Val(); n == 0 {
		t.Fatal("node 1's stream is empty")
	}
}

// nextPushOf waits for the message.new push of body.
func nextPushOf(t *testing.T, c *wsclient.Client, body string) {
	t.Helper()
	pushesUntil(t, c, isMessage(body))
}

// testGroupFull: add_member keeps the group size limit that create has.
func (s *suite) testGroupFull(t *testing.T) {
	a := user("full")
	ca := dial(t, s.env, s.n1, a)
	others := make([]string, domain.MaxGroupMembers-1)
	for i := range others {
		others[i] = fmt.Sprintf("%s-m%d", a, i)
	}
	conv := createGroup(t, ca, others...)
	err := try(ca, "conversation.add_member", map[string]any{"conversation_id": conv.ConversationID, "user_id": a + "-one-more"})
	wantCode(t, err, "conflict")
	if !strings.Contains(err.Error(), "full") {
		t.Fatalf("adding a member to a full group: %v", err)
	}
}
