package commands

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

func TestIdemRecord(t *testing.T) {
	at := time.Date(2026, 11, 28, 5, 14, 3, 874030000, time.UTC)
	m := domain.Message{ConversationID: "c_1", MessageID: "m_0123456789abcdef0123456789abcdef", Seq: 42,
		SenderID: "alice", ClientMsgID: "k1", Body: strings.Repeat("long body ", 400), SentAt: at}
	rec := encodeRecord(m)
	if len(rec) > 100 {
		t.Fatalf("record of a 4 KB message is %d bytes: %q", len(rec), rec)
	}
	r, err := decodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	c := SendMessage{ConversationID: m.ConversationID, ClientMsgID: m.ClientMsgID, Body: m.Body}
	got, ok := r.message("alice", c)
	if !ok || !reflect.DeepEqual(got, m) {
		t.Fatalf("resend with the first body: %+v (%v), want %+v", got, ok, m)
	}
	c.Body = "another body"
	if _, ok := r.message("alice", c); ok {
		t.Fatal("a resend with another body was answered from the record")
	}
	for _, bad := range []string{"", "c:", "d:{}", "c:m_1|42|0", "c:m_1|x|0|" + bodyHash(""), "c:m_1|0|0|" + bodyHash(""),
		"c:|42|0|" + bodyHash(""), "c:m_1|42|t|" + bodyHash(""), "c:m_1|42|0|short", "c:m_1|42|0|" + bodyHash("") + "|extra"} {
		if _, err := decodeRecord(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

// Records come back from Redis: whatever is stored there, decoding answers
// with a well-formed record or an error, never a panic.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(domain.Message{MessageID: "m_1", Seq: 1, Body: "hi", SentAt: time.Unix(0, 0)}))
	f.Add("c:m_1|9|-5|AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("c:||||")
	f.Fuzz(func(t *testing.T, v string) {
		r, err := decodeRecord(v)
		if err != nil {
			return
		}
		if r.seq < 1 || r.messageID == "" || len(r.bodyHash) != 22 {
			t.Fatalf("accepted %q as %+v", v, r)
		}
	})
}
