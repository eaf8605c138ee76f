// Package commands holds Parley's use cases: each file takes one command,
// authorizes and validates it, decides, and appends events to the log. The
// ok reply goes out only after the log has the event with acks=all.
//
// Each handler holds only the ports it uses: small interfaces declared next
// to their use (EventLog and Clock here, shared by most; MembershipCache and
// MembersReadModel in access.go; Idempotency and ClientMsgReadModel in
// send_message.go; ...). New builds every handler from Deps, the one place
// that knows every adapter; tests build one handler on in-memory fakes.
package commands

import (
	"context"
	"log/slog"
	"time"

	"github.com/parley-chat/parley/domain"
)

// EventLog is the durable log; Append returns the event's seq.
type EventLog interface {
	Append(ctx context.Context, e domain.Event) (int64, error)
}

// Clock tells the time of events and paces waits (the pending-send
// deadline and its polls). The real one is the default; tests use a fake.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func clockOr(c Clock) Clock {
	if c == nil {
		return realClock{}
	}
	return c
}

// MemberCheck is the access rule every use case applies (Access).
type MemberCheck interface {
	RequireMember(ctx context.Context, conv, user string) error
}

// Freshness waits until the read model has every event of conv's partition
// that was acked before the call.
type Freshness interface {
	WaitProjected(ctx context.Context, conv string) error
}

// MembershipStore is the whole membership cache as the wiring hands it out:
// what the access check reads and rebuilds, and what conversation.create
// writes.
type MembershipStore interface {
	MembershipCache
	ConversationCache
}

// ReadModel is everything commands read from the projections.
type ReadModel interface {
	MembersReadModel
	ConversationReadModel
	MessageReadModel
	ClientMsgReadModel
}

// Deps are every port, for New to hand each handler the ones it uses.
type Deps struct {
	Log       EventLog
	Members   MembershipStore
	Read      ReadModel
	Fresh     Freshness
	Idem      Idempotency
	Ephemeral Ephemeral
	Locks     MessageLocks
	// Clock is the real clock when nil.
	Clock Clock
	// IdemTTL is how long a send's record is kept (0: 48 h).
	IdemTTL time.Duration
	// PendingStale is how long a send in flight on another node is waited
	// for before it is presumed dead and checked against the log (0: 10 s).
	PendingStale time.Duration
}

// Handlers is every use case, for the transports.
type Handlers struct {
	CreateConversation CreateConversationHandler
	AddMember          AddMemberHandler
	LeaveConversation  LeaveConversationHandler
	SendMessage        SendMessageHandler
	EditMessage        EditMessageHandler
	DeleteMessage      DeleteMessageHandler
	Typing             TypingHandler
	MarkRead           MarkReadHandler
	React              ReactHandler
	Access             Access
}

// New builds every handler, each on the ports it uses.
func New(d Deps) *Handlers {
	a := NewAccess(d.Members, d.Read, d.Fresh)
	typing := NewTypingHandler(d.Members, d.Ephemeral, a, d.Clock)
	send := NewSendMessageHandler(d.Log, d.Idem, a, d.Fresh, d.Read,
		SendConfig{IdemTTL: d.IdemTTL, PendingStale: d.PendingStale, Clock: d.Clock})
	send.typing = typing.gate
	return &Handlers{
		CreateConversation: NewCreateConversationHandler(d.Log, d.Members, a, d.Fresh, d.Read, d.Clock),
		AddMember:          NewAddMemberHandler(d.Log, d.Members, a, d.Clock),
		LeaveConversation:  NewLeaveConversationHandler(d.Log, d.Members, a, d.Clock),
		SendMessage:        send,
		EditMessage:        NewEditMessageHandler(d.Log, a, d.Fresh, d.Read, d.Locks, d.Clock),
		DeleteMessage:      NewDeleteMessageHandler(d.Log, a, d.Fresh, d.Read, d.Locks, d.Clock),
		Typing:             typing,
		MarkRead:           NewMarkReadHandler(d.Log, a, d.Clock),
		React:              NewReactHandler(d.Log, a, d.Fresh, d.Read, d.Clock),
		Access:             a,
	}
}

// mustHave fails fast when a handler is built without one of its ports.
func mustHave(handler string, ports map[string]any) {
	for name, p := range ports {
		if p == nil {
			panic("commands: " + handler + " built without " + name)
		}
	}
}

// cacheAfterAppend writes what the membership cache learns from an event
// that is in the log already: a few tries, then a warning, never an error.
// The command has been accepted once its event is logged; answering
// unavailable then made the client retry and log it again (a second
// group, a second join), against the contract ("unavailable: nothing was
// accepted"). The fan-out applies the same change from the log in order,
// and until then the access check falls back to the read model for a
// conversation its cache does not hold complete.
func cacheAfterAppend(ctx context.Context, what, conv string, write func(context.Context) error) {
	err := write(ctx)
	for _, wait := range []time.Duration{50 * time.Millisecond, 150 * time.Millisecond} {
		if err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			err = write(ctx)
		}
	}
	if err != nil {
		slog.Default().Warn("membership cache not written after the event was logged; the fan-out will write it",
			"what", what, "conversation_id", conv, "err", err)
	}
}

// appendEvent builds an event at the clock's time and appends it, returning
// it with its seq.
func appendEvent(ctx context.Context, log EventLog, clock Clock, typ, conv, actor string, payload any) (domain.Event, int64, error) {
	e, err := domain.NewEvent(typ, conv, actor, clock.Now().UTC(), payload)
	if err != nil {
		return e, 0, err
	}
	seq, err := log.Append(ctx, e)
	return e, seq, err
}
