package socketio

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestSocketIOEngineTextPackets(t *testing.T) {
	for typ := EngineOpen; typ <= EngineNoop; typ++ {
		p := EnginePacket{Type: typ, Data: []byte("probe")}
		got, err := DecodeEngineText(p.EncodeText())
		if err != nil || got.Type != typ || string(got.Data) != "probe" || got.Binary {
			t.Fatalf("type %d: %+v %v", typ, got, err)
		}
	}
	if got := (EnginePacket{Type: EngineMessage, Data: []byte("hello")}).EncodeText(); string(got) != "4hello" {
		t.Fatalf("encode: %q", got)
	}
	for _, bad := range []string{"", "7", "a", "/", "b"} {
		if _, err := DecodeEngineText([]byte(bad)); err == nil {
			t.Fatalf("%q decoded", bad)
		}
	}
}

func TestSocketIOPollingPayload(t *testing.T) {
	ps := []EnginePacket{
		{Type: EngineMessage, Data: []byte("hello")},
		{Type: EngineMessage, Data: []byte{1, 2, 3, 4}, Binary: true},
		{Type: EnginePing},
		{Type: EngineMessage, Data: []byte("é\u2028")},
	}
	enc := EncodePayload(ps)
	if want := "4hello\x1ebAQIDBA==\x1e2\x1e4é\u2028"; string(enc) != want {
		t.Fatalf("encode: %q, want %q", enc, want)
	}
	got, err := DecodePayload(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ps {
		if got[i].Type != ps[i].Type || got[i].Binary != ps[i].Binary || !bytes.Equal(got[i].Data, ps[i].Data) {
			t.Fatalf("packet %d: %+v, want %+v", i, got[i], ps[i])
		}
	}
	for _, bad := range []string{"", "abc", "4a\x1e", "\x1e4a", "b!!!", "4ok\x1e9"} {
		if _, err := DecodePayload([]byte(bad)); err == nil {
			t.Fatalf("%q decoded", bad)
		}
	}
	if _, err := DecodePayload([]byte("b!!!")); !errors.Is(err, ErrBadBase64) {
		t.Fatalf("bad base64: %v", err)
	}
}

func TestSocketIODecode(t *testing.T) {
	cases := []struct {
		in   string
		want Packet
	}{
		{"0", Packet{Type: PacketConnect, Namespace: "/"}},
		{"0/admin,", Packet{Type: PacketConnect, Namespace: "/admin"}},
		{"0/admin", Packet{Type: PacketConnect, Namespace: "/admin"}},
		{`0{"token":"123"}`, Packet{Type: PacketConnect, Namespace: "/", Data: json.RawMessage(`{"token":"123"}`)}},
		{`0/admin,{"token":"123"}`, Packet{Type: PacketConnect, Namespace: "/admin", Data: json.RawMessage(`{"token":"123"}`)}},
		{"1", Packet{Type: PacketDisconnect, Namespace: "/"}},
		{"1/admin,", Packet{Type: PacketDisconnect, Namespace: "/admin"}},
		{`2["hello",1]`, Packet{Type: PacketEvent, Namespace: "/", Data: json.RawMessage(`["hello",1]`)}},
		{`2[42,"x"]`, Packet{Type: PacketEvent, Namespace: "/", Data: json.RawMessage(`[42,"x"]`)}},
		{`2/admin,456["project:delete",123]`, Packet{Type: PacketEvent, Namespace: "/admin", ID: 456, HasID: true,
			Data: json.RawMessage(`["project:delete",123]`)}},
		{`3/admin,456[]`, Packet{Type: PacketAck, Namespace: "/admin", ID: 456, HasID: true, Data: json.RawMessage(`[]`)}},
		{`4{"message":"Not authorized"}`, Packet{Type: PacketConnectError, Namespace: "/", Data: json.RawMessage(`{"message":"Not authorized"}`)}},
		{`4"nope"`, Packet{Type: PacketConnectError, Namespace: "/", Data: json.RawMessage(`"nope"`)}},
		{`51-["hello",{"_placeholder":true,"num":0}]`, Packet{Type: PacketBinaryEvent, Namespace: "/", NumAttachments: 1,
			Data: json.RawMessage(`["hello",{"_placeholder":true,"num":0}]`)}},
		{`61-/admin,456[{"_placeholder":true,"num":0}]`, Packet{Type: PacketBinaryAck, Namespace: "/admin", ID: 456, HasID: true,
			NumAttachments: 1, Data: json.RawMessage(`[{"_placeholder":true,"num":0}]`)}},
	}
	for _, c := range cases {
		got, err := DecodeString([]byte(c.in))
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		// An event carries its parsed array, for the socket.
		var args []json.RawMessage
		if got.Type == PacketEvent || got.Type == PacketBinaryEvent {
			_ = json.Unmarshal(got.Data, &args)
		}
		if !reflect.DeepEqual(got.args, args) {
			t.Fatalf("%s: args %q, want %q", c.in, got.args, args)
		}
		got.args = nil
		if !reflect.DeepEqual(got, c.want) {
			t.Fatalf("%s:\n got %+v\nwant %+v", c.in, got, c.want)
		}
	}
}

func TestSocketIODecodeRejects(t *testing.T) {
	for _, bad := range []string{
		"", "7", "abc", "a", // unknown types
		`2{}`, `2[]`, `2"x"`, `2`, `2[true]`, `2[null]`, `2[{}]`, // event payloads
		`2["connect"]`, `2["disconnect",1]`, `2["newListener"]`, // reserved names
		`2abc["message-with-ack",1]`, `21234567890123456["x"]`, // ack ids
		`1{}`, `1"x"`, `0[]`, `0"x"`, // connect and disconnect payloads
		`3[]`, `31{}`, `4`, `4[1]`, `41`, // acks and connect errors
		`5-["x"]`, `5a-["x"]`, `5999-["x"]`, `51["x"]`, `5-1["x"]`, // attachment counts
		`2["x",}`, `2["x"]garbage`, // JSON
	} {
		if p, err := DecodeString([]byte(bad)); err == nil {
			t.Fatalf("%q decoded: %+v", bad, p)
		}
	}
}

func TestSocketIOEncode(t *testing.T) {
	cases := []struct {
		p    Packet
		want string
	}{
		{Packet{Type: PacketConnect, Namespace: "/", Data: json.RawMessage(`{"sid":"x"}`)}, `0{"sid":"x"}`},
		{Packet{Type: PacketConnect, Namespace: "/custom", Data: json.RawMessage(`{"sid":"x"}`)}, `0/custom,{"sid":"x"}`},
		{Packet{Type: PacketDisconnect, Namespace: "/"}, `1`},
		{Packet{Type: PacketEvent, Namespace: "/", Data: json.RawMessage(`["a",1]`)}, `2["a",1]`},
		{Packet{Type: PacketAck, Namespace: "/", ID: 456, HasID: true, Data: json.RawMessage(`[1]`)}, `3456[1]`},
		{Packet{Type: PacketConnectError, Namespace: "/random", Data: json.RawMessage(`{"message":"Invalid namespace"}`)},
			`4/random,{"message":"Invalid namespace"}`},
		{Packet{Type: PacketBinaryAck, Namespace: "/", ID: 789, HasID: true, Attachments: [][]byte{{1}, {2}},
			Data: json.RawMessage(`[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)},
			`62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`},
	}
	for _, c := range cases {
		if got := string(c.p.EncodeString()); got != c.want {
			t.Fatalf("encode %+v: %s, want %s", c.p, got, c.want)
		}
		back, err := DecodeString([]byte(c.want))
		if err != nil {
			t.Fatalf("decode %s: %v", c.want, err)
		}
		if back.Type != c.p.Type || back.Namespace != c.p.Namespace || back.ID != c.p.ID ||
			!bytes.Equal(back.Data, c.p.Data) || back.NumAttachments != len(c.p.Attachments) {
			t.Fatalf("round trip of %s: %+v", c.want, back)
		}
	}
}

func TestSocketIOPlaceholders(t *testing.T) {
	ok := []struct {
		data string
		n    int
	}{
		{`["x"]`, 0},
		{`["x",{"_placeholder":true,"num":0}]`, 1},
		{`["x",{"a":[{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":0}]`, 2},
		{`["x",{"_placeholder":false,"num":9}]`, 0},
	}
	for _, c := range ok {
		if err := checkPlaceholders(json.RawMessage(c.data), c.n); err != nil {
			t.Fatalf("%s with %d: %v", c.data, c.n, err)
		}
	}
	bad := []struct {
		data string
		n    int
	}{
		{`["x",{"_placeholder":true,"num":1}]`, 1},
		{`["x",{"_placeholder":true,"num":-1}]`, 1},
		{`["x",{"_placeholder":true,"num":0.5}]`, 1},
		{`["x",{"_placeholder":true,"num":"0"}]`, 1},
		{`["x",{"_placeholder":true}]`, 1},
		{`["x",{"_placeholder":true,"num":0}]`, 0},
	}
	for _, c := range bad {
		if err := checkPlaceholders(json.RawMessage(c.data), c.n); err == nil {
			t.Fatalf("%s with %d accepted", c.data, c.n)
		}
	}
	if string(Placeholder(3)) != `{"_placeholder":true,"num":3}` {
		t.Fatal(string(Placeholder(3)))
	}
}
