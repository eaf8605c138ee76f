package socketio

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"
)

// Seeds are also in testdata/fuzz/<target>/.

// FuzzDecodeString: the Socket.IO decoder never panics, and what it accepts
// encodes back to a packet that decodes the same.
func FuzzDecodeString(f *testing.F) {
	for _, s := range []string{"0", `0/admin,{"token":"x"}`, `2["a",1]`, `2/x,12["a"]`, `3/x,1[]`,
		`4{"message":"m"}`, `51-["a",{"_placeholder":true,"num":0}]`, "42abc[1]", "5999-[]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeString(b)
		if err != nil {
			return
		}
		if p.Type == PacketEvent || p.Type == PacketBinaryEvent {
			// The array the decoder parsed is the payload's, whole.
			var all []json.RawMessage
			if err := json.Unmarshal(p.Data, &all); err != nil || len(all) == 0 || !reflect.DeepEqual(p.arguments(), all) {
				t.Fatalf("%q: arguments %q, payload's %q (%v)", b, p.arguments(), all, err)
			}
		}
		if p.Type == PacketBinaryEvent || p.Type == PacketBinaryAck {
			p.Attachments = make([][]byte, p.NumAttachments)
		}
		again, err := DecodeString(p.EncodeString())
		if err != nil {
			t.Fatalf("%q decoded to %+v, whose encoding %q does not decode: %v", b, p, p.EncodeString(), err)
		}
		if again.Type != p.Type || again.Namespace != p.Namespace || again.HasID != p.HasID || again.ID != p.ID ||
			!bytes.Equal(again.Data, p.Data) || again.NumAttachments != p.NumAttachments {
			t.Fatalf("%q: round trip %+v != %+v", b, again, p)
		}
		_ = checkPlaceholders(p.Data, p.NumAttachments)
	})
}

// FuzzDecodePayload: the Engine.IO payload decoder never panics, and what
// it accepts encodes back to the same packets.
func FuzzDecodePayload(f *testing.F) {
	for _, s := range []string{"4hello", "4hello\x1ebAQIDBA==", "2\x1e3\x1e6", "b", "4\x1e\x1e4", "0{}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := DecodePayload(b)
		if err != nil {
			return
		}
		again, err := DecodePayload(EncodePayload(ps))
		if err != nil || len(again) != len(ps) {
			t.Fatalf("%q: re-encoding does not decode: %v", b, err)
		}
		for i := range ps {
			if again[i].Type != ps[i].Type || again[i].Binary != ps[i].Binary || !bytes.Equal(again[i].Data, ps[i].Data) {
				t.Fatalf("%q: packet %d %+v != %+v", b, i, again[i], ps[i])
			}
		}
	})
}

// FuzzSession feeds a decoded payload to a live session (echo namespaces):
// whatever the client sends, the server neither panics nor deadlocks, and
// the session either stays usable or closes.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"40\x1e42[\"message\",1]", "40\x1e42123[\"message-with-ack\",{\"a\":[1]}]",
		"40/custom,\x1e452-/custom,[\"message\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]\x1ebAQ==\x1ebAg==",
		"40\x1e41\x1e40\x1e3", "40\x1ebAQID", "40\x1e451-[\"message\",{\"_placeholder\":true,\"num\":3}]\x1ebAQ==",
		"40\x1e43[1]", "1", "2", "0", "40/nope,", "40\x1e44{}",
	} {
		f.Add([]byte(s))
	}
	cfg := testConfig()
	cfg.SendQueue = 64
	srv := NewServer(cfg)
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := DecodePayload(b)
		if err != nil {
			return
		}
		s := srv.newSession(httptest.NewRequest("GET", "/socket.io/?EIO=4&transport=polling", nil), false)
		defer s.close("fuzz done", closeAbort)
		for _, p := range ps {
			if !s.receive(p) {
				break
			}
		}
		s.mu.Lock()
		for _, p := range s.buf {
			if p.Type == EngineMessage && !p.Binary {
				if _, err := DecodeString(p.Data); err != nil {
					t.Fatalf("the server sent a packet it cannot decode: %q: %v", p.Data, err)
				}
			}
		}
		s.mu.Unlock()
	})
}

// The fuzz targets' sessions must not outlive the test.
func TestSocketIOFuzzSessionCleansUp(t *testing.T) {
	srv := NewServer(testConfig())
	s := srv.newSession(httptest.NewRequest("GET", "/socket.io/?EIO=4&transport=polling", nil), false)
	s.receive(EnginePacket{Type: EngineMessage, Data: []byte("40")})
	s.close("done", closeAbort)
	select {
	case <-s.done:
	case <-time.After(time.Second):
		t.Fatal("session not done")
	}
	if srv.Sessions() != 0 {
		t.Fatal("session left behind")
	}
}
