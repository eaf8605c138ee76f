package gateway

import (
	"testing"

	"github.com/parley-chat/parley/domain"
)

// A conversation stays paused after a failed sync until one succeeds; its
// live pushes are held meanwhile, at most limit of them: past that the
// connection is closed (out(nil)) and the client resyncs.
func TestStreamPausedIsBounded(t *testing.T) {
	var frames, overflows int
	s := NewStream(func(f []byte) bool {
		if f == nil {
			overflows++
			return false
		}
		frames++
		return true
	}, 3)
	s.Release()
	s.Pause("c", 10)
	for seq := int64(11); seq <= 14; seq++ {
		s.Deliver(domain.Delivery{ConversationID: "c", Seq: seq, Frame: []byte("x")})
	}
	if frames != 0 || overflows != 1 {
		t.Fatalf("paused conversation: %d frames out, %d overflows; want 0 and 1", frames, overflows)
	}
	// Another conversation is not held.
	s.Deliver(domain.Delivery{ConversationID: "d", Seq: 1, Frame: []byte("y")})
	if frames != 1 {
		t.Fatalf("unpaused conversation: %d frames out, want 1", frames)
	}
}
