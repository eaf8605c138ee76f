package commands

import (
	"errors"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/protocol"
)

// Command bodies arrive from WebSocket frames and HTTP bodies: decoding and
// validating them must never panic, and every refusal is a bad request or
// too large, never an internal error.
func FuzzCommandBodies(f *testing.F) {
	for _, s := range []string{
		`{"conversation_id":"c_1","client_msg_id":"x","body":"hi"}`,
		`{"kind":"group","title":"t","members":["a","b"]}`,
		`{"kind":"direct","members":["b"]}`,
		`{"conversation_id":"c","seq":-1}`,
		`{"members":[1,2]}`, `{"body":null}`, `[]`, `{"conversation_id":"` + "\u00e9" + `"}`,
		`{"conversation_id":"c_1","client_msg_id":"x","body":"hi","reply_to":"m_1"}`,
		`{"conversation_id":"c_1","message_id":"m_1","emoji":"👍"}`,
		`{"conversation_id":"c_1","message_id":"m_1","emoji":"👨‍👩‍👧"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(err error) {
			if err != nil && !errors.Is(err, domain.ErrBadRequest) && !errors.Is(err, domain.ErrTooLarge) {
				t.Fatalf("refusal is not a client error: %v", err)
			}
		}
		var send SendMessage
		if err := protocol.DecodeData(b, &send); err == nil {
			check(send.Validate())
		}
		var react ReactMessage
		if err := protocol.DecodeData(b, &react); err == nil {
			err := react.Validate()
			check(err)
			if err == nil && domain.ValidateEmoji(react.Emoji) != nil {
				t.Fatalf("reaction %q accepted", react.Emoji)
			}
		}
		var create CreateConversation
		if err := protocol.DecodeData(b, &create); err == nil {
			members, err := create.Validate("alice")
			check(err)
			if err == nil && create.Kind == domain.KindDirect && len(members) != 2 {
				t.Fatalf("direct conversation with %d members accepted", len(members))
			}
		}
	})
}
