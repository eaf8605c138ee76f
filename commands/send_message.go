package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	json "github.com/segmentio/encoding/json"

	"github.com/parley-chat/parley/domain"
)

// SendMessage posts a message. Repeating it with the same sender,
// conversation and client_msg_id returns the first message.
type SendMessage struct {
	ConversationID string `json:"conversation_id"`
	ClientMsgID    string `json:"client_msg_id"`
	Body           string `json:"body"`
	// ReplyTo, if set, is a message of the same conversation.
	ReplyTo string `json:"reply_to,omitempty"`
}

// SendMessageHandler handles SendMessage.
type SendMessageHandler struct {
	log    EventLog
	idem   Idempotency
	access MemberCheck
	fresh  Freshness
	read   SendReadModel
	cfg    SendConfig
	// typing, if set, is the typing handler's gate: a message sent ends
	// its sender's typing, so the next typing goes out at once.
	typing *typingGate
	// ahead is log when it can hold a produce request for a send whose
	// claim is under way (kafkalog.Log.Expect); nil otherwise.
	ahead SendsAhead
}

// SendsAhead is an EventLog that gathers the sends of a burst into one
// produce request: Expect announces a send before its claim; appending
// under the returned context, or release, withdraws it.
type SendsAhead interface {
	Expect(ctx context.Context) (context.Context, func())
}

// SendReadModel is what a send reads: the first message of a
// client_msg_id, and the message a reply names.
type SendReadModel interface {
	ClientMsgReadModel
	MessageReadModel
}

// Idempotency keeps the records of message.send (infra/redisstore).
type Idempotency interface {
	// Reserve claims a send (see redisstore.Store.Reserve for intact).
	Reserve(ctx context.Context, conv, sender, clientMsgID, pending string, ttl time.Duration) (won bool, current string, intact bool, err error)
	// ReserveMember claims like Reserve in the same round trip as the
	// membership check, when the cache confirms the sender is a member;
	// member false: nothing was claimed, check access the long way.
	ReserveMember(ctx context.Context, conv, sender, clientMsgID, pending string, ttl time.Duration) (member, won bool, current string, intact bool, err error)
	Complete(ctx context.Context, conv, sender, clientMsgID, record string, ttl time.Duration) error
	// CompleteSoon stores the final record in the background (a plain SET).
	CompleteSoon(conv, sender, clientMsgID, record string, ttl time.Duration)
	TakeOver(ctx context.Context, conv, sender, clientMsgID, old, pending string, ttl time.Duration) (bool, error)
}

// ClientMsgReadModel finds a send in the read model by its message id: the
// first in the log of sender's messages with clientMsgID among ids.
type ClientMsgReadModel interface {
	SentMessage(ctx context.Context, conv, sender, clientMsgID string, ids []string) (domain.Message, bool, error)
}

// SendConfig tunes the idempotent send; the zero value is the default.
type SendConfig struct {
	// IdemTTL is how long a send's record is kept (0: 48 h).
	IdemTTL time.Duration
	// PendingStale is how long a send in flight on another node is waited
	// for before it is presumed dead and checked against the log (0: 10 s).
	PendingStale time.Duration
	// Clock paces that wait and stamps messages (nil: the real clock).
	Clock Clock
}

// pendingPoll is how often a send waiting for another's outcome reads its
// record again.
const pendingPoll = 10 * time.Millisecond

// NewSendMessageHandler builds the handler.
func NewSendMessageHandler(log EventLog, idem Idempotency, access MemberCheck, fresh Freshness, read SendReadModel, cfg SendConfig) SendMessageHandler {
	mustHave("SendMessageHandler", map[string]any{"log": log, "idem": idem, "access": access, "fresh": fresh, "read": read})
	if cfg.IdemTTL == 0 {
		cfg.IdemTTL = 48 * time.Hour
	}
	if cfg.PendingStale == 0 {
		cfg.PendingStale = 10 * time.Second
	}
	cfg.Clock = clockOr(cfg.Clock)
	if err := cfg.Validate(); err != nil {
		panic(err) // as mustHave: a handler built wrong fails at start
	}
	h := SendMessageHandler{log: log, idem: idem, access: access, fresh: fresh, read: read, cfg: cfg}
	h.ahead, _ = log.(SendsAhead)
	return h
}

