package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
	"github.com/parley-chat/parley/service"
)

type presenceReply struct {
	Presence []service.PresenceEntry `json:"presence"`
}

// Presence across two nodes (PROTOCOL.md "Extensions"): contacts are told
// when a user's first connection anywhere opens and when the last one
// closes (after the debounce, so a quick reconnect does not flap), a user
// with tabs on both nodes stays online until both close, strangers learn
// nothing, and presence.query agrees.
func TestPresence(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.PresenceDebounce = 300 * time.Millisecond
	n1 := env.StartNode()
	n2 := env.StartNode("gateway")
	a, b, c := user("pa"), user("pb"), user("pc")
	cb, cc := dial(t, env, n2, b), dial(t, env, n2, c)
	group := createGroup(t, cb, a).ConversationID
	createGroup(t, cc) // c shares nothing with a or b

	query := func(cl *wsclient.Client, ids ...string) map[string]service.PresenceEntry {
		t.Helper()
		out := map[string]service.PresenceEntry{}
		for _, e := range request[presenceReply](t, cl, "presence.query", map[string]any{"user_ids": ids}).Presence {
			out[e.UserID] = e
		}
		return out
	}
	// The group reaches the read model, which says who are contacts.
	testenv.WaitFor(t, 10*time.Second, "the group in the read model", func() bool {
		var r struct{ Conversations []any }
		raw, _ := json.Marshal(request[map[string]any](t, cb, "conversation.list", map[string]any{}))
		_ = json.Unmarshal(raw, &r)
		return len(r.Conversations) == 1
	})

	ca1 := dial(t, env, n1, a)
	p := presencePush(t, cb)
	if p.UserID != a || p.Status != domain.PresenceOnline {
		t.Fatalf("b got %+v, want a online", p)
	}
	testenv.WaitFor(t, 10*time.Second, "a's day online to be recorded for the analysts", func() bool {
		return env.Count(`SELECT count(*) FROM parley.presence_days WHERE name=$1 AND user_id=$2`, env.Cfg.DBSchema, a) == 1
	})
	got := query(cb, a, c, b)
	if got[a].Status != domain.PresenceOnline || got[b].Status != domain.PresenceOnline {
		t.Errorf("b queries: %+v, want a and b online", got)
	}
	if got[c].Status != domain.PresenceOffline || got[c].LastSeen != "" {
		t.Errorf("b queries c, a stranger: %+v, want offline without last_seen", got[c])
	}

	// A second tab on the other node; the first one closes: still online.
	ca2 := dial(t, env, n2, a)
	// The upgrade returns before n2 registers the connection; a reply on it
	// means n2 has recorded it (its read loop starts after Register).
	query(ca2, b)
	ca1.Close()
	testenv.WaitFor(t, 5*time.Second, "a's first tab to be gone from n1", func() bool { return n1.App.Hub.Count() == 0 })
	if got := query(cb, a); got[a].Status != domain.PresenceOnline {
		t.Errorf("a has a tab on n2: %+v, want online", got[a])
	}
	// The last tab closes: offline after the debounce, with last_seen.
	ca2.Close()
	p = presencePush(t, cb)
	if p.UserID != a || p.Status != domain.PresenceOffline || p.LastSeen == "" {
		t.Fatalf("b got %+v, want a offline with last_seen", p)
	}
	if got := query(cb, a); got[a].Status != domain.PresenceOffline || got[a].LastSeen == "" {
		t.Errorf("after a left: %+v, want offline with last_seen", got[a])
	}

	// Back online, then a reconnect within the debounce: one online, no flap.
	ca3 := dial(t, env, n1, a)
	if p := presencePush(t, cb); p.UserID != a || p.Status != domain.PresenceOnline {
		t.Fatalf("b got %+v, want a online again", p)
	}
	ca3.Close()
	ca4 := dial(t, env, n2, a)
	time.Sleep(3 * env.Cfg.PresenceDebounce) // the window in which a flap would be pushed
	drainPresence(t, cb, func(p domain.PresencePush) { t.Errorf("a reconnected within the debounce, yet b got %+v", p) })
	if got := query(cb, a); got[a].Status != domain.PresenceOnline {
		t.Errorf("after the quick reconnect: %+v, want online", got[a])
	}
	drainPresence(t, cc, func(p domain.PresencePush) { t.Errorf("c shares nothing with a, yet got %+v", p) })

	// b leaves the only conversation it shared with a: from the moment the
	// read model has it, b learns nothing more of a.
	request[map[string]any](t, cb, "conversation.leave", map[string]any{"conversation_id": group})
	testenv.WaitFor(t, 10*time.Second, "the leave in the read model", func() bool {
		e := query(cb, a)[a]
		return e.Status == domain.PresenceOffline && e.LastSeen == ""
	})
	ca4.Close()
	time.Sleep(3 * env.Cfg.PresenceDebounce) // past the debounce: an offline would have been pushed
	drainPresence(t, cb, func(p domain.PresencePush) { t.Errorf("b left the shared conversation, yet got %+v", p) })

	wantCode(t, try(cb, "presence.query", map[string]any{"user_ids": []string{}}), "bad_request")
	many := make([]string, service.MaxPresenceQuery+1)
	for i := range many {
		many[i] = user("x")
	}
	wantCode(t, try(cb, "presence.query", map[string]any{"user_ids": many}), "bad_request")
	wantCode(t, try(cb, "presence.query", map[string]any{"user_ids": []string{"bad id"}}), "bad_request")
}

// presencePush waits for the next presence push.
func presencePush(t *testing.T, c *wsclient.Client) domain.PresencePush {
	t.Helper()
	var p domain.PresencePush
	if err := json.Unmarshal(nextPush(t, c, domain.PushPresence).Data, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// drainPresence calls bad for every presence push already received.
func drainPresence(t *testing.T, c *wsclient.Client, bad func(domain.PresencePush)) {
	t.Helper()
	for {
		select {
		case p := <-c.Pushes:
			if p.Type == domain.PushPresence {
				var pp domain.PresencePush
				_ = json.Unmarshal(p.Data, &pp)
				bad(pp)
			}
		default:
			return
		}
	}
}
