package commands

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// In-memory fakes of the ports, for unit tests of the use cases without
// services. Each keeps the semantics of the adapter it stands for; none
// sleeps: time is a fakeClock, and a test that must order two goroutines
// does it with channels (gates, hooks, the clock's waiters).

// guard bounds a test's wait for another goroutine: it only fails a test
// that would otherwise hang, it never paces one.
const guard = 5 * time.Second

// fakeClock is a Clock whose time moves only when told. After registers a
// waiter that fires when Advance reaches its time; with auto set, After
// moves the time itself and fires at once (one goroutine waiting alone,
// e.g. for a pending record to go stale).
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	auto    bool
	waiters []clockWaiter
	changed chan struct{} // closed and replaced whenever waiters change
}

type clockWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), changed: make(chan struct{})}
}

// setAuto makes After move the time itself (see fakeClock).
func (c *fakeClock) setAuto() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.auto = true
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if c.auto {
		c.now = c.now.Add(d)
	}
	if c.auto || d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, clockWaiter{at: c.now.Add(d), ch: ch})
	c.signal()
	return ch
}

func (c *fakeClock) signal() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Advance moves the time by d and fires every waiter it reaches.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
	c.signal()
}

// state returns how many waiters there are and a channel closed at the next
// change.
func (c *fakeClock) state() (int, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters), c.changed
}

// waitForWaiter blocks until some goroutine waits on the clock.
func (c *fakeClock) waitForWaiter(t *testing.T) {
	t.Helper()
	timeout := time.After(guard)
	for {
		n, changed := c.state()
		if n > 0 {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatal("nobody waits on the clock")
		}
	}
}

// poke wakes whoever watches the clock's state.
func (c *fakeClock) poke() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.signal()
}

// fakeRedis mirrors infra/redisstore/redisstore.go: the members hash per
// conversation ({prefix}:{conv}:members: user → seq+1, negated for a leave;
// "!complete"; "!idem") and the idempotency records with their TTL. The Lua
// scripts there (applyMembership, claimScript/reserve, reserveMember,
// takeOver) are each one atomic step here, under mu; Complete is a plain
// SET. Times come from the fake clock where redisstore reads the wall clock
// (the "since:" of !idem, idemIntact) or Redis expires keys.
type fakeRedis struct {
	mu      sync.Mutex
	clock   Clock
	hashes  map[string]map[string]string // conv → field → value
	records map[string]fakeRecord        // idem key → record
	calls   map[string]int
	locks   map[string]bool // held message locks
	// before runs at the start of each operation (op is the method name),
	// outside mu: it may fail the operation (Redis down) or block it to
	// order a race. after runs once the operation is done, outside mu.
	before func(op string) error
	after  func(op string)
}

type fakeRecord struct {
	value   string
	expires time.Time
}

func newFakeRedis(clock Clock) *fakeRedis {
	return &fakeRedis{clock: clock, hashes: map[string]map[string]string{}, records: map[string]fakeRecord{}, calls: map[string]int{}}
}

func (r *fakeRedis) enter(op string) error {
	r.mu.Lock()
	r.calls[op]++
	before := r.before
	r.mu.Unlock()
	if before != nil {
		return before(op)
	}
	return nil
}

func (r *fakeRedis) exit(op string) {
	r.mu.Lock()
	after := r.after
	r.mu.Unlock()
	if after != nil {
		after(op)
	}
}

func (r *fakeRedis) count(op string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[op]
}

func idemKeyOf(conv, sender, clientMsgID string) string {
	return conv + ":idem:" + sender + ":" + clientMsgID
}

func (r *fakeRedis) hash(conv string) map[string]string {
	h := r.hashes[conv]
	if h == nil {
		h = map[string]string{}
		r.hashes[conv] = h
	}
	return h
}

// get is GET with expiry (a key expires once its PX has passed).
func (r *fakeRedis) get(key string) (string, bool) {
	rec, ok := r.records[key]
	if ok && !r.clock.Now().Before(rec.expires) {
		delete(r.records, key)
		return "", false
	}
	return rec.value, ok
}

