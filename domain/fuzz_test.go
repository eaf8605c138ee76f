package domain

import (
	"testing"
)

// Events read from Kafka are outside input: a decoder must never panic, and
// what it accepts must map to a push or a clean error.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"id":"e_1","type":"chat.message_sent.v1","conversation_id":"c_1","actor":"a","at":"2026-01-01T00:00:00Z","data":{"message_id":"m","client_msg_id":"x","body":"hi"}}`))
	f.Add([]byte(`{"id":"e_1","type":"chat.conversation_created.v1","conversation_id":"c_1","data":{"kind":"group","members":["a"]}}`))
	f.Add([]byte(`{"id":"e","type":"chat.read_marked.v1","conversation_id":"c","data":{"up_to_seq":"x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if err != nil {
			return
		}
		_, _ = EncodePush(e, 1)
	})
}
