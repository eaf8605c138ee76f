package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
	"github.com/parley-chat/parley/projections"
)

// Reactions on two nodes (PROTOCOL.md "Extensions"): logged with a seq,
// pushed to the members, replayed by sync, one per user and emoji, shown by
// history and thread; members only, one emoji each.
func TestReactions(t *testing.T) {
	env := testenv.New(t)
	n1 := env.StartNode()
	n2 := env.StartNode("gateway")
	a, b, c := user("xa"), user("xb"), user("xc")
	ca, cb, cc := dial(t, env, n1, a), dial(t, env, n2, b), dial(t, env, n2, c)
	conv := createGroup(t, ca, b).ConversationID
	m := send(t, ca, conv, "pizza tonight?")
	react := func(emoji string) map[string]any {
		return map[string]any{"conversation_id": conv, "message_id": m.MessageID, "emoji": emoji}
	}

	got := request[msgReply](t, cb, "message.react", react("👍")).Message
	if !slices.Equal(got.Reactions["👍"], []string{b}) {
		t.Fatalf("ack reactions %v, want 👍 by b", got.Reactions)
	}
	p := reactionPush(t, ca, domain.PushReactionAdded)
	if p.UserID != b || p.Emoji != "👍" || p.MessageID != m.MessageID || p.Seq <= m.Seq {
		t.Errorf("a got %+v, want b's 👍 with a seq after the message's", p)
	}
	// The same reaction again is one; a family emoji (one grapheme of
	// several code points) is one emoji.
	if again := request[msgReply](t, cb, "message.react", react("👍")).Message; !slices.Equal(again.Reactions["👍"], []string{b}) {
		t.Errorf("b's 👍 twice: %v, want once", again.Reactions)
	}
	family := "👨‍👩‍👧"
	request[msgReply](t, ca, "message.react", react(family))
	both := request[msgReply](t, ca, "message.react", react("👍")).Message
	if !slices.Equal(both.Reactions["👍"], []string{b, a}) || !slices.Equal(both.Reactions[family], []string{a}) {
		t.Errorf("reactions %v, want 👍 by b then a, and the family by a", both.Reactions)
	}
	off := request[msgReply](t, cb, "message.unreact", react("👍")).Message
	if !slices.Equal(off.Reactions["👍"], []string{a}) {
		t.Errorf("after b's unreact: %v, want 👍 by a alone", off.Reactions)
	}
	if p := reactionPush(t, ca, domain.PushReactionRemoved); p.UserID != b || p.Emoji != "👍" {
		t.Errorf("a got %+v, want b's 👍 removed", p)
	}

	// history and thread show what the read model holds.
	testenv.WaitFor(t, 10*time.Second, "history to show the reactions", func() bool {
		h := request[historyReply](t, cb, "history", map[string]any{"conversation_id": conv})
		return len(h.Messages) == 1 && slices.Equal(h.Messages[0].Reactions["👍"], []string{a}) &&
			slices.Equal(h.Messages[0].Reactions[family], []string{a}) && len(h.Messages[0].Reactions) == 2
	})
	th := request[projections.Thread](t, cb, "thread", map[string]any{"conversation_id": conv, "message_id": m.MessageID})
	if !slices.Equal(th.Root.Reactions["👍"], []string{a}) {
		t.Errorf("thread root reactions %v", th.Root.Reactions)
	}

	// sync replays them, in order, with their seqs.
	late := dial(t, env, n1, b)
	request[map[string]any](t, late, "sync", map[string]any{"positions": map[string]int64{conv: m.Seq}})
	var kinds []string
	testenv.WaitFor(t, 20*time.Second, "sync to replay the four reaction events", func() bool {
		for {
			select {
			case p := <-late.Pushes:
				if strings.HasPrefix(p.Type, "reaction.") {
					kinds = append(kinds, p.Type)
				}
			default:
				return len(kinds) >= 4
			}
		}
	})
	if want := []string{"reaction.added", "reaction.added", "reaction.added", "reaction.removed"}; !slices.Equal(kinds, want) {
		t.Errorf("sync replayed %v, want %v", kinds, want)
	}

	for _, bad := range []string{"", "ab", "👍👍", " ", strings.Repeat("👍\u200d", 9) + "👍", "\x00"} {
		wantCode(t, try(cb, "message.react", react(bad)), "bad_request")
	}
	wantCode(t, try(cc, "message.react", react("👍")), "not_found") // not a member
	wantCode(t, try(cb, "message.react", map[string]any{"conversation_id": conv, "message_id": "m_nosuch", "emoji": "👍"}), "not_found")
	request[map[string]any](t, ca, "message.delete", map[string]any{"conversation_id": conv, "message_id": m.MessageID})
	wantCode(t, try(cb, "message.react", react("🎉")), "conflict")
}

func reactionPush(t *testing.T, c *wsclient.Client, typ string) domain.ReactionPush {
	t.Helper()
	var p domain.ReactionPush
	if err := json.Unmarshal(nextPush(t, c, typ).Data, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// A user has at most domain.MaxReactionsPerUser different reactions on one
// message, and a message at most domain.MaxEmojiPerMessage different emoji:
// past either a new one is a conflict; an emoji the message has can still
// be added, and removing one makes room.
func TestReactionsAreBounded(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.RateLimit, env.Cfg.RateBurst = 1000, 1000
	n := env.StartNode()
	a, b, c := user("ra"), user("rb"), user("rc")
	ca, cb, cc := dial(t, env, n, a), dial(t, env, n, b), dial(t, env, n, c)
	conv := createGroup(t, ca, b, c).ConversationID
	m := send(t, ca, conv, "react to me")
	react := func(cl *wsclient.Client, emoji string) error {
		return try(cl, "message.react", map[string]any{"conversation_id": conv, "message_id": m.MessageID, "emoji": emoji})
	}
	chars := []rune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
	next := 0
	fill := func(cl *wsclient.Client, n int) {
		for range n {
			if err := react(cl, string(chars[next])); err != nil {
				t.Fatalf("reaction %d: %v", next, err)
			}
			next++
		}
	}
	fill(ca, domain.MaxReactionsPerUser)
	wantCode(t, react(ca, string(chars[next])), "conflict")
	fill(cb, domain.MaxReactionsPerUser)
	fill(cc, domain.MaxEmojiPerMessage-2*domain.MaxReactionsPerUser)
	wantCode(t, react(cc, string(chars[next])), "conflict")
	if err := react(cc, "a"); err != nil { // an emoji the message has
		t.Fatalf("c's reaction with an emoji the message has: %v", err)
	}
	if err := try(ca, "message.unreact", map[string]any{"conversation_id": conv, "message_id": m.MessageID, "emoji": "b"}); err != nil {
		t.Fatal(err)
	}
	// a has room again, and the message room for one new emoji.
	if err := react(ca, "0"); err != nil {
		t.Fatalf("a's reaction after removing one: %v", err)
	}
	wantCode(t, react(cb, "1"), "conflict")
}
