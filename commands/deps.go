// Package commands holds Parley's use cases: each file takes one command,
// authorizes and validates it, decides, and appends events to the log. The
// ok reply goes out only after the log has the event with acks=all.
package commands

import (
	"context"
	"time"

	"github.com/parley-chat/parley/domain"
)

// EventLog is the durable log; Append returns the event's seq.
type EventLog interface {
	Append(ctx context.Context, e domain.Event) (int64, error)
}

// MembershipCache is the fast membership state (Redis).
type MembershipCache interface {
	ApplyMembership(ctx context.Context, conv string, seq int64, member bool, users ...string) error
	Membership(ctx context.Context, conv, user string) (domain.Membership, bool, error)
	Memberships(ctx context.Context, conv string) (map[string]domain.Membership, bool, error)
	MarkComplete(ctx context.Context, conv string) error
	MarkCreated(ctx context.Context, conv string) error
}

// ReadModel is what commands read from the projections.
type ReadModel interface {
	Memberships(ctx context.Context, conv string) (map[string]domain.Membership, error)
	Conversation(ctx context.Context, conv string) (domain.Conversation, error)
	Message(ctx context.Context, conv, messageID string) (domain.Message, error)
	MessageByClientID(ctx context.Context, conv, sender, clientMsgID string) (domain.Message, bool, error)
}

// Freshness waits until the read model has every event of conv's partition
// that was acked before the call.
type Freshness interface {
	WaitProjected(ctx context.Context, conv string) error
}

// Idempotency keeps the records of message.send.
type Idempotency interface {
	// Reserve claims a send (see redisstore.Store.Reserve for intact).
	Reserve(ctx context.Context, conv, sender, clientMsgID, pending string, ttl time.Duration) (won bool, current string, intact bool, err error)
	// ReserveMember claims like Reserve in the same round trip as the
	// membership check, when the cache confirms the sender is a member;
	// member false: nothing was claimed, check access the long way.
	ReserveMember(ctx context.Context, conv, sender, clientMsgID, pending string, ttl time.Duration) (member, won bool, current string, intact bool, err error)
	Complete(ctx context.Context, conv, sender, clientMsgID, record string, ttl time.Duration) error
	TakeOver(ctx context.Context, conv, sender, clientMsgID, old, pending string, ttl time.Duration) (bool, error)
}

// Ephemeral carries pushes that are never logged (typing).
type Ephemeral interface {
	Publish(ctx context.Context, d domain.Delivery) error
}

// Deps are what every use case may need.
type Deps struct {
	Log       EventLog
	Members   MembershipCache
	Read      ReadModel
	Fresh     Freshness
	Idem      Idempotency
	Ephemeral Ephemeral
	Now       func() time.Time
	// IdemTTL is how long a send's record is kept (at least 24 h).
	IdemTTL time.Duration
	// PendingStale is how long a send in flight on another node is waited
	// for before it is presumed dead and checked against the log.
	PendingStale time.Duration
}

func (d *Deps) now() time.Time {
	if d.Now != nil {
		return d.Now().UTC()
	}
	return time.Now().UTC()
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
	Access             Access
}

// New builds every handler on the same dependencies.
func New(d Deps) *Handlers {
	if d.IdemTTL == 0 {
		d.IdemTTL = 48 * time.Hour
	}
	if d.PendingStale == 0 {
		d.PendingStale = 10 * time.Second
	}
	dp := &d
	a := Access{d: dp}
	return &Handlers{
		CreateConversation: CreateConversationHandler{d: dp, access: a},
		AddMember:          AddMemberHandler{d: dp, access: a},
		LeaveConversation:  LeaveConversationHandler{d: dp, access: a},
		SendMessage:        SendMessageHandler{d: dp, access: a},
		EditMessage:        EditMessageHandler{d: dp, access: a},
		DeleteMessage:      DeleteMessageHandler{d: dp, access: a},
		Typing:             TypingHandler{d: dp, access: a},
		MarkRead:           MarkReadHandler{d: dp, access: a},
		Access:             a,
	}
}

// appendEvent builds and appends an event, returning it with its seq.
func (d *Deps) appendEvent(ctx context.Context, typ, conv, actor string, payload any) (domain.Event, int64, error) {
	e, err := domain.NewEvent(typ, conv, actor, d.now(), payload)
	if err != nil {
		return e, 0, err
	}
	seq, err := d.Log.Append(ctx, e)
	return e, seq, err
}