func (r *fakeRedis) set(key, value string, ttl time.Duration) {
	r.records[key] = fakeRecord{value: value, expires: r.clock.Now().Add(time.Duration(ttl.Milliseconds()) * time.Millisecond)}
}

// record reads an idempotency record as a test sees it ("" when none).
func (r *fakeRedis) record(conv, sender, clientMsgID string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, _ := r.get(idemKeyOf(conv, sender, clientMsgID))
	return v
}

// setRecord stores a record as another node (or an older version) would.
func (r *fakeRedis) setRecord(conv, sender, clientMsgID, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.set(idemKeyOf(conv, sender, clientMsgID), value, 48*time.Hour)
}

// dropRecord loses one record (expired, or evicted).
func (r *fakeRedis) dropRecord(conv, sender, clientMsgID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.records, idemKeyOf(conv, sender, clientMsgID))
}

// flushAll is a Redis that lost its data (restarted without persistence).
func (r *fakeRedis) flushAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hashes = map[string]map[string]string{}
	r.records = map[string]fakeRecord{}
}

// ApplyMembership mirrors the applyMembership script.
func (r *fakeRedis) ApplyMembership(_ context.Context, conv string, seq int64, member bool, users ...string) error {
	if err := r.enter("ApplyMembership"); err != nil {
		return err
	}
	defer r.exit("ApplyMembership")
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(users) == 0 {
		return nil
	}
	v := seq + 1
	if !member {
		v = -v
	}
	h := r.hash(conv)
	for _, u := range users {
		cur, ok := h[u]
		n, _ := strconv.ParseInt(cur, 10, 64)
		if !ok || max(n, -n) < seq+1 {
			h[u] = strconv.FormatInt(v, 10)
		}
	}
	return nil
}

func parseMembership(v string) (domain.Membership, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return domain.Membership{}, false
	}
	if n > 0 {
		return domain.Membership{Seq: n - 1, Member: true}, true
	}
	return domain.Membership{Seq: -n - 1}, true
}

// Memberships mirrors Store.Memberships (HGETALL, marker fields skipped).
func (r *fakeRedis) Memberships(_ context.Context, conv string) (map[string]domain.Membership, bool, error) {
	if err := r.enter("Memberships"); err != nil {
		return nil, false, err
	}
	defer r.exit("Memberships")
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]domain.Membership{}
	h := r.hashes[conv]
	_, complete := h[completeFieldOf]
	for u, v := range h {
		if strings.HasPrefix(u, "!") {
			continue
		}
		if m, ok := parseMembership(v); ok {
			out[u] = m
		}
	}
	return out, complete, nil
}

// Membership mirrors Store.Membership (HGET user, HEXISTS !complete).
func (r *fakeRedis) Membership(_ context.Context, conv, user string) (domain.Membership, bool, error) {
	if err := r.enter("Membership"); err != nil {
		return domain.Membership{}, false, err
	}
	defer r.exit("Membership")
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hashes[conv]
	_, known := h[completeFieldOf]
	v, ok := h[user]
	if !ok {
		return domain.Membership{}, known, nil
	}
	m, ok := parseMembership(v)
	if !ok {
		return domain.Membership{}, known, fmt.Errorf("redis membership value %q", v)
	}
	return m, known, nil
}

// The marker fields of the members hash (redisstore's completeField and
// idemField).
const (
	completeFieldOf = "!complete"
	idemFieldOf     = "!idem"
)

// MarkComplete mirrors Store.MarkComplete.
func (r *fakeRedis) MarkComplete(_ context.Context, conv string) error {
	if err := r.enter("MarkComplete"); err != nil {
		return err
	}
	defer r.exit("MarkComplete")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hash(conv)[completeFieldOf] = "1"
	return nil
}

// MarkCreated mirrors Store.MarkCreated: complete, and every record kept.
func (r *fakeRedis) MarkCreated(_ context.Context, conv string) error {
	if err := r.enter("MarkCreated"); err != nil {
		return err
	}
	defer r.exit("MarkCreated")
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hash(conv)
	h[completeFieldOf], h[idemFieldOf] = "1", "1"
	return nil
}

