package commands

import (
	"context"
	"sync"
	"time"

	json "github.com/segmentio/encoding/json"

	"github.com/parley-chat/parley/domain"
)

// Typing signals that the actor is typing. It goes through Redis only: never
// logged, never replayed.
type Typing struct {
	ConversationID string `json:"conversation_id"`
}

// TypingHandler handles Typing.
type TypingHandler struct {
	members   MemberList
	ephemeral Ephemeral
	access    MemberCheck
	clock     Clock
	gate      *typingGate
}

// typingEvery: a user's typing in one conversation is pushed at most once
// per typingEvery on a node. Clients repeat typing every few seconds while
// their user types, so the repeats in between tell the others nothing,
// and a client sending it in a loop does not make every member's
// connection carry its rate (one push to each of up to 1000 members per
// command). A repeat within typingEvery is answered as done. A message the
// user sends there ends the typing (clients clear the indicator on it), so
// the next typing goes out at once.
const typingEvery = time.Second

// maxTypingKeys bounds the gate's memory: past it, entries older than
// typingEvery are dropped, and if none is, all of them.
const maxTypingKeys = 100_000

type typingGate struct {
	mu   sync.Mutex
	last map[[2]string]time.Time // (user, conversation) -> last pushed
}

// forget lets user's next typing in conv go out at once (a nil gate
// holds nothing).
func (g *typingGate) forget(user, conv string) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.last, [2]string{user, conv})
}

// pass reports whether user's typing in conv goes out now, and notes it.
func (g *typingGate) pass(user, conv string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := [2]string{user, conv}
	if at, ok := g.last[k]; ok && now.Sub(at) < typingEvery {
		return false
	}
	if len(g.last) >= maxTypingKeys {
		for k, at := range g.last {
			if now.Sub(at) >= typingEvery {
				delete(g.last, k)
			}
		}
		if len(g.last) >= maxTypingKeys {
			clear(g.last)
		}
	}
	g.last[k] = now
	return true
}

// Ephemeral carries pushes that are never logged (typing).
type Ephemeral interface {
	Publish(ctx context.Context, d domain.Delivery) error
}

// NewTypingHandler builds the handler (clock nil: the real one).
func NewTypingHandler(members MemberList, ephemeral Ephemeral, access MemberCheck, clock Clock) TypingHandler {
	mustHave("TypingHandler", map[string]any{"members": members, "ephemeral": ephemeral, "access": access})
	return TypingHandler{members: members, ephemeral: ephemeral, access: access, clock: clockOr(clock),
		gate: &typingGate{last: map[[2]string]time.Time{}}}
}

// Handle pushes typing to the other members.
func (h TypingHandler) Handle(ctx context.Context, actor string, c Typing) error {
	if err := domain.ValidateID("conversation_id", c.ConversationID); err != nil {
		return err
	}
	if err := h.access.RequireMember(ctx, c.ConversationID, actor); err != nil {
		return err
	}
	if !h.gate.pass(actor, c.ConversationID, h.clock.Now()) {
		return nil
	}
	ms, _, err := h.members.Memberships(ctx, c.ConversationID)
	if err != nil {
		return err
	}
	rcpt := make([]string, 0, len(ms))
	for u, m := range ms {
		if m.Member && u != actor {
			rcpt = append(rcpt, u)
		}
	}
	frame, _ := json.Marshal(domain.PushFrame{Type: domain.PushTyping,
		Data: domain.TypingPush{ConversationID: c.ConversationID, UserID: actor}})
	return h.ephemeral.Publish(ctx, domain.Delivery{ConversationID: c.ConversationID, Recipients: rcpt, Frame: frame,
		EventAtUnixMs: h.clock.Now().UnixMilli()})
}
