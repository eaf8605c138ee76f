// Package fanout turns each logged event into a delivery for the gateway
// nodes. It reads the log in order, so the membership it applies and the
// recipients it computes follow the log: a joiner receives from its own
// member.joined on, and a leaver receives nothing after its member.left.
//
// Membership lives in the handler's memory, per partition it consumes: it
// is derived from the log in order, so a message event costs no store
// round trip. Redis is the backup it loads a conversation from the first
// time it meets it (and the shared state it keeps current for the command
// path); the read model is the backup of the backup.
package fanout

import (
	"context"
	"fmt"
	"slices"
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

// Publisher hands deliveries to the gateway nodes, in order, in one round
// trip.
type Publisher interface {
	// NodesOf returns the gateway nodes where each user is connected.
	NodesOf(ctx context.Context, users []string) (map[string][]string, error)
	// PublishBatch appends each delivery to the stream of its Node.
	PublishBatch(ctx context.Context, ds []domain.Delivery) error
}

// nodesInto is NodesOf into a map of the caller's (emptied first), which
// the handler reuses from batch to batch (fanoutbus.RouteCache has it).
type nodesInto interface {
	NodesInto(ctx context.Context, users []string, out map[string][]string) error
}

// Chains keeps each partition's Prev chains (per node, the seq of the last
// delivery published to it) where the partition's next fan-out finds them.
// Without them a partition that moved started its chains again at 0, so a
// delivery lost just before the move (a gateway's subscription cut while
// its stream was trimmed past it) was never seen as a gap.
type Chains interface {
	SaveChains(ctx context.Context, chains map[int32]map[string]int64) error
	LoadChains(ctx context.Context, partitions []int32) (map[int32]map[string]int64, error)
}

// Record is one logged event as the consumer hands it over.
type Record struct {
	Partition int32
	Offset    int64
	Value     []byte
	// Received, if set, is when the record came on the hand-off's live
	// channel, by this process's clock: MaxAge then counts from it.
	Received time.Time
}

// Handler fans events out. Batches are handled one at a time.
type Handler struct {
	members Memberships
	bus     Publisher
	read    ReadModel
	// MaxAge: older events update membership but are not pushed live (a
	// brand-new fan-out group starting on an old log would push its
	// history). They still take their place in the Prev chain, so a gateway
	// whose clients were sent none of them sees a gap at the next delivery
	// and resyncs them: their sync then replays what was not pushed.
	// A record that came on the live hand-off (Record.Received) is judged
	// by when it was received, on this process's clock: judged by its
	// producing node's clock, a node whose clock ran minutes behind made
	// each of its sends a gap on every gateway.
	MaxAge time.Duration
	// MaxConversations bounds the conversations whose membership is held
	// in memory; past it a partition's share is dropped and reloaded.
	MaxConversations int
	// Chains, if set, carries the Prev chains across rebalances: the
	// consumer saves them (SaveChains) before it commits, and a partition
	// new to this handler loads them before its first delivery.
	Chains Chains
	now    func() time.Time

	mu     sync.Mutex
	cache  map[int32]map[string]map[string]domain.Membership // partition, conversation, user
	cached int
	prev   map[streamPartition]chainTail
	loaded map[int32]bool // partitions whose saved chains are in prev
	moved  map[int32]bool // partitions whose chains changed since the last save
	// route's scratch, reused by every batch (under mu): a batch or two a
	// message at low rates made these maps most of the fan-out's garbage.
	users     []string
	seen      map[string]bool
	nodes     map[string][]string
	batchPrev map[streamPartition]int64
}

// chainTail is the end of a Prev chain: the seq of the last delivery, and
// when the chain last moved (or was loaded). A chain idle past chainIdle is
// dropped at the next save, so the node ids of gateways long gone (a
// restart is a new id) do not pile up.
type chainTail struct {
	seq int64
	at  time.Time
}

// streamPartition keys Prev: a node's stream and a log partition.
type streamPartition struct {
	node      string
	partition int32
}

// New builds a fan-out handler.
func New(members Memberships, bus Publisher, read ReadModel) *Handler {
	return &Handler{members: members, bus: bus, read: read, MaxAge: 5 * time.Minute, MaxConversations: 200_000, now: time.Now,
		cache: map[int32]map[string]map[string]domain.Membership{}, prev: map[streamPartition]chainTail{},
		loaded: map[int32]bool{}, moved: map[int32]bool{}, seen: map[string]bool{}, nodes: map[string][]string{}, batchPrev: map[streamPartition]int64{}}
}

// Handle processes the event at partition/offset.
func (h *Handler) Handle(ctx context.Context, partition int32, offset int64, value []byte) error {
	return h.HandleBatch(ctx, []Record{{Partition: partition, Offset: offset, Value: value}})
}

// HandleBatch fans out records that are in log order per partition and
// publishes their deliveries in one round trip. On an error nothing is
// marked done: the caller retries the batch, and the memberships it may
// have advanced are forgotten (reloaded), so a retried event does not see
// a change logged after it. The Prev chain is kept: a delivery published
// before that a gateway never got (Redis lost it) stays a gap the
// gateway sees at the next one.
func (h *Handler) HandleBatch(ctx context.Context, recs []Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.loadChainsLocked(ctx, recs); err != nil {
		return err
	}
	ds := make([]domain.Delivery, 0, len(recs))
	for _, r := range recs {
		d, ok, err := h.handle(ctx, r)
		if err != nil {
			h.forgetMembershipsLocked()
			return err
		}
		if ok {
			ds = append(ds, d)
		}
	}
	out, prev, err := h.route(ctx, ds)
	if err == nil {
		err = h.bus.PublishBatch(ctx, out)
	}
	if err != nil {
		h.forgetMembershipsLocked()
		return err
	}
	now := h.now()
	for k, v := range prev {
		h.prev[k] = chainTail{v, now}
		h.moved[k.partition] = true
	}
	return nil
}

// loadChainsLocked puts the saved chains of the batch's partitions new to
// this handler in prev, before any of their deliveries is chained.
func (h *Handler) loadChainsLocked(ctx context.Context, recs []Record) error {
	var fresh []int32
	for _, r := range recs {
		if !h.loaded[r.Partition] && !slices.Contains(fresh, r.Partition) {
			fresh = append(fresh, r.Partition)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	if h.Chains != nil {
		saved, err := h.Chains.LoadChains(ctx, fresh)
		if err != nil {
			return fmt.Errorf("load prev chains: %w", err)
		}
		now := h.now()
		for p, c := range saved {
			for node, seq := range c {
				h.prev[streamPartition{node, p}] = chainTail{seq, now}
			}
		}
	}
	for _, p := range fresh {
		h.loaded[p] = true
	}
	return nil
}

// chainIdle is how long a chain (a node, a partition) may go without a
// delivery before a save drops it; its next delivery starts it again at
// 0, which never shows a gap.
const chainIdle = time.Hour

// SaveChains stores the chains of the partitions whose chains changed since
// the last successful save. The consumer calls it after the deliveries were
// published and before it commits their offsets: the partition's next
// fan-out starts from that commit, with these chains.
func (h *Handler) SaveChains(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Chains == nil || len(h.moved) == 0 {
		return nil
	}
	out := make(map[int32]map[string]int64, len(h.moved))
	for p := range h.moved {
		out[p] = map[string]int64{}
	}
	idle := h.now().Add(-chainIdle)
	for k, tail := range h.prev {
		c, ok := out[k.partition]
		switch {
		case !ok:
		case tail.at.Before(idle):
			delete(h.prev, k)
		default:
			c[k.node] = tail.seq
		}
	}
	if err := h.Chains.SaveChains(ctx, out); err != nil {
		return fmt.Errorf("save prev chains: %w", err)
	}
	clear(h.moved)
	return nil
}

// route splits deliveries by the gateway nodes of their recipients (the
// routes are read after the records were read from the log: a connection
// routed before an event was logged is always reached) and chains each
// node's deliveries per partition with Prev, for the gateways' gap check.
func (h *Handler) route(ctx context.Context, ds []domain.Delivery) ([]domain.Delivery, map[streamPartition]int64, error) {
	users := h.users[:0]
	clear(h.seen)
	for _, d := range ds {
		for _, u := range d.Recipients {
			if !h.seen[u] {
				h.seen[u] = true
				users = append(users, u)
			}
		}
	}
	h.users = users
	nodes, err := h.nodesOf(ctx, users)
	if err != nil {
		return nil, nil, err
	}
	out := make([]domain.Delivery, 0, 2*len(ds))
	prev := h.batchPrev
	clear(prev)
	for _, d := range ds {
		start := len(out)
		out = domain.SplitByNode(d, nodes, out)
		for i := start; i < len(out); i++ {
			key := streamPartition{out[i].Node, d.Partition}
			p, ok := prev[key]
			if !ok {
				p = h.prev[key].seq
			}
			out[i].Prev, prev[key] = p, d.Seq
		}
		if d.Frame == nil {
			out = out[:start] // chained, not pushed: the next one shows the gap
		}
	}
	return out, prev, nil
}

// nodesOf is the bus's NodesOf, into the handler's map when it can.
func (h *Handler) nodesOf(ctx context.Context, users []string) (map[string][]string, error) {
	if b, ok := h.bus.(nodesInto); ok {
		return h.nodes, b.NodesInto(ctx, users, h.nodes)
	}
	return h.bus.NodesOf(ctx, users)
}

// Forget drops what the handler holds of partitions (all if nil): another
// consumer may have applied their events since.
func (h *Handler) Forget(partitions []int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forgetLocked(partitions)
}

// forgetMembershipsLocked drops every membership held, not the Prev chain.
func (h *Handler) forgetMembershipsLocked() {
	h.cache, h.cached = map[int32]map[string]map[string]domain.Membership{}, 0
}

func (h *Handler) forgetLocked(partitions []int32) {
	if partitions == nil {
		h.forgetMembershipsLocked()
		h.prev = map[streamPartition]chainTail{}
		clear(h.loaded)
		clear(h.moved)
		return
	}
	for _, p := range partitions {
		delete(h.loaded, p)
		delete(h.moved, p)
		h.cached -= len(h.cache[p])
		delete(h.cache, p)
		for k := range h.prev {
			if k.partition == p {
				delete(h.prev, k)
			}
		}
	}
}

// fresh tells whether r, an event stamped at, is young enough to push
// (MaxAge): by when it was received live, else by its own stamp.
func (h *Handler) fresh(r Record, at time.Time) bool {
	if h.MaxAge <= 0 {
		return true
	}
	if !r.Received.IsZero() {
		return h.now().Sub(r.Received) <= h.MaxAge
	}
	return h.now().Sub(at) <= h.MaxAge
}

// handle turns one record into a delivery (ok false: nothing to push).
func (h *Handler) handle(ctx context.Context, r Record) (domain.Delivery, bool, error) {
	seq := domain.SeqOf(r.Offset)
	e, err := domain.DecodeEvent(r.Value)
	if err != nil {
		return domain.Delivery{}, false, nil // poison: nothing to push; the projector records it
	}
	if domain.ValidateText("conversation_id", e.ConversationID) != nil {
		// Not text Postgres takes (from a foreign or an older producer:
		// commands validate ids): the projector sets the event aside, the
		// read model cannot be asked about it, and retrying the question
		// would stop every partition of this consumer.
		return domain.Delivery{}, false, nil
	}
	ms, err := h.membersOf(ctx, r, e)
	if err != nil {
		return domain.Delivery{}, false, err
	}
	left, skip, err := h.applyMembership(ctx, e, seq, ms)
	if err != nil || skip {
		return domain.Delivery{}, false, err
	}
	var frame []byte // nil: too old to push (MaxAge), routed for the Prev chain only
	if h.fresh(r, e.At) {
		if frame, err = domain.EncodePush(e, seq); err != nil {
			return domain.Delivery{}, false, nil
		}
	}
	rcpt := RecipientsAt(ms, seq)
	if left != "" {
		rcpt = append(rcpt, left)
	}
	return domain.Delivery{ConversationID: e.ConversationID, Seq: seq, Partition: r.Partition,
		Recipients: rcpt, Frame: frame, EventAtUnixMs: e.At.UnixMilli()}, true, nil
}

// applyMembership applies a membership event to memory and to the shared
// store; left names a leaver (who hears its own leave), skip an event
// whose payload is unreadable.
func (h *Handler) applyMembership(ctx context.Context, e domain.Event, seq int64, ms map[string]domain.Membership) (left string, skip bool, err error) {
	switch e.Type {
	case domain.EvConversationCreated:
		var p domain.ConversationCreated
		if err := e.Payload(&p); err != nil {
			return "", true, nil
		}
		if err := h.members.ApplyMembership(ctx, e.ConversationID, seq, true, p.Members...); err != nil {
			return "", false, err
		}
		if err := h.members.MarkCreated(ctx, e.ConversationID); err != nil {
			return "", false, err
		}
		applyTo(ms, seq, true, p.Members...)
	case domain.EvMemberJoined, domain.EvMemberLeft:
		var p domain.MemberChanged
		if err := e.Payload(&p); err != nil {
			return "", true, nil
		}
		joined := e.Type == domain.EvMemberJoined
		if err := h.members.ApplyMembership(ctx, e.ConversationID, seq, joined, p.UserID); err != nil {
			return "", false, err
		}
		applyTo(ms, seq, joined, p.UserID)
		if !joined {
			left = p.UserID
		}
	}
	return left, false, nil
}

// applyTo records a change unless a newer one is there (as the store does).
func applyTo(ms map[string]domain.Membership, seq int64, member bool, users ...string) {
	for _, u := range users {
		if cur := ms[u]; seq > cur.Seq {
			m := domain.Membership{Seq: seq, Member: member, PriorJoined: cur.PriorJoined, PriorLeft: cur.PriorLeft}
			switch {
			case !member && cur.Member:
				m.Joined = cur.Seq
			case !cur.Member && cur.Joined > 0:
				// Back, or a second leave: the membership the first leave
				// ended is the prior one.
				m.PriorJoined, m.PriorLeft = cur.Joined, cur.Seq
			}
			ms[u] = m
		}
	}
}

// membersOf is the conversation's membership as of the record, from memory,
// else loaded from the store (or rebuilt from the read model when the store
// does not hold it completely). A conversation's creation starts it empty.
func (h *Handler) membersOf(ctx context.Context, r Record, e domain.Event) (map[string]domain.Membership, error) {
	pc := h.cache[r.Partition]
	if ms, ok := pc[e.ConversationID]; ok {
		return ms, nil
	}
	var ms map[string]domain.Membership
	if e.Type != domain.EvConversationCreated {
		loaded, complete, err := h.members.Memberships(ctx, e.ConversationID)
		if err == nil && !complete {
			loaded, err = h.reload(ctx, e.ConversationID, r.Partition, r.Offset)
		}
		if err != nil {
			return nil, err
		}
		ms = make(map[string]domain.Membership, len(loaded))
		for u, m := range loaded {
			ms[u] = m
		}
	} else {
		ms = map[string]domain.Membership{}
	}
	if h.MaxConversations > 0 && h.cached >= h.MaxConversations {
		for p := range h.cache { // drop one partition's share (any), not its Prev chain
			h.cached -= len(h.cache[p])
			delete(h.cache, p)
			break
		}
	}
	if pc = h.cache[r.Partition]; pc == nil {
		pc = map[string]map[string]domain.Membership{}
		h.cache[r.Partition] = pc
	}
	pc[e.ConversationID] = ms
	h.cached++
	return ms, nil
}

// RecipientsAt is the members at seq: those whose latest change is a join
// at or before seq, and those whose leave came after seq of a membership
// begun at or before it (the leave applied already by the command path, or
// before a retry or a reload). Joins logged after seq are left out, so
// nobody receives events from before they joined.
func RecipientsAt(ms map[string]domain.Membership, seq int64) []string {
	out := make([]string, 0, len(ms))
	for u, m := range ms {
		if m.MemberAt(seq) {
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
