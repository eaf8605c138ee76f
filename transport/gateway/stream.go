package gateway

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Stream is the per-connection ordering state shared by every transport: it
// drops a durable push already delivered on this connection, and holds a
// conversation's live pushes while a sync replays what came before them.
//
// A new connection starts holding every push until its first request (or
// HoldFor): a client that resumes sends sync first, and a push delivered
// before the sync could otherwise overtake the events it missed.
type Stream struct {
	mu      sync.Mutex
	last    map[string]int64
	paused  map[string][]domain.Delivery
	held    []domain.Delivery
	holding bool
	out     func(frame []byte) bool
	limit   int
	// bytes: the frames held and paused, bounded by MaxHeldBytes across
	// the connection's conversations.
	bytes int
	// replaying holds the conversations a sync replays (Replay): a live
	// push that finds such a conversation's paused buffer full is dropped
	// instead of closing the connection, and behind records that the
	// replay must go on past it (CaughtUp).
	replaying map[string]bool
	behind    map[string]bool
	// fresh: the conversations a sync's Replay gave their first position,
	// with that position, until the sync is done with them (Refused).
	fresh map[string]int64
	// release ends the initial hold at HoldFor unless HoldOn stops it;
	// holdGen numbers its arming, so a timer that fired as HoldOn stopped
	// it (too late to stop) finds itself stale and ends nothing.
	release *time.Timer
	holdGen int
	// parts: a sync in parts ("more") is under way; only its last part,
	// or the timer armed after a part, ends the hold, not another request.
	parts bool
	// Room, if set, blocks until the connection's send queue has room
	// (WaitRoom); set by the transport before the stream is used.
	Room func(ctx context.Context) error
}

// HoldFor bounds how long a new connection's pushes wait for its first
// request, from when the connection can read it (StartHold): a client that
// only listens gets them then. A sync that comes later, from a position
// older than a push given meanwhile, loses the events between (seqs are
// not contiguous, so neither side can tell); at 2 s, counted from before
// the connection was registered, a phone on a slow network met that.
const HoldFor = 5 * time.Second

// MaxHeldBytes bounds the frames a connection holds back (for its first
// request, or while a sync replays), whatever their number: a sync names
// up to 1000 conversations, each paused with up to limit pushes.
const MaxHeldBytes = 8 << 20

// NewStream writes frames through out, which reports false on overflow;
// limit bounds the pushes held for a new connection (past it, out is told of
// an overflow).
func NewStream(out func([]byte) bool, limit int) *Stream {
	s := &Stream{last: map[string]int64{}, paused: map[string][]domain.Delivery{}, out: out, holding: true, limit: limit,
		replaying: map[string]bool{}, behind: map[string]bool{}, fresh: map[string]int64{}}
	return s
}

// StartHold starts the initial hold's clock: the transport calls it once
// the connection reads its client's frames (registration, which may wait
// on Redis, does not count against the client).
func (s *Stream) StartHold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holding && s.release == nil {
		s.armLocked()
	}
}

func (s *Stream) armLocked() {
	s.holdGen++
	gen := s.holdGen
	s.release = time.AfterFunc(HoldFor, func() { s.expire(gen) })
}

// expire ends the hold at the timer armed as gen, unless it was stopped or
// armed again since.
func (s *Stream) expire(gen int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen == s.holdGen {
		s.releaseLocked()
	}
}

// HoldOn keeps the initial hold on while a sync runs (from before its
// Replay of the conversations it names); the returned func is for a sync
// with more parts to come: it gives the client HoldFor from then to send
// the next part. Until the last part, other requests do not end the hold
// (FirstRequest). A no-op once the hold has ended.
func (s *Stream) HoldOn() (next func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.holding {
		return func() {}
	}
	s.holdGen++ // a timer firing now is stale
	if s.release != nil {
		s.release.Stop()
	}
	s.parts = true
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.holding {
			s.armLocked()
		}
	}
}

// FirstRequest ends the initial hold for a request other than sync,
// unless a sync in parts is under way (its last part ends it).
func (s *Stream) FirstRequest() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.parts {
		s.releaseLocked()
	}
}

// Release ends the initial hold (a sync's last part) and delivers what was
// held, in order.
func (s *Stream) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked()
}

func (s *Stream) releaseLocked() {
	s.holdGen++
	s.parts = false
	if !s.holding {
		return
	}
	s.holding = false
	held := s.held
	s.held = nil
	for _, d := range held {
		s.bytes -= len(d.Frame)
		s.deliverLocked(d)
	}
}

// Deliver passes a live push through in seq order, once.
func (s *Stream) Deliver(d domain.Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holding && !s.namedLocked(d) {
		if len(s.held) >= s.limit || s.bytes+len(d.Frame) > MaxHeldBytes {
			s.out(nil) // overflow: the connection closes
			return
		}
		s.held = append(s.held, d)
		s.bytes += len(d.Frame)
		return
	}
	s.deliverLocked(d)
}

// namedLocked reports whether d need not wait for the first request: an
// ephemeral push (no seq, no order to keep), or one of a conversation a
// sync has named already (it is paused while replayed, and ordered after
// its replay): while a sync in parts ("more") holds the rest, those go
// their way, so the hold fills only with the conversations still to name.
func (s *Stream) namedLocked(d domain.Delivery) bool {
	if d.Seq == 0 {
		return true
	}
	if _, ok := s.paused[d.ConversationID]; ok {
		return true
	}
	_, ok := s.last[d.ConversationID]
	return ok
}