// claim mirrors claimScript: SET NX PX, then read (or start) !idem.
func (r *fakeRedis) claim(conv, sender, clientMsgID, pending string, ttl time.Duration) (won bool, current string, intact bool) {
	key := idemKeyOf(conv, sender, clientMsgID)
	cur, exists := r.get(key)
	if !exists {
		r.set(key, pending, ttl)
	}
	h := r.hash(conv)
	idem, ok := h[idemFieldOf]
	if !ok {
		idem = "since:" + strconv.FormatInt(r.clock.Now().Unix(), 10)
		h[idemFieldOf] = idem
	}
	if !exists {
		return true, pending, r.idemIntact(idem, ttl)
	}
	return false, cur, r.idemIntact(idem, ttl)
}

// idemIntact mirrors redisstore's idemIntact.
func (r *fakeRedis) idemIntact(v string, ttl time.Duration) bool {
	if v == "1" {
		return true
	}
	since, err := strconv.ParseInt(strings.TrimPrefix(v, "since:"), 10, 64)
	return err == nil && r.clock.Now().Sub(time.Unix(since, 0)) > ttl
}

// Reserve mirrors Store.Reserve (the reserve script).
func (r *fakeRedis) Reserve(_ context.Context, conv, sender, clientMsgID, pending string, ttl time.Duration) (bool, string, bool, error) {
	if err := r.enter("Reserve"); err != nil {
		return false, "", false, err
	}
	defer r.exit("Reserve")
	r.mu.Lock()
	defer r.mu.Unlock()
	won, cur, intact := r.claim(conv, sender, clientMsgID, pending, ttl)
	return won, cur, intact, nil
}

// ReserveMember mirrors Store.ReserveMember (the reserveMember script):
// it claims only when the complete hash says the sender is a member now.
func (r *fakeRedis) ReserveMember(_ context.Context, conv, sender, clientMsgID, pending string, ttl time.Duration) (bool, bool, string, bool, error) {
	if err := r.enter("ReserveMember"); err != nil {
		return false, false, "", false, err
	}
	defer r.exit("ReserveMember")
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hashes[conv]
	m, _ := strconv.ParseInt(h[sender], 10, 64)
	if _, complete := h[completeFieldOf]; m <= 0 || !complete {
		return false, false, "", false, nil
	}
	won, cur, intact := r.claim(conv, sender, clientMsgID, pending, ttl)
	return true, won, cur, intact, nil
}

// Complete mirrors Store.Complete: a plain SET, whatever the record holds.
func (r *fakeRedis) Complete(_ context.Context, conv, sender, clientMsgID, record string, ttl time.Duration) error {
	if err := r.enter("Complete"); err != nil {
		return err
	}
	defer r.exit("Complete")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.set(idemKeyOf(conv, sender, clientMsgID), record, ttl)
	return nil
}

// CompleteSoon mirrors Store.CompleteSoon: a plain SET in the background;
// a failure (before returning an error) loses the record silently. Here
// it runs at once unless before blocks it.
func (r *fakeRedis) CompleteSoon(conv, sender, clientMsgID, record string, ttl time.Duration) {
	if err := r.enter("CompleteSoon"); err != nil {
		return
	}
	defer r.exit("CompleteSoon")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.set(idemKeyOf(conv, sender, clientMsgID), record, ttl)
}

// TakeOver mirrors the takeOver script: replace old, only if it is there.
func (r *fakeRedis) TakeOver(_ context.Context, conv, sender, clientMsgID, old, pending string, ttl time.Duration) (bool, error) {
	if err := r.enter("TakeOver"); err != nil {
		return false, err
	}
	defer r.exit("TakeOver")
	r.mu.Lock()
	defer r.mu.Unlock()
	key := idemKeyOf(conv, sender, clientMsgID)
	if cur, ok := r.get(key); !ok || cur != old {
		return false, nil
	}
	r.set(key, pending, ttl)
	return true, nil
}

// fakeLog is the Kafka log: one partition, seq = offset + 1. Each Append
// takes the next plan queued (none: it just appends).
type fakeLog struct {
	mu       sync.Mutex
	events   []domain.Event
	base     int64 // offset of the first event
	attempts int
	plans    []*appendPlan
}