// Validate reports a config the idempotent send cannot keep its promise
// with (after defaults).
func (c SendConfig) Validate() error {
	switch {
	case c.PendingStale < 10*pendingPoll:
		return fmt.Errorf("commands: PendingStale %s below %s", c.PendingStale, 10*pendingPoll)
	case c.IdemTTL < 2*c.PendingStale:
		// A record must outlive the wait for it, or a retry during the
		// wait finds none and sends again.
		return fmt.Errorf("commands: IdemTTL %s below twice PendingStale %s", c.IdemTTL, c.PendingStale)
	}
	return nil
}

// Validate checks every field.
func (c SendMessage) Validate() error {
	if err := domain.ValidateID("conversation_id", c.ConversationID); err != nil {
		return err
	}
	if err := domain.ValidateClientMsgID(c.ClientMsgID); err != nil {
		return err
	}
	if c.ReplyTo != "" {
		if err := domain.ValidateID("reply_to", c.ReplyTo); err != nil {
			return err
		}
	}
	return domain.ValidateBody(c.Body)
}

// Idempotency records: "p:<message_id>" while a send is in flight
// ("p:<message_id>/<n>" once another node took it over), "f:<message_id>"
// after its produce failed, a compact record once it is acked
// (idem_record.go); "d:<message json>" is the acked record of earlier
// versions.
const (
	pendingPrefix = "p:"
	failedPrefix  = "f:"
	donePrefix    = "d:"
)

// recordMessageID is the message id a pending or failed record holds.
func recordMessageID(record string) string {
	id := strings.TrimPrefix(strings.TrimPrefix(record, pendingPrefix), failedPrefix)
	id, _, _ = strings.Cut(id, "/")
	return id
}

// Handle appends the message, or returns the one first sent with this
// client_msg_id.
func (h SendMessageHandler) Handle(ctx context.Context, actor string, c SendMessage) (domain.Message, error) {
	m, err := h.handle(ctx, actor, c)
	if err == nil {
		h.typing.forget(actor, c.ConversationID)
	}
	return m, err
}

func (h SendMessageHandler) handle(ctx context.Context, actor string, c SendMessage) (domain.Message, error) {
	if err := c.Validate(); err != nil {
		return domain.Message{}, err
	}
	if err := h.checkReplyTo(ctx, actor, c); err != nil {
		return domain.Message{}, err
	}
	claimed := h.cfg.Clock.Now()
	pending := pendingPrefix + domain.SendMessageID(c.ConversationID, actor, c.ClientMsgID, h.period(claimed))
	ctx, release := h.expect(ctx)
	defer release()
	won, cur, intact, err := h.claim(ctx, actor, c, pending)
	if err != nil {
		return domain.Message{}, err
	}
	if !won || !intact {
		release() // not appended within a round trip, if at all
	}
	if !won {
		return h.existing(ctx, actor, c, cur)
	}
	if !intact {
		// Redis lost records of this conversation: the read model knows
		// whether this client_msg_id was sent before.
		m, found, err := h.lookup(ctx, actor, c, lostRecordCheck)
		if found {
			h.complete(ctx, m)
			return m, nil
		}
		if err != nil {
			// The read model is down or behind too: live chat goes on, and a
			// retry of a send acked before the Redis loss may be doubled
			// (docs/reliability.md).
			slog.Default().Warn("idempotency check skipped: read model unavailable", "conversation_id", c.ConversationID, "err", err)
		}
	}
	return h.send(ctx, actor, c, pending, claimed)
}

// expect announces the send to the log, if it gathers sends (SendsAhead).
func (h SendMessageHandler) expect(ctx context.Context) (context.Context, func()) {
	if h.ahead == nil {
		return ctx, func() {}
	}
	return h.ahead.Expect(ctx)
}

// checkReplyTo refuses a reply to a message that is not in the
// conversation (before anything is claimed: a refused send leaves no
// record). The read model is read once it holds everything acked so far,
// so a reply to a message acked a moment ago is accepted.
func (h SendMessageHandler) checkReplyTo(ctx context.Context, actor string, c SendMessage) error {
	if c.ReplyTo == "" {
		return nil
	}
	if err := h.access.RequireMember(ctx, c.ConversationID, actor); err != nil {
		return err
	}
	if err := h.fresh.WaitProjected(ctx, c.ConversationID); err != nil {
		return err
	}
	if _, err := h.read.Message(ctx, c.ConversationID, c.ReplyTo); err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return fmt.Errorf("%w: reply_to: no message %s in this conversation", domain.ErrBadRequest, c.ReplyTo)
		}
		return err
	}
	return nil
}

