package domain

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"alice", true}, {"A_b.c-9", true}, {strings.Repeat("x", 64), true},
		{"", false}, {strings.Repeat("x", 65), false}, {"a b", false}, {"ä", false}, {"a/b", false},
	} {
		err := ValidateID("user_id", tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "user_id")) {
			t.Errorf("ValidateID(%q) error %q must be bad request naming the field", tc.in, err)
		}
	}
}

func TestValidateBody(t *testing.T) {
	if err := ValidateBody(strings.Repeat("é", MaxBodyBytes/2)); err != nil {
		t.Fatalf("8192 bytes of UTF-8 refused: %v", err)
	}
	if err := ValidateBody(strings.Repeat("a", MaxBodyBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("8193 bytes: %v, want too large", err)
	}
	if err := ValidateBody(""); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("empty body: %v", err)
	}
	if err := ValidateBody("ok\xff"); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("invalid UTF-8: %v", err)
	}
}

func TestValidateClientMsgID(t *testing.T) {
	if err := ValidateClientMsgID(strings.Repeat("ü", 64)); err != nil {
		t.Fatalf("64 chars refused: %v", err)
	}
	for _, bad := range []string{"", strings.Repeat("a", 65), "\xff"} {
		if err := ValidateClientMsgID(bad); !errors.Is(err, ErrBadRequest) {
			t.Errorf("ValidateClientMsgID(%q) = %v", bad, err)
		}
	}
}

// A send's message id is the same for the same send and period, differs
// when any of them differs, and is a valid id.
func TestSendMessageID(t *testing.T) {
	id := SendMessageID("c1", "alice", "k1", 7)
	if id != SendMessageID("c1", "alice", "k1", 7) {
		t.Fatal("the same send got two ids")
	}
	if err := ValidateID("message_id", id); err != nil || !strings.HasPrefix(id, "m_") {
		t.Fatalf("id %q: %v", id, err)
	}
	seen := map[string]bool{id: true}
	for _, other := range []string{SendMessageID("c2", "alice", "k1", 7), SendMessageID("c1", "bob", "k1", 7),
		SendMessageID("c1", "alice", "k2", 7), SendMessageID("c1", "alice", "k1", 8),
		// the separator keeps the fields apart
		SendMessageID("c1a", "lice", "k1", 7), SendMessageID("c1", "alice", "k17", 7)} {
		if seen[other] {
			t.Fatalf("two sends share id %s", other)
		}
		seen[other] = true
	}
}

func TestDirectConversationIDIsSymmetricAndDistinct(t *testing.T) {
	ab, ba := DirectConversationID("alice", "bob"), DirectConversationID("bob", "alice")
	if ab != ba {
		t.Fatalf("same pair, different ids: %s %s", ab, ba)
	}
	if ab == DirectConversationID("alice", "carol") {
		t.Fatal("different pairs share an id")
	}
	if !IsDirectID(ab) || IsDirectID(NewID("c_")) {
		t.Fatal("IsDirectID misclassifies")
	}
	if err := ValidateID("conversation_id", ab); err != nil {
		t.Fatalf("direct id is not a valid id: %v", err)
	}
}

func TestToPushCoversEveryEvent(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		typ, push string
		payload   any
	}{
		{EvConversationCreated, PushConversationCreated, ConversationCreated{Kind: KindGroup, Members: []string{"a", "b"}}},
		{EvMemberJoined, PushMemberJoined, MemberChanged{UserID: "c"}},
		{EvMemberLeft, PushMemberLeft, MemberChanged{UserID: "c"}},
		{EvMessageSent, PushMessageNew, MessageSent{MessageID: "m_1", ClientMsgID: "x", Body: "hi"}},
		{EvMessageEdited, PushMessageEdited, MessageEdited{MessageID: "m_1", MessageSeq: 3, Body: "hey"}},
		{EvMessageDeleted, PushMessageDeleted, MessageDeleted{MessageID: "m_1", MessageSeq: 3}},
		{EvReadMarked, PushRead, ReadMarked{UpToSeq: 3}},
	}
	for _, tc := range cases {
		e, err := NewEvent(tc.typ, "c_1", "a", at, tc.payload)
		if err != nil {
			t.Fatal(err)
		}
		typ, _, err := ToPush(e, 7)
		if err != nil || typ != tc.push {
			t.Errorf("%s: push %q, %v; want %q", tc.typ, typ, err, tc.push)
		}
		if !IsKnownEvent(tc.typ) {
			t.Errorf("%s not known", tc.typ)
		}
	}
	if _, _, err := ToPush(Event{Type: "chat.unknown.v9"}, 1); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("unknown event: %v", err)
	}
}

func TestDecodeEventRejectsIncompleteEnvelopes(t *testing.T) {
	for _, in := range []string{``, `{}`, `[]`, `{"id":"e","type":"t"}`, `{"id":1}`} {
		if _, err := DecodeEvent([]byte(in)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("DecodeEvent(%s) = %v", in, err)
		}
	}
}

// TestValidateTextRefusesWhatTheStoresCannotHold: U+0000 (Postgres text
// and jsonb refuse it) and invalid UTF-8, with the field named; every other
// control character is accepted as text.
func TestValidateTextRefusesWhatTheStoresCannotHold(t *testing.T) {
	for _, tc := range []struct {
		field, v string
		check    func(string) error
	}{
		{"body", "a\u0000b", ValidateBody},
		{"client_msg_id", "k\u0000", ValidateClientMsgID},
		{"title", "\x00", func(v string) error { return ValidateText("title", v) }},
		{"title", "t\xc3", func(v string) error { return ValidateText("title", v) }},
	} {
		err := tc.check(tc.v)
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s %q: %v, want bad_request naming %s", tc.field, tc.v, err, tc.field)
		}
	}
	if err := ValidateBody("tab\there\u0001\u007f\u200b\U0001F600"); err != nil {
		t.Errorf("control and other characters refused: %v", err)
	}
}

func TestClampRead(t *testing.T) {
	for _, c := range [][3]int64{{5, 10, 5}, {9, 10, 9}, {10, 10, 9}, {1 << 62, 10, 9}, {0, 1, 0}} {
		if got := ClampRead(c[0], c[1]); got != c[2] {
			t.Errorf("ClampRead(%d, %d) = %d, want %d", c[0], c[1], got, c[2])
		}
	}
}

func TestSeqOfOffset(t *testing.T) {
	for _, off := range []int64{0, 1, 41, 1 << 40} {
		if got := OffsetOf(SeqOf(off)); got != off {
			t.Errorf("OffsetOf(SeqOf(%d)) = %d", off, got)
		}
	}
	if SeqOf(0) != 1 {
		t.Errorf("SeqOf(0) = %d: the first event's seq must be 1, 0 means nothing seen", SeqOf(0))
	}
}