func (s *Stream) deliverLocked(d domain.Delivery) {
	if d.Seq == 0 {
		s.out(d.Frame)
		return
	}
	if buf, ok := s.paused[d.ConversationID]; ok {
		if len(buf) >= s.limit || s.bytes+len(d.Frame) > MaxHeldBytes {
			buf = s.pruneLocked(d.ConversationID)
		}
		if len(buf) >= s.limit || s.bytes+len(d.Frame) > MaxHeldBytes {
			if s.replaying[d.ConversationID] {
				// A long replay to a client that reads, while its group
				// chats on: the read model has this event, and the replay
				// goes on past it (CaughtUp). Closing here cut off (1008)
				// a client that read all along (issue 15).
				s.behind[d.ConversationID] = true
				return
			}
			s.out(nil) // overflow (a sync that failed is not retried): the connection closes
			return
		}
		s.paused[d.ConversationID] = append(buf, d)
		s.bytes += len(d.Frame)
		return
	}
	s.emitLocked(d.ConversationID, d.Seq, d.Frame)
}

// pruneLocked drops the paused pushes of conv that a replay has sent
// already (at or below its position) and returns what is left. Kept, they
// filled the buffer for good during a long replay: every later push was
// dropped, and the replay went round again until the sync timed out.
func (s *Stream) pruneLocked(conv string) []domain.Delivery {
	last := s.last[conv]
	buf := slices.DeleteFunc(s.paused[conv], func(d domain.Delivery) bool {
		if d.Seq <= last {
			s.bytes -= len(d.Frame)
			return true
		}
		return false
	})
	s.paused[conv] = buf
	return buf
}

func (s *Stream) emitLocked(conv string, seq int64, frame []byte) {
	if seq <= s.last[conv] {
		return
	}
	s.last[conv] = seq
	s.out(frame)
}

// Pause holds live pushes of conv and raises its position to at least from
// (the client has everything up to it). It returns the position. Pushes of
// conv held since the connection opened move to the paused buffer.
func (s *Stream) Pause(conv string, from int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pauseLocked(conv, from)
}

func (s *Stream) pauseLocked(conv string, from int64) int64 {
	if _, ok := s.paused[conv]; !ok {
		s.paused[conv] = nil
	}
	kept := s.held[:0]
	for _, d := range s.held {
		if d.ConversationID == conv {
			s.paused[conv] = append(s.paused[conv], d) // counted in bytes already
		} else {
			kept = append(kept, d)
		}
	}
	s.held = kept
	if last, ok := s.last[conv]; !ok || from > last {
		s.last[conv] = max(from, last) // named from now on (namedLocked)
	}
	return s.last[conv]
}

// Replay pauses conv as Pause does, for a sync that replays it: until
// CaughtUp or Abandon, a live push of conv that finds the paused buffer
// full is dropped rather than closing the connection, so a replay of any
// length to a client that reads holds at most limit live pushes of it.
func (s *Stream) Replay(conv string, from int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replaying[conv] = true
	_, known := s.last[conv]
	pos := s.pauseLocked(conv, from)
	if !known {
		s.fresh[conv] = pos
	}
	return pos
}

// Refused ends conv's replay when the sync found conv is not the user's:
// its held pushes go through, as with Resume, and if the connection was
// given nothing of conv, conv is forgotten. Otherwise a client naming
// conversations it is not in would leave an entry of each in the stream
// for the connection's life.
func (s *Stream) Refused(conv string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pos, fresh := s.fresh[conv]
	s.resumeLocked(conv)
	if fresh && s.last[conv] == pos {
		delete(s.last, conv)
	}
}

// CaughtUp ends conv's replay if no live push of it was dropped since the
// replay began or since the last CaughtUp: the held pushes go out, as with
// Resume, and it returns true. Otherwise it returns false, and the replay
// must go on from Last(conv): the read model has what was dropped.
func (s *Stream) CaughtUp(conv string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.behind[conv] {
		delete(s.behind, conv)
		return false
	}
	s.resumeLocked(conv)
	return true
}

// Abandon ends conv's replay without catching up (the sync failed): conv
// stays paused until a sync succeeds, and past limit held pushes the
// connection closes, as after Pause. What was dropped meanwhile is after
// the client's position, so its next sync replays it.
func (s *Stream) Abandon(conv string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.replaying, conv)
	delete(s.behind, conv)
}

// Emit passes a caught-up event (from the read model) through, once.
func (s *Stream) Emit(conv string, seq int64, frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.emitLocked(conv, seq, frame)
}

// Resume releases the held pushes of conv, skipping those already emitted.
func (s *Stream) Resume(conv string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumeLocked(conv)
	return s.last[conv]
}

func (s *Stream) resumeLocked(conv string) {
	for _, d := range s.paused[conv] {
		s.bytes -= len(d.Frame)
		s.emitLocked(conv, d.Seq, d.Frame)
	}
	delete(s.paused, conv)
	delete(s.replaying, conv)
	delete(s.behind, conv)
	delete(s.fresh, conv)
}

// WaitRoom blocks until the connection can take more frames: a replay
// (sync) waits here between events instead of overflowing the send queue,
// so it goes at the pace the client reads. Call it without holding
// anything a live delivery needs.
func (s *Stream) WaitRoom(ctx context.Context) error {
	if s.Room == nil {
		return nil
	}
	return s.Room(ctx)
}

// Last is the last seq delivered of conv.
func (s *Stream) Last(conv string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[conv]
}
