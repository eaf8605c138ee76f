package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/metrics"
)

// PresenceState is where presence lives across nodes (infra/fanoutbus).
type PresenceState interface {
	Online(ctx context.Context, user string, at time.Time) (first bool, err error)
	Offline(ctx context.Context, user string, at time.Time) (last bool, err error)
	Settle(ctx context.Context, user string, at time.Time) (offline bool, err error)
}

// Contacts are the users who share a conversation with a user (the read
// model).
type Contacts interface {
	Contacts(ctx context.Context, user string, limit int) ([]string, error)
}

// Publisher carries ephemeral pushes to the nodes of their recipients.
type Publisher interface {
	Publish(ctx context.Context, d domain.Delivery) error
}

// Presence decorates a node's Routes: a user's first connection anywhere
// announces `online` to the user's contacts, and the last one closing
// announces `offline` once Debounce has passed without the user coming back
// (a reload or a phone switching networks does not flap). Presence is best
// effort: a failure is logged and never refuses a connection, and
// announcements go through a bounded queue served by a few workers, so that
// connection churn cannot queue unbounded work or slow down connecting.
type Presence struct {
	Routes   Routes
	State    PresenceState
	Contacts Contacts
	Push     Publisher
	Debounce time.Duration
	Log      *slog.Logger

	queue chan announcement
}

type announcement struct {
	user   string
	status string
	at     time.Time
}

// Presence bounds.
const (
	// DefaultPresenceDebounce is how long a user whose last connection
	// closed stays online for others.
	DefaultPresenceDebounce = 5 * time.Second
	// MaxContacts bounds the users one announcement reaches.
	MaxContacts     = 10000
	presenceQueue   = 4096
	presenceWorkers = 4
)

// NewPresence decorates routes (debounce 0: the default).
func NewPresence(routes Routes, state PresenceState, contacts Contacts, push Publisher, debounce time.Duration, log *slog.Logger) *Presence {
	if debounce <= 0 {
		debounce = DefaultPresenceDebounce
	}
	return &Presence{Routes: routes, State: state, Contacts: contacts, Push: push, Debounce: debounce, Log: log,
		queue: make(chan announcement, presenceQueue)}
}

// Start runs the announcement workers until ctx ends.
func (p *Presence) Start(ctx context.Context) {
	for range presenceWorkers {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case a := <-p.queue:
					p.announce(ctx, a)
				}
			}
		}()
	}
}

// Join routes the user here and records the connection.
func (p *Presence) Join(ctx context.Context, user string) error {
	if err := p.Routes.Join(ctx, user); err != nil {
		return err
	}
	now := time.Now()
	first, err := p.State.Online(ctx, user, now)
	if err != nil {
		p.Log.Warn("presence not recorded", "user_id", user, "err", err)
		return nil
	}
	if first {
		p.enqueue(announcement{user, domain.PresenceOnline, now})
	}
	return nil
}

// Leave unroutes the user and, if this was the user's last connection
// anywhere, announces offline after the debounce.
func (p *Presence) Leave(ctx context.Context, user string) error {
	err := p.Routes.Leave(ctx, user)
	now := time.Now()
	last, perr := p.State.Offline(ctx, user, now)
	if perr != nil {
		p.Log.Warn("presence not recorded", "user_id", user, "err", perr)
	}
	if last {
		time.AfterFunc(p.Debounce, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if off, err := p.State.Settle(ctx, user, now); err != nil {
				p.Log.Warn("presence not settled", "user_id", user, "err", err)
			} else if off {
				p.enqueue(announcement{user, domain.PresenceOffline, now})
			}
		})
	}
	return err
}

// Announce tells user's contacts that the user is now status (the sweep of
// dead nodes).
func (p *Presence) Announce(user, status string, at time.Time) {
	p.enqueue(announcement{user, status, at})
}

func (p *Presence) enqueue(a announcement) {
	select {
	case p.queue <- a:
	default:
		metrics.PresenceDropped.Inc()
	}
}

func (p *Presence) announce(ctx context.Context, a announcement) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.push(ctx, a); err != nil {
		metrics.PresenceDropped.Inc()
		p.Log.Warn("presence not announced", "user_id", a.user, "status", a.status, "err", err)
	}
}

func (p *Presence) push(ctx context.Context, a announcement) error {
	contacts, err := p.Contacts.Contacts(ctx, a.user, MaxContacts)
	if err != nil || len(contacts) == 0 {
		return err
	}
	frame, err := json.Marshal(domain.PushFrame{Type: domain.PushPresence,
		Data: domain.PresencePush{UserID: a.user, Status: a.status, LastSeen: a.at.UTC().Format(time.RFC3339Nano)}})
	if err != nil {
		return fmt.Errorf("presence frame: %w", err)
	}
	metrics.PresenceAnnounced.WithLabelValues(a.status).Inc()
	return p.Push.Publish(ctx, domain.Delivery{Recipients: contacts, Frame: frame, EventAtUnixMs: a.at.UnixMilli()})
}
