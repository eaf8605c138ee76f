package socketio

import (
	"encoding/json"
	"testing"
)

// A client's message.send as the socket takes it: decoded, validated and
// split into its name and arguments. "parsed-once" is what the socket does;
// "parsed-thrice" redoes what it did before session 11 (a validity scan,
// the validating parse, and the socket's own parse).
func BenchmarkDecodeEvent(b *testing.B) {
	frame := []byte(`2/,17["message.send",{"conversation_id":"c_01JD8ZQ4W5RZ4S2M7XKQ3T9V6B","client_msg_id":"m-1733240000000-42","body":"the quick brown fox jumps over the lazy dog, twice over, to make a body of a realistic length"}]`)
	b.Run("parsed-once", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p, err := DecodeString(frame)
			if err != nil || len(p.arguments()) != 2 {
				b.Fatal(err)
			}
		}
	})
	b.Run("parsed-thrice", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p, err := DecodeString(frame)
			if err != nil || !json.Valid(p.Data) {
				b.Fatal(err)
			}
			p.args = nil
			if len(p.arguments()) != 2 {
				b.Fatal("no arguments")
			}
		}
	})
}

// BenchmarkEncodeEvent: a push's text, made once per delivery and node.
func BenchmarkEncodeEvent(b *testing.B) {
	args := []json.RawMessage{json.RawMessage(`{"type":"message.new","conversation_id":"c_0123456789abcdef","message_id":"m_0123456789abcdef0123456789abcd","seq":1234,"sender_id":"u_0123","body":"hello there, a one-line message of about sixty bytes","sent_at":"2026-12-04T17:00:00.000Z"}`)}
	b.ReportAllocs()
	for b.Loop() {
		_ = EncodeEvent("/", "push", args)
	}
}