// claim checks membership and claims the send: in one round trip when the
// cache confirms the sender is a member, else through the full access
// check (which may rebuild the cache from the read model) and Reserve.
func (h SendMessageHandler) claim(ctx context.Context, actor string, c SendMessage, pending string) (won bool, cur string, intact bool, err error) {
	member, won, cur, intact, err := h.idem.ReserveMember(ctx, c.ConversationID, actor, c.ClientMsgID, pending, h.cfg.IdemTTL)
	if err != nil || member {
		return won, cur, intact, err
	}
	if err := h.access.RequireMember(ctx, c.ConversationID, actor); err != nil {
		return false, "", false, err
	}
	return h.idem.Reserve(ctx, c.ConversationID, actor, c.ClientMsgID, pending, h.cfg.IdemTTL)
}

// lostRecordCheck bounds the read-model lookup made after a Redis data loss,
// so that a database outage then does not stall every send.
const lostRecordCheck = 2 * time.Second

// period is the idempotency window t falls in: a send's message id is
// derived from it (domain.SendMessageID).
func (h SendMessageHandler) period(t time.Time) int64 {
	return t.UnixNano() / int64(h.cfg.IdemTTL)
}

// lookup finds the sender's message with c's client_msg_id in the read model
// once it has everything acked so far (waiting at most limit, 0 for the
// freshness default), by its message id: the one a record names (known), or,
// with no record (Redis lost it), the ids a send of c claimed within the
// window gets (sendIDs).
func (h SendMessageHandler) lookup(ctx context.Context, actor string, c SendMessage, limit time.Duration, known ...string) (domain.Message, bool, error) {
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	if err := h.fresh.WaitProjected(ctx, c.ConversationID); err != nil {
		return domain.Message{}, false, err
	}
	if len(known) > 0 {
		return h.read.SentMessage(ctx, c.ConversationID, actor, c.ClientMsgID, known)
	}
	// No record: the latest send of the windows around now, unless it is
	// older than IdemTTL (its record would have expired: a send now is a
	// new message, whatever the window).
	m, found, err := h.read.SentMessage(ctx, c.ConversationID, actor, c.ClientMsgID, h.sendIDs(actor, c))
	if found && h.cfg.Clock.Now().Sub(m.SentAt) >= h.cfg.IdemTTL {
		return domain.Message{}, false, nil
	}
	return m, found, err
}

// sendIDs are the message ids of c's send claimed less than IdemTTL ago:
// the current period's and the previous one's, and the next one's, for a
// claim made on a node whose clock runs ahead of this one's.
func (h SendMessageHandler) sendIDs(actor string, c SendMessage) []string {
	p := h.period(h.cfg.Clock.Now())
	ids := make([]string, 0, 3)
	for _, q := range []int64{p - 1, p, p + 1} {
		ids = append(ids, domain.SendMessageID(c.ConversationID, actor, c.ClientMsgID, q))
	}
	return ids
}

// send appends the message whose id the pending record holds.
func (h SendMessageHandler) send(ctx context.Context, actor string, c SendMessage, pending string, claimed time.Time) (domain.Message, error) {
	id := recordMessageID(pending)
	e, seq, err := appendEvent(ctx, h.log, h.cfg.Clock, domain.EvMessageSent, c.ConversationID, actor,
		domain.MessageSent{MessageID: id, ClientMsgID: c.ClientMsgID, Body: c.Body, ReplyTo: c.ReplyTo})
	if err != nil {
		// A failed produce may still have been written (a timeout while a
		// broker restarts): the retry must ask the log, not send anew.
		_, _ = h.idem.TakeOver(context.WithoutCancel(ctx), c.ConversationID, actor, c.ClientMsgID,
			pending, failedPrefix+id, h.cfg.IdemTTL)
		return domain.Message{}, err
	}
	m := domain.Message{ConversationID: c.ConversationID, MessageID: id, Seq: seq, SenderID: actor,
		ClientMsgID: c.ClientMsgID, Body: c.Body, ReplyTo: c.ReplyTo, SentAt: e.At}
	won := !strings.Contains(pending, "/")
	if won && h.cfg.Clock.Now().Sub(claimed) < h.cfg.PendingStale/2 {
		// Acked well before anyone may presume this send dead: a takeover,
		// if one ever comes (this record lost, Redis stalled), waits for the
		// read model to reach the log, finds this message and records the
		// same. So the record is written in the background, off the
		// reply's path (one Redis round trip less per send).
		h.idem.CompleteSoon(c.ConversationID, actor, c.ClientMsgID, encodeRecord(m), h.cfg.IdemTTL)
		return m, nil
	}
	// Late: the record is completed only from this send's own pending
	// record (compare and set): a send presumed dead that completes late
	// must not overwrite what a takeover recorded.
	if won {
		won, _ = h.idem.TakeOver(context.WithoutCancel(ctx), c.ConversationID, actor, c.ClientMsgID,
			pending, encodeRecord(m), h.cfg.IdemTTL)
	}
	if !won {
		// A takeover, or taken over while producing: the log may hold this
		// message id twice, and the read model keeps the first. That row is
		// the answer, for this send and every resend.
		if first, found, err := h.lookup(ctx, actor, c, 0, id); err == nil && found {
			m = first
		}
		h.complete(ctx, m)
	}
	return m, nil
}

