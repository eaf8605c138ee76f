package gateway

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// TestSplitPushMatchesJSON: the fast split of encoder output agrees with a
// JSON parse, with and without seq, and odd layouts still parse.
func TestSplitPushMatchesJSON(t *testing.T) {
	e, err := domain.NewEvent(domain.EvMessageSent, "c_1", "u1", time.Now(), domain.MessageSent{MessageID: "m1", ClientMsgID: "k", Body: `he said "hi" \ {}`})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := domain.EncodePush(e, 42)
	if err != nil {
		t.Fatal(err)
	}
	for _, frame := range [][]byte{enc,
		[]byte(`{"type":"typing","data":{"user_id":"u"}}`),
		[]byte(`{"seq":7,"type":"message.new","data":{"a":1}}`),
		[]byte(` {"type":"x","seq":3,"data":[1,2]}`),
	} {
		got, err := SplitPush(frame)
		if err != nil {
			t.Fatalf("%s: %v", frame, err)
		}
		var want struct {
			Type string          `json:"type"`
			Seq  int64           `json:"seq"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(frame, &want); err != nil {
			t.Fatal(err)
		}
		if got.Type != want.Type || got.Seq != want.Seq || string(got.Data) != string(want.Data) {
			t.Errorf("%s: split %+v, want %+v", frame, got, want)
		}
	}
	if _, err := SplitPush([]byte(`{"data":{}}`)); err == nil {
		t.Error("a frame without type was split")
	}
}

func FuzzSplitPush(f *testing.F) {
	f.Add([]byte(`{"type":"message.new","seq":5,"data":{"x":1}}`))
	f.Add([]byte(`{"type":"typing","data":{}}`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		p, ok := splitCanonical(frame)
		if !ok {
			return
		}
		if p.Type == "" || len(p.Data) == 0 {
			t.Fatalf("split %q into %+v", frame, p)
		}
	})
}
