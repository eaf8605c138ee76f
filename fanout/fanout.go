// Package fanout turns each logged event into a delivery for the gateway
// nodes. It reads the log in order, so the membership it applies and the
// recipients it computes follow the log: a joiner receives from its own
// member.joined on, and a leaver receives nothing after its member.left.
package fanout

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Memberships is the membership state the fan-out keeps current.
type Memberships interface {
	ApplyMembership(ctx context.Context, conv string, seq int64, member bool, users ...string) error
	Memberships(ctx context.Context, conv string) (map[string]domain.Membership, bool, error)
	MarkComplete(ctx context.Context, conv string) error
	MarkCreated(ctx context.Context, conv string) error
}

// ReadModel rebuilds membership the cache lost.
type ReadModel interface {
	// WaitOffset waits until the projector applied partition up to offset.
	WaitOffset(ctx context.Context, partition int32, offset int64, limit time.Duration) error
	Memberships(ctx context.Context, conv string) (map[string]domain.Membership, error)
}

// Publisher hands a delivery to every gateway node.
type Publisher interface {
	Publish(ctx context.Context, d domain.Delivery) error
	// Stream names the ordered stream that carries conv's deliveries.
	Stream(conv string) string
}

// Handler fans events out.
type Handler struct {
	members Memberships
	bus     Publisher
	read    ReadModel
	// MaxAge: older events update membership but are not pushed live; a
	// client that missed them catches up with sync. It only matters when a
	// brand-new fan-out group starts on an old log.
	MaxAge time.Duration
	now    func() time.Time

	mu   sync.Mutex
	prev map[streamPartition]int64
}

type streamPartition struct {
	stream    string
	partition int32
}

// New builds a fan-out handler.
func New(members Memberships, bus Publisher, read ReadModel) *Handler {
	return &Handler{members: members, bus: bus, read: read, MaxAge: 5 * time.Minute, now: time.Now, prev: map[streamPartition]int64{}}
}

// Handle processes the event at partition/offset.
func (h *Handler) Handle(ctx context.Context, partition int32, offset int64, value []byte) error {
	seq := offset + 1
	e, err := domain.DecodeEvent(value)
	if err != nil {
		return nil // poison: nothing to push; the projector records it
	}
	var left string
	switch e.Type {
	case domain.EvConversationCreated:
		var p domain.ConversationCreated
		if err := e.Payload(&p); err == nil {
			err = h.members.ApplyMembership(ctx, e.ConversationID, seq, true, p.Members...)
			if err == nil {
				err = h.members.MarkCreated(ctx, e.ConversationID)
			}
		}
		if err != nil {
			return err
		}
	case domain.EvMemberJoined, domain.EvMemberLeft:
		var p domain.MemberChanged
		if err := e.Payload(&p); err != nil {
			return nil
		}
		joined := e.Type == domain.EvMemberJoined
		if err := h.members.ApplyMembership(ctx, e.ConversationID, seq, joined, p.UserID); err != nil {
			return err
		}
		if !joined {
			left = p.UserID
		}
	}
	if h.MaxAge > 0 && h.now().Sub(e.At) > h.MaxAge {
		return nil
	}
	ms, complete, err := h.members.Memberships(ctx, e.ConversationID)
	if err == nil && !complete {
		ms, err = h.reload(ctx, e.ConversationID, partition, offset)
	}
	if err != nil {
		return err
	}
	frame, err := domain.EncodePush(e, seq)
	if err != nil {
		return nil
	}
	rcpt := RecipientsAt(ms, seq)
	if left != "" {
		rcpt = append(rcpt, left)
	}
	// Partitions are handled one event at a time each, so prev of a key is
	// read and written by one goroutine at a time; the lock guards the map.
	key := streamPartition{h.bus.Stream(e.ConversationID), partition}
	h.mu.Lock()
	prev := h.prev[key]
	h.mu.Unlock()
	err = h.bus.Publish(ctx, domain.Delivery{ConversationID: e.ConversationID, Seq: seq, Partition: partition,
		Recipients: rcpt, Frame: frame, EventAtUnixMs: e.At.UnixMilli(), Prev: prev})
	if err == nil {
		h.mu.Lock()
		h.prev[key] = seq
		h.mu.Unlock()
	}
	return err
}

// RecipientsAt is the members whose latest change is a join at or before seq.
// Joins logged after seq (already applied by a faster command path) are
// left out, so nobody receives events from before they joined.
func RecipientsAt(ms map[string]domain.Membership, seq int64) []string {
	out := make([]string, 0, len(ms))
	for u, m := range ms {
		if m.Member && m.Seq <= seq {
			out = append(out, u)
		}
	}
	return out
}

// reload rebuilds a conversation's membership the cache lost, from the read
// model once it has applied every event before this one. The handler
// returns the error and the event is retried, so nothing is pushed to a
// wrong set of recipients.
func (h *Handler) reload(ctx context.Context, conv string, partition int32, offset int64) (map[string]domain.Membership, error) {
	if h.read == nil {
		return nil, fmt.Errorf("%w: membership of %s unknown and no read model to rebuild it", domain.ErrUnavailable, conv)
	}
	if err := h.read.WaitOffset(ctx, partition, offset, 10*time.Second); err != nil {
		return nil, err
	}
	ms, err := h.read.Memberships(ctx, conv)
	if err != nil {
		return nil, err
	}
	for u, m := range ms {
		if err := h.members.ApplyMembership(ctx, conv, m.Seq, m.Member, u); err != nil {
			return nil, err
		}
	}
	if len(ms) > 0 {
		if err := h.members.MarkComplete(ctx, conv); err != nil {
			return nil, err
		}
	}
	ms, _, err = h.members.Memberships(ctx, conv)
	return ms, err
}