func (h SendMessageHandler) complete(ctx context.Context, m domain.Message) {
	// The message is durable already; a lost record only means a retry
	// finds it through the read model instead.
	_ = h.idem.Complete(context.WithoutCancel(ctx), m.ConversationID, m.SenderID, m.ClientMsgID, encodeRecord(m), h.cfg.IdemTTL)
}

// acked answers a resend from the first send's compact record, or, when the
// resend's body differs, from the read model.
func (h SendMessageHandler) acked(ctx context.Context, actor string, c SendMessage, record string) (domain.Message, error) {
	r, err := decodeRecord(record)
	if err != nil {
		return domain.Message{}, err
	}
	if m, ok := r.message(actor, c); ok {
		return m, nil
	}
	m, found, err := h.lookup(ctx, actor, c, 0, r.messageID)
	if err == nil && !found {
		err = fmt.Errorf("%w: message %s was acked but is not in the read model", domain.ErrUnavailable, r.messageID)
	}
	return m, err
}

// existing waits for the first send's outcome. If it stays in flight longer
// than PendingStale its node is presumed dead: the log (through the caught-up
// read model) tells whether it was appended; if not, this send takes over
// with the same message id.
func (h SendMessageHandler) existing(ctx context.Context, actor string, c SendMessage, cur string) (domain.Message, error) {
	deadline := h.cfg.Clock.Now().Add(h.cfg.PendingStale)
	for {
		switch {
		case strings.HasPrefix(cur, compactPrefix):
			return h.acked(ctx, actor, c, cur)
		case strings.HasPrefix(cur, donePrefix):
			var m domain.Message
			if err := json.Unmarshal([]byte(cur[len(donePrefix):]), &m); err != nil {
				return m, fmt.Errorf("idempotency record: %w", err)
			}
			return m, nil
		case cur == "": // the record expired or was lost
			return h.Handle(ctx, actor, c)
		case strings.HasPrefix(cur, failedPrefix):
			return h.recover(ctx, actor, c, cur)
		case h.cfg.Clock.Now().After(deadline):
			return h.recover(ctx, actor, c, cur)
		}
		select {
		case <-ctx.Done():
			return domain.Message{}, fmt.Errorf("%w: waiting for a concurrent send: %v", domain.ErrUnavailable, ctx.Err())
		case <-h.cfg.Clock.After(pendingPoll):
		}
		won, now, _, err := h.idem.Reserve(ctx, c.ConversationID, actor, c.ClientMsgID, cur, h.cfg.IdemTTL)
		if err != nil {
			return domain.Message{}, err
		}
		if won { // the key had vanished and we now hold the same pending record
			return h.recover(ctx, actor, c, cur)
		}
		if now != cur { // another send (a takeover) holds it now: its own wait starts
			deadline = h.cfg.Clock.Now().Add(h.cfg.PendingStale)
		}
		cur = now
	}
}

// recover settles a send whose first attempt failed or whose node is
// presumed dead: the caught-up read model says whether the log has it; if
// not, this send takes the record over and appends with the same message id
// (so that the read model collapses a copy the first attempt still wrote).
func (h SendMessageHandler) recover(ctx context.Context, actor string, c SendMessage, stale string) (domain.Message, error) {
	m, found, err := h.lookup(ctx, actor, c, 0, recordMessageID(stale))
	if err != nil {
		return m, err
	}
	if found {
		h.complete(ctx, m)
		return m, nil
	}
	// A fresh record, so that of two nodes recovering at once one wins.
	pending := pendingPrefix + recordMessageID(stale) + "/" + domain.NewID("")[:8]
	won, err := h.idem.TakeOver(ctx, c.ConversationID, actor, c.ClientMsgID, stale, pending, h.cfg.IdemTTL)
	if err != nil {
		return domain.Message{}, err
	}
	if !won {
		return h.Handle(ctx, actor, c) // another node recovers it: wait for its outcome
	}
	return h.send(ctx, actor, c, pending, h.cfg.Clock.Now()) // a takeover always completes by compare and set
}
