package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
)

type searchReply struct {
	Messages   []domain.Message `json:"messages"`
	HasMore    bool             `json:"has_more"`
	NextCursor string           `json:"next_cursor"`
}

// search over two nodes: every word must match, case, accents and word
// endings folded; only conversations the user is a member of; edits and
// deletes show at once in the results; pages newest first by cursor or, in
// one conversation, by before_seq; the same over HTTP; bad queries refused.
func TestSearch(t *testing.T) {
	env := testenv.New(t)
	n1 := env.StartNode()
	n2 := env.StartNode("gateway")
	a, b, c := user("sa"), user("sb"), user("sc")
	ca, cb, cc := dial(t, env, n1, a), dial(t, env, n2, b), dial(t, env, n2, c)
	conv := createGroup(t, ca, b).ConversationID
	other := createGroup(t, cc, a).ConversationID // b is not in it
	cafe := send(t, ca, conv, "The Café is RUNNING late today")
	send(t, ca, conv, "unrelated chatter")
	secret := send(t, cc, other, "secret cafe plans")

	ids := func(r searchReply) []string {
		var out []string
		for _, m := range r.Messages {
			out = append(out, m.MessageID)
		}
		return out
	}
	search := func(data map[string]any) searchReply {
		return request[searchReply](t, cb, "search", data)
	}
	testenv.WaitFor(t, 10*time.Second, "the messages to be searchable", func() bool {
		return len(search(map[string]any{"query": "cafe"}).Messages) == 1
	})
	for _, q := range []string{"cafe", "CAFÉ", "café run", "late running", "today's"} {
		if got := ids(search(map[string]any{"query": q})); !slices.Equal(got, []string{cafe.MessageID}) {
			t.Errorf("b searches %q: %v, want the café message", q, got)
		}
	}
	for _, q := range []string{"cafe plans", "tea", "secret"} {
		if got := search(map[string]any{"query": q}); len(got.Messages) != 0 {
			t.Errorf("b searches %q: %v, want nothing (every word must match; b is not in the other group)", q, ids(got))
		}
	}
	if got := ids(request[searchReply](t, ca, "search", map[string]any{"query": "cafe"})); len(got) != 2 || !slices.Contains(got, secret.MessageID) {
		t.Errorf("a, in both groups, searches cafe: %v", got)
	}
	wantCode(t, try(cb, "search", map[string]any{"query": "cafe", "conversation_id": other}), "not_found")

	// An edit changes what matches; a delete takes the message out.
	request[msgReply](t, ca, "message.edit", map[string]any{"conversation_id": conv, "message_id": cafe.MessageID, "body": "tea time"})
	testenv.WaitFor(t, 10*time.Second, "the edit to reach the index", func() bool {
		return len(search(map[string]any{"query": "cafe"}).Messages) == 0 && len(search(map[string]any{"query": "tea"}).Messages) == 1
	})
	request[map[string]any](t, ca, "message.delete", map[string]any{"conversation_id": conv, "message_id": cafe.MessageID})
	testenv.WaitFor(t, 10*time.Second, "the delete to reach the results", func() bool {
		return len(search(map[string]any{"query": "tea"}).Messages) == 0
	})

	// Pages, newest first: five matches, pages of two.
	var want []string
	for i := range 5 {
		want = slices.Insert(want, 0, send(t, ca, conv, "page match "+strings.Repeat("x", i)).MessageID)
	}
	testenv.WaitFor(t, 10*time.Second, "five matches", func() bool { return len(search(map[string]any{"query": "page match", "limit": 50}).Messages) == 5 })
	var got []string
	for data := (map[string]any{"query": "page match", "limit": 2}); ; {
		r := search(data)
		got = append(got, ids(r)...)
		if !r.HasMore {
			break
		}
		data["cursor"] = r.NextCursor
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged by cursor: %v, want %v", got, want)
	}
	got = nil
	for data := (map[string]any{"query": "page match", "limit": 2, "conversation_id": conv}); ; {
		r := search(data)
		got = append(got, ids(r)...)
		if !r.HasMore {
			break
		}
		data["before_seq"] = r.Messages[len(r.Messages)-1].Seq
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged by before_seq: %v, want %v", got, want)
	}

	// HTTP.
	req, _ := http.NewRequest(http.MethodGet, n2.HTTP+"/api/v1/search?"+url.Values{"query": {"page match"}, "limit": {"3"}}.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+env.Token(b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var hr searchReply
	_ = json.NewDecoder(resp.Body).Decode(&hr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !slices.Equal(ids(hr), want[:3]) || !hr.HasMore {
		t.Errorf("GET /api/v1/search: %d %v", resp.StatusCode, ids(hr))
	}

	for _, bad := range []map[string]any{{"query": ""}, {"query": "  "}, {"query": strings.Repeat("a", 257)}, {"query": "a\u0000b"},
		{"query": "a", "limit": 51}, {"query": "a", "limit": 0}, {"query": "a", "cursor": "nope"}, {"query": "a", "before_seq": -1}} {
		wantCode(t, try(cb, "search", bad), "bad_request")
	}
}
