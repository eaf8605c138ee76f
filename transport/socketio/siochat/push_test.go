package siochat

import (
	"bytes"
	"testing"
)

// A push frame becomes the event (type, data[, {"seq"}]) with data passed
// through. The same frame, delivered to one connection after another, is
// encoded once; another frame, even with the same bytes, or another
// namespace, is encoded afresh.
func TestEncodePush(t *testing.T) {
	c, err := New(Config{}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	frame := []byte(`{"type":"message.new","seq":7,"data":{"body":"hi"}}`)
	text, err := c.encodePush(frame, "/")
	if err != nil {
		t.Fatal(err)
	}
	if want := `2["message.new",{"body":"hi"},{"seq":7}]`; string(text) != want {
		t.Fatalf("encoded %s, want %s", text, want)
	}
	again, _ := c.encodePush(frame, "/")
	if &again[0] != &text[0] {
		t.Error("the same frame was encoded again")
	}
	copied, _ := c.encodePush(bytes.Clone(frame), "/")
	if &copied[0] == &text[0] || !bytes.Equal(copied, text) {
		t.Errorf("another frame with the same bytes: %s, reused %v", copied, &copied[0] == &text[0])
	}
	other, _ := c.encodePush(frame, "/admin")
	if want := `2/admin,["message.new",{"body":"hi"},{"seq":7}]`; string(other) != want {
		t.Errorf("on /admin: %s, want %s", other, want)
	}
	typing, _ := c.encodePush([]byte(`{"type":"typing","data":{"user_id":"u"}}`), "/")
	if want := `2["typing",{"user_id":"u"}]`; string(typing) != want {
		t.Errorf("an ephemeral push: %s, want %s", typing, want)
	}
	if _, err := c.encodePush([]byte(`{"type":`), "/"); err == nil {
		t.Error("a broken frame was encoded")
	}
}