// appendPlan says how one Append behaves.
type appendPlan struct {
	gate    chan struct{} // if set, wait for it to close before writing
	entered chan struct{} // closed when the append reached the gate
	fail    bool          // report unavailable...
	written bool          // ...after writing the event all the same
	die     bool          // write, then hang until ctx ends (a node killed after Kafka acked)
	seq     chan int64    // gets the seq written (die, written)
}

func newFakeLog() *fakeLog { return &fakeLog{base: 100} }

// next queues a plan for the next Append not planned yet.
func (l *fakeLog) next(p appendPlan) *appendPlan {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p.gate != nil {
		p.entered = make(chan struct{})
	}
	p.seq = make(chan int64, 1)
	l.plans = append(l.plans, &p)
	return &p
}

func (l *fakeLog) write(e domain.Event) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	return l.base + int64(len(l.events)) // offset base+len-1, seq = offset+1
}

func (l *fakeLog) Append(ctx context.Context, e domain.Event) (int64, error) {
	l.mu.Lock()
	l.attempts++
	var p *appendPlan
	if len(l.plans) > 0 {
		p, l.plans = l.plans[0], l.plans[1:]
	}
	l.mu.Unlock()
	if p == nil {
		return l.write(e), nil
	}
	if p.gate != nil {
		close(p.entered)
		<-p.gate
	}
	switch {
	case p.fail && !p.written:
		return 0, fmt.Errorf("%w: kafka produce: request timed out", domain.ErrUnavailable)
	case p.fail:
		p.seq <- l.write(e)
		return 0, fmt.Errorf("%w: kafka produce: request timed out", domain.ErrUnavailable)
	case p.die:
		p.seq <- l.write(e)
		<-ctx.Done()
		return 0, ctx.Err()
	}
	seq := l.write(e)
	p.seq <- seq
	return seq, nil
}

// logged is an event in the log with its seq.
type logged struct {
	domain.Event
	Seq int64
}

// upTo returns the first n events with their seqs (n < 0: all).
func (l *fakeLog) upTo(n int) []logged {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n < 0 || n > len(l.events) {
		n = len(l.events)
	}
	out := make([]logged, n)
	for i, e := range l.events[:n] {
		out[i] = logged{Event: e, Seq: l.base + int64(i) + 1}
	}
	return out
}

