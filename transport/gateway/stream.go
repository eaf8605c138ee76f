package gateway

import (
	"context"
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
	// Room, if set, blocks until the connection's send queue has room
	// (WaitRoom); set by the transport before the stream is used.
	Room func(ctx context.Context) error
}

// HoldFor bounds how long a new connection's pushes wait for its first
// request.
const HoldFor = 2 * time.Second

// NewStream writes frames through out, which reports false on overflow;
// limit bounds the pushes held for a new connection (past it, out is told of
// an overflow).
func NewStream(out func([]byte) bool, limit int) *Stream {
	s := &Stream{last: map[string]int64{}, paused: map[string][]domain.Delivery{}, out: out, holding: true, limit: limit}
	time.AfterFunc(HoldFor, s.Release)
	return s
}

// Release ends the initial hold and delivers what was held, in order.
func (s *Stream) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.holding {
		return
	}
	s.holding = false
	for _, d := range s.held {
		s.deliverLocked(d)
	}
	s.held = nil
}

// Deliver passes a live push through in seq order, once.
func (s *Stream) Deliver(d domain.Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holding {
		if len(s.held) >= s.limit {
			s.out(nil) // overflow: the connection closes
			return
		}
		s.held = append(s.held, d)
		return
	}
	s.deliverLocked(d)
}

func (s *Stream) deliverLocked(d domain.Delivery) {
	if d.Seq == 0 {
		s.out(d.Frame)
		return
	}
	if buf, ok := s.paused[d.ConversationID]; ok {
		if len(buf) >= s.limit {
			s.out(nil) // overflow (a sync that failed is not retried): the connection closes
			return
		}
		s.paused[d.ConversationID] = append(buf, d)
		return
	}
	s.emitLocked(d.ConversationID, d.Seq, d.Frame)
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
	if _, ok := s.paused[conv]; !ok {
		s.paused[conv] = nil
	}
	kept := s.held[:0]
	for _, d := range s.held {
		if d.ConversationID == conv {
			s.paused[conv] = append(s.paused[conv], d)
		} else {
			kept = append(kept, d)
		}
	}
	s.held = kept
	if from > s.last[conv] {
		s.last[conv] = from
	}
	return s.last[conv]
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
	for _, d := range s.paused[conv] {
		s.emitLocked(conv, d.Seq, d.Frame)
	}
	delete(s.paused, conv)
	return s.last[conv]
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
