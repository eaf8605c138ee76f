package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	json "github.com/segmentio/encoding/json"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/metrics"
)

// PresenceState is where presence lives across nodes (infra/fanoutbus).
type PresenceState interface {
	Online(ctx context.Context, user string, at time.Time) (first bool, err error)
	Offline(ctx context.Context, user string, at time.Time) (last bool, err error)
	Settle(ctx context.Context, user string, at time.Time) (offline bool, err error)
}

// Contacts are the users who share a conversation with each of users (the
// read model).
type Contacts interface {
	ContactsOf(ctx context.Context, users []string, limit int) (map[string][]string, error)
}

// OnlineLog records who was online on which day (analytics).
type OnlineLog interface {
	RecordOnline(ctx context.Context, users []string, at time.Time) error
}

// Publisher carries ephemeral pushes to the nodes of their recipients.
type Publisher interface {
	PublishMany(ctx context.Context, ds []domain.Delivery) error
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
	// Days, if set, records each user announced online (best effort).
	Days OnlineLog

	queue chan announcement
	// failed: users whose presence change did not reach Redis (it was
	// away a moment), to apply again (Reconcile): left, a user whose last
	// connection closed then stayed online for others until this node
	// died, and one whose first opened stayed offline.
	mu     sync.Mutex
	failed map[string]time.Time // the time of a failed Settle, else zero
}

// MaxPresenceRetries bounds the users a node keeps to retry: past it, a
// failure is only logged (Redis is away for long, and the liveness lapse
// sweeps this node's users if it lasts).
const MaxPresenceRetries = 100_000

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
	MaxContacts = 10000
	// An announcement worker takes up to presenceBatch announcements at
	// once: one contacts query for the users not cached, one routes lookup
	// and one pipeline for all their pushes.
	presenceQueue   = 4096
	presenceWorkers = 2
	presenceBatch   = 256
)

// NewPresence decorates routes (debounce 0: offline is announced at once;
// negative: the default).
func NewPresence(routes Routes, state PresenceState, contacts Contacts, push Publisher, debounce time.Duration, log *slog.Logger) *Presence {
	if debounce < 0 {
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
					p.announce(ctx, p.gather(a))
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
		p.fail(user, time.Time{})
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
		p.fail(user, time.Time{})
	}
	if last {
		p.settleLater(user, now)
	}
	return err
}

// settleLater announces user offline after the debounce if the user has
// not come back by then.
func (p *Presence) settleLater(user string, at time.Time) {
	time.AfterFunc(p.Debounce, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.settle(ctx, user, at)
	})
}

func (p *Presence) settle(ctx context.Context, user string, at time.Time) {
	if off, err := p.State.Settle(ctx, user, at); err != nil {
		p.Log.Warn("presence not settled", "user_id", user, "err", err)
		p.fail(user, at)
	} else if off {
		p.enqueue(announcement{user, domain.PresenceOffline, at})
	}
}

func (p *Presence) fail(user string, settleAt time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed == nil {
		p.failed = map[string]time.Time{}
	}
	if len(p.failed) < MaxPresenceRetries {
		p.failed[user] = settleAt
	}
}

// Failed takes the users whose presence change failed since the last call.
func (p *Presence) Failed() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.failed
	p.failed = nil
	return out
}

// Reconcile applies user's presence again after a failure, as the node's
// connections of the user now stand (connected: the node holds one); the
// caller holds the user's lock, so no connection opens or closes
// meanwhile. settleAt is a failed Settle's time, to settle again.
func (p *Presence) Reconcile(ctx context.Context, user string, connected bool, settleAt time.Time) {
	now := time.Now()
	if connected {
		first, err := p.State.Online(ctx, user, now)
		switch {
		case err != nil:
			p.fail(user, time.Time{})
		case first:
			p.enqueue(announcement{user, domain.PresenceOnline, now})
		}
		return
	}
	last, err := p.State.Offline(ctx, user, now)
	switch {
	case err != nil:
		p.fail(user, settleAt)
	case last:
		p.settleLater(user, now)
	case !settleAt.IsZero():
		p.settle(ctx, user, settleAt)
	}
}

// AnnounceAll tells the contacts of each of users that the user is now
// status (the sweep of a dead node, a previous run's users), a batch at a
// time, each waited for: through the queue, which drops what does not
// fit, a node's thousands of users mostly went unannounced.
func (p *Presence) AnnounceAll(ctx context.Context, status string, users map[string]time.Time) {
	batch := make([]announcement, 0, presenceBatch)
	for u, at := range users {
		if batch = append(batch, announcement{u, status, at}); len(batch) == presenceBatch {
			p.announce(ctx, batch)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		p.announce(ctx, batch)
	}
}

func (p *Presence) enqueue(a announcement) {
	select {
	case p.queue <- a:
	default:
		metrics.PresenceDropped.Inc()
	}
}

// gather takes what else waits in the queue, up to presenceBatch, and
// keeps each user's latest change.
func (p *Presence) gather(first announcement) []announcement {
	batch := []announcement{first}
	at := map[string]int{first.user: 0}
	for len(batch) < presenceBatch {
		select {
		case a := <-p.queue:
			if i, ok := at[a.user]; ok {
				batch[i] = a
				continue
			}
			at[a.user] = len(batch)
			batch = append(batch, a)
		default:
			return batch
		}
	}
	return batch
}

func (p *Presence) announce(ctx context.Context, batch []announcement) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.push(ctx, batch); err != nil {
		metrics.PresenceDropped.Add(float64(len(batch)))
		p.Log.Warn("presence not announced", "users", len(batch), "err", err)
	}
}

func (p *Presence) push(ctx context.Context, batch []announcement) error {
	users := make([]string, len(batch))
	var online []string
	for i, a := range batch {
		users[i] = a.user
		if a.status == domain.PresenceOnline {
			online = append(online, a.user)
		}
	}
	if p.Days != nil && len(online) > 0 {
		if err := p.Days.RecordOnline(ctx, online, time.Now()); err != nil {
			p.Log.Warn("online days not recorded", "users", len(online), "err", err)
		}
	}
	// Read for every batch, never cached: a user who left the last shared
	// conversation gets no more of these pushes.
	contacts, err := p.Contacts.ContactsOf(ctx, users, MaxContacts)
	if err != nil {
		return err
	}
	ds := make([]domain.Delivery, 0, len(batch))
	for _, a := range batch {
		if len(contacts[a.user]) == 0 {
			continue
		}
		frame, err := json.Marshal(domain.PushFrame{Type: domain.PushPresence,
			Data: domain.PresencePush{UserID: a.user, Status: a.status, LastSeen: a.at.UTC().Format(time.RFC3339Nano)}})
		if err != nil {
			return fmt.Errorf("presence frame: %w", err)
		}
		metrics.PresenceAnnounced.WithLabelValues(a.status).Inc()
		ds = append(ds, domain.Delivery{Recipients: contacts[a.user], Frame: frame, EventAtUnixMs: a.at.UnixMilli()})
	}
	if len(ds) == 0 {
		return nil
	}
	return p.Push.PublishMany(ctx, ds)
}