func (l *fakeLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// sent returns the message_sent events of conv carrying clientMsgID.
func (l *fakeLog) sent(conv, clientMsgID string) []logged {
	var out []logged
	for _, e := range l.upTo(-1) {
		var p domain.MessageSent
		if e.Type == domain.EvMessageSent && e.ConversationID == conv && e.Payload(&p) == nil && p.ClientMsgID == clientMsgID {
			out = append(out, e)
		}
	}
	return out
}

// fakeReadModel mirrors projections (queries.go, freshness.go) over the
// fake log: it sees the log up to its projected mark, which WaitProjected
// moves to the log's end as it is when the wait begins (the high-water
// mark), as Freshness waits for the projector to reach it. Rows follow the
// projector's guards: a message id repeated in the log keeps its first row;
// a membership keeps its latest change.
type fakeReadModel struct {
	log *fakeLog

	mu        sync.Mutex
	projected int
	waits     int
	lookups   int
	waitErr   error  // WaitProjected fails (Postgres down, projector behind)
	afterWait func() // runs after a wait, outside mu (orders a race)
}

func newFakeReadModel(log *fakeLog) *fakeReadModel { return &fakeReadModel{log: log} }

func (m *fakeReadModel) WaitProjected(ctx context.Context, conv string) error {
	hwm := m.log.len()
	m.mu.Lock()
	m.waits++
	err, after := m.waitErr, m.afterWait
	if err == nil {
		m.projected = max(m.projected, hwm)
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	if after != nil {
		after()
	}
	return ctx.Err()
}

func (m *fakeReadModel) counts() (waits, lookups int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waits, m.lookups
}

func (m *fakeReadModel) visible() []logged {
	m.mu.Lock()
	n := m.projected
	m.mu.Unlock()
	return m.log.upTo(n)
}

// Memberships mirrors Store.Memberships: every user who ever was a member.
func (m *fakeReadModel) Memberships(_ context.Context, conv string) (map[string]domain.Membership, error) {
	out := map[string]domain.Membership{}
	apply := func(seq int64, member bool, users ...string) {
		for _, u := range users {
			if cur, ok := out[u]; !ok || cur.Seq < seq {
				out[u] = domain.Membership{Seq: seq, Member: member}
			}
		}
	}
	for _, e := range m.visible() {
		if e.ConversationID != conv {
			continue
		}
		switch e.Type {
		case domain.EvConversationCreated:
			var p domain.ConversationCreated
			if err := e.Payload(&p); err == nil {
				apply(e.Seq, true, p.Members...)
			}
		case domain.EvMemberJoined, domain.EvMemberLeft:
			var p domain.MemberChanged
			if err := e.Payload(&p); err == nil {
				apply(e.Seq, e.Type == domain.EvMemberJoined, p.UserID)
			}
		}
	}
	return out, nil
}

// Conversation mirrors Store.Conversation.
func (m *fakeReadModel) Conversation(ctx context.Context, conv string) (domain.Conversation, error) {
	var c domain.Conversation
	for _, e := range m.visible() {
		if e.ConversationID != conv {
			continue
		}
		if e.Type == domain.EvConversationCreated {
			var p domain.ConversationCreated
			if err := e.Payload(&p); err != nil {
				return c, err
			}
			c = domain.Conversation{ConversationID: conv, Kind: p.Kind, Title: p.Title, CreatedAt: e.At}
		}
		c.LastSeq = e.Seq
	}
	if c.ConversationID == "" {
		return c, fmt.Errorf("%w: conversation %s", domain.ErrNotFound, conv)
	}
	ms, _ := m.Memberships(ctx, conv)
	for u, um := range ms {
		if um.Member {
			c.Members = append(c.Members, u)
		}
	}
	slices.Sort(c.Members)
	return c, nil
}

// messages is the messages table of conv: one row per message id (the
// first in the log), edits and deletes applied.
func (m *fakeReadModel) messages(conv string) []domain.Message {
	rows := map[string]*domain.Message{}
	var order []string
	for _, e := range m.visible() {
		if e.ConversationID != conv {
			continue
		}
		switch e.Type {
		case domain.EvMessageSent:
			var p domain.MessageSent
			if e.Payload(&p) != nil || rows[p.MessageID] != nil {
				continue
			}
			rows[p.MessageID] = &domain.Message{ConversationID: conv, MessageID: p.MessageID, Seq: e.Seq, SenderID: e.Actor,
				ClientMsgID: p.ClientMsgID, Body: p.Body, SentAt: e.At}
			order = append(order, p.MessageID)
		case domain.EvMessageEdited:
			var p domain.MessageEdited
			if e.Payload(&p) == nil && rows[p.MessageID] != nil {
				at := e.At
				rows[p.MessageID].Body, rows[p.MessageID].EditedAt = p.Body, &at
			}
		case domain.EvMessageDeleted:
			var p domain.MessageDeleted
			if e.Payload(&p) == nil && rows[p.MessageID] != nil {
				rows[p.MessageID].Deleted = true
			}
		}
	}
	out := make([]domain.Message, 0, len(order))
	for _, id := range order {
		out = append(out, *rows[id])
	}
	return out
}

// Message mirrors Store.Message.
func (m *fakeReadModel) Message(_ context.Context, conv, messageID string) (domain.Message, error) {
	for _, msg := range m.messages(conv) {
		if msg.MessageID == messageID {
			return msg, nil
		}
	}
	return domain.Message{}, fmt.Errorf("%w: message %s", domain.ErrNotFound, messageID)
}

// SentMessage mirrors Store.SentMessage: the latest by seq.
func (m *fakeReadModel) SentMessage(_ context.Context, conv, sender, clientMsgID string, ids []string) (domain.Message, bool, error) {
	m.mu.Lock()
	m.lookups++
	m.mu.Unlock()
	msgs := m.messages(conv) // in seq order
	for i := len(msgs) - 1; i >= 0; i-- {
		msg := msgs[i]
		if msg.SenderID == sender && msg.ClientMsgID == clientMsgID && slices.Contains(ids, msg.MessageID) {
			return msg, true, nil
		}
	}
	return domain.Message{}, false, nil
}

// byClientID is the first message of sender's clientMsgID, whatever its id.
func (m *fakeReadModel) byClientID(conv, sender, clientMsgID string) (domain.Message, bool) {
	for _, msg := range m.messages(conv) {
		if msg.SenderID == sender && msg.ClientMsgID == clientMsgID {
			return msg, true
		}
	}
	return domain.Message{}, false
}

// fakeBus records ephemeral deliveries.
type fakeBus struct {
	mu  sync.Mutex
	got []domain.Delivery
}

func (b *fakeBus) Publish(_ context.Context, d domain.Delivery) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, d)
	return nil
}

