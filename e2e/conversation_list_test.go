package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

type listPage struct {
	Conversations []domain.Conversation `json:"conversations"`
	HasMore       bool                  `json:"has_more"`
	NextCursor    string                `json:"next_cursor"`
}

// conversation.list is paginated: pages of limit conversations, most
// recent activity first, chained by next_cursor, every conversation once;
// the same over HTTP; bad limits and cursors are bad_request.
func TestConversationListPages(t *testing.T) {
	env := testenv.New(t)
	n := env.StartNode()
	a, b := user("a"), user("b")
	ca := dial(t, env, n, a)
	var want []string // most recent first
	for range 5 {
		c := createGroup(t, ca, b)
		want = slices.Insert(want, 0, c.ConversationID)
	}
	// A message moves the oldest conversation to the top.
	send(t, ca, want[4], "bump")
	want = append([]string{want[4]}, want[:4]...)

	testenv.WaitFor(t, 10*time.Second, "the list to show the bump", func() bool {
		first := request[listPage](t, ca, "conversation.list", map[string]any{"limit": 1})
		return len(first.Conversations) == 1 && first.Conversations[0].ConversationID == want[0]
	})
	var got []string
	cursor := ""
	pages := 0
	for {
		data := map[string]any{"limit": 2}
		if cursor != "" {
			data["cursor"] = cursor
		}
		p := request[listPage](t, ca, "conversation.list", data)
		pages++
		for _, c := range p.Conversations {
			got = append(got, c.ConversationID)
		}
		if p.HasMore != (p.NextCursor != "") {
			t.Fatalf("has_more %v with next_cursor %q", p.HasMore, p.NextCursor)
		}
		if !p.HasMore {
			break
		}
		if pages > 5 {
			t.Fatalf("pages never end: %v", got)
		}
		cursor = p.NextCursor
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("paged %v in %d pages, want %v in 3", got, pages, want)
	}
	// No limit: the default page holds all five, and says there is no more.
	all := request[listPage](t, ca, "conversation.list", map[string]any{})
	if len(all.Conversations) != 5 || all.HasMore {
		t.Fatalf("default page: %d conversations, has_more %v", len(all.Conversations), all.HasMore)
	}

	for _, bad := range []map[string]any{{"limit": 0}, {"limit": 201}, {"limit": -1}, {"cursor": "not-a-cursor"}, {"cursor": 5}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := ca.Request(ctx, "conversation.list", bad)
		cancel()
		var we *wsclient.Error
		if !errors.As(err, &we) || we.Code != "bad_request" {
			t.Errorf("conversation.list %v: %v, want bad_request", bad, err)
		}
	}

	// HTTP: the same pages through ?limit and ?cursor.
	get := func(q url.Values) (int, listPage) {
		req, _ := http.NewRequest(http.MethodGet, n.HTTP+"/api/v1/conversations?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+env.Token(a))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r listPage
		_ = json.NewDecoder(resp.Body).Decode(&r)
		return resp.StatusCode, r
	}
	st, p1 := get(url.Values{"limit": {"3"}})
	if st != http.StatusOK || len(p1.Conversations) != 3 || !p1.HasMore {
		t.Fatalf("HTTP page 1: %d %+v", st, p1)
	}
	st, p2 := get(url.Values{"limit": {"3"}, "cursor": {p1.NextCursor}})
	if st != http.StatusOK || len(p2.Conversations) != 2 || p2.HasMore || p2.Conversations[1].ConversationID != want[4] {
		t.Fatalf("HTTP page 2: %d %+v", st, p2)
	}
	for _, q := range []url.Values{{"limit": {"x"}}, {"limit": {"1000"}}, {"cursor": {"%%"}}} {
		if st, _ := get(q); st != http.StatusBadRequest {
			t.Errorf("GET conversations?%s: %d, want 400", q.Encode(), st)
		}
	}
}
