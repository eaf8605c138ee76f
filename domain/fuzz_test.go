package domain

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rivo/uniseg"
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

func TestValidateEmoji(t *testing.T) {
	for _, ok := range []string{"👍", "🎉", "👨‍👩‍👧", "🇫🇷", "👍🏽", "❤️", "a", "é"} {
		if err := ValidateEmoji(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ab", "👍👍", " ", "\n", "\x00", "\xff", strings.Repeat("👍\u200d", 9) + "👍"} {
		if err := ValidateEmoji(bad); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%q: %v, want bad_request", bad, err)
		}
	}
}

// FuzzValidateEmoji: an accepted emoji is one grapheme cluster of valid,
// storable text within the byte bound.
func FuzzValidateEmoji(f *testing.F) {
	for _, s := range []string{"👍", "👨‍👩‍👧", "🇫🇷", "ab", "", "\x00", "e\u0301"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateEmoji(s) != nil {
			return
		}
		if s == "" || len(s) > MaxEmojiBytes || !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 || uniseg.GraphemeClusterCount(s) != 1 {
			t.Fatalf("accepted %q", s)
		}
	})
}