// world is the shared services several gateway nodes use: one Redis, one
// log, one read model, one clock.
type world struct {
	t     *testing.T
	clock *fakeClock
	redis *fakeRedis
	log   *fakeLog
	read  *fakeReadModel
}

func newWorld(t *testing.T) *world {
	clock := newFakeClock()
	log := newFakeLog()
	return &world{t: t, clock: clock, redis: newFakeRedis(clock), log: log, read: newFakeReadModel(log)}
}

func (w *world) access() Access { return NewAccess(w.redis, w.read, w.read) }

// node is the send handler of one gateway node: its own handler on the
// shared services, built with only the ports it uses.
func (w *world) node() SendMessageHandler {
	return NewSendMessageHandler(w.log, w.redis, w.access(), w.read, w.read, SendConfig{Clock: w.clock})
}

// group creates a group of alice and the others through conversation.create.
func (w *world) group(others ...string) string {
	w.t.Helper()
	h := NewCreateConversationHandler(w.log, w.redis, w.access(), w.read, w.read, w.clock)
	c, err := h.Handle(context.Background(), "alice", CreateConversation{Kind: domain.KindGroup, Members: others})
	if err != nil {
		w.t.Fatal(err)
	}
	return c.ConversationID
}

// membersOf is the cache's view of conv.
func (w *world) membersOf(conv string) (map[string]domain.Membership, bool) {
	ms, complete, _ := w.redis.Memberships(context.Background(), conv)
	return maps.Clone(ms), complete
}

// drive runs sends at once, as gateway nodes would, and moves the clock on
// by one poll only while every unfinished send waits on it: time passes
// when nothing else can happen, as if computing took no time. A send
// blocked elsewhere (a gate, a hook) holds the clock until it goes on.
func (w *world) drive(t *testing.T, sends ...func() (domain.Message, error)) []sendResult {
	t.Helper()
	out := make([]sendResult, len(sends))
	var active atomic.Int32
	active.Store(int32(len(sends)))
	for i, send := range sends {
		go func() {
			m, err := send()
			out[i] = sendResult{m, err}
			active.Add(-1)
			w.clock.poke()
		}()
	}
	timeout := time.After(guard)
	for {
		n, changed := w.clock.state()
		a := int(active.Load())
		if a == 0 {
			return out
		}
		if n >= a {
			w.clock.Advance(pendingPoll)
			continue
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("%d sends neither finish nor wait on the clock", a)
		}
	}
}

// sendFn is a send by actor on a node of its own, for drive.
func (w *world) sendFn(actor, conv, clientMsgID, body string) func() (domain.Message, error) {
	h := w.node()
	return func() (domain.Message, error) {
		return h.Handle(context.Background(), actor, SendMessage{ConversationID: conv, ClientMsgID: clientMsgID, Body: body})
	}
}

// LockMessage is the message lock, held in memory.
func (r *fakeRedis) LockMessage(ctx context.Context, conv, messageID string) (func(), error) {
	key := conv + ":msglock:" + messageID
	for {
		r.mu.Lock()
		if r.locks == nil {
			r.locks = map[string]bool{}
		}
		if !r.locks[key] {
			r.locks[key] = true
			r.mu.Unlock()
			return func() { r.mu.Lock(); delete(r.locks, key); r.mu.Unlock() }, nil
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: message %s is being changed; retry", domain.ErrUnavailable, messageID)
		case <-time.After(time.Millisecond):
		}
	}
}

// tries is how many Appends were attempted.
func (l *fakeLog) tries() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.attempts
}
