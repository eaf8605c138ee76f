package gateway

import (
	"sync"

	"github.com/parley-chat/parley/domain"
)

// Stream is the per-connection ordering state shared by every transport: it
// drops a durable push already delivered on this connection, and holds a
// conversation's live pushes while a sync replays what came before them.
type Stream struct {
	mu     sync.Mutex
	last   map[string]int64
	paused map[string][]domain.Delivery
	out    func(frame []byte) bool
}

// NewStream writes frames through out, which reports false on overflow.
func NewStream(out func([]byte) bool) *Stream {
	return &Stream{last: map[string]int64{}, paused: map[string][]domain.Delivery{}, out: out}
}

// Deliver passes a live push through in seq order, once.
func (s *Stream) Deliver(d domain.Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.Seq == 0 {
		s.out(d.Frame)
		return
	}
	if buf, ok := s.paused[d.ConversationID]; ok {
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
// (the client has everything up to it). It returns the position.
func (s *Stream) Pause(conv string, from int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.paused[conv]; !ok {
		s.paused[conv] = nil
	}
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

// Last is the last seq delivered of conv.
func (s *Stream) Last(conv string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[conv]
}
