package main

import (
	"testing"
	"time"
)

func TestRequireLoopback(t *testing.T) {
	for _, ok := range []string{"ws://127.0.0.1:18080/ws", "http://localhost:18380", "ws://127.3.2.1:1/ws", "ws://[::1]:80/ws"} {
		if err := requireLoopback(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"ws://10.0.0.1:18080/ws", "http://example.com", "ws://192.168.1.2/ws", "ws://8.8.8.8/ws", "nonsense"} {
		if requireLoopback(bad) == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestURLs(t *testing.T) {
	cases := []struct{ in, proto, want string }{
		{"ws://127.0.0.1:18080/ws", "native", "ws://127.0.0.1:18080/ws"},
		{"http://127.0.0.1:18080", "native", "ws://127.0.0.1:18080/ws"},
		{"http://127.0.0.1:18380", "sio", "ws://127.0.0.1:18380/socket.io/?EIO=4&transport=websocket"},
	}
	for _, c := range cases {
		if got := dialURL(c.in, c.proto); got != c.want {
			t.Errorf("dialURL(%s, %s) = %s, want %s", c.in, c.proto, got, c.want)
		}
	}
	if got := httpBase("ws://127.0.0.1:18080/ws"); got != "http://127.0.0.1:18080" {
		t.Errorf("httpBase = %s", got)
	}
	if srcAddr(0, 0) != "" || srcAddr(0, 3) != "127.0.0.2" || srcAddr(4, 3) != "127.0.0.3" || srcAddr(300, 1000) != "127.0.1.46" {
		t.Error("srcAddr spreads wrongly")
	}
}

func TestMsgIndex(t *testing.T) {
	r := newRun(&config{}, nil, 10)
	r.next.Store(5)
	for cmid, want := range map[string]int64{r.id + "-0": 0, r.id + "-4": 4} {
		if i, ok := r.msgIndex(cmid); !ok || i != want {
			t.Errorf("msgIndex(%s) = %d %v", cmid, i, ok)
		}
	}
	for _, bad := range []string{r.id + "-5", r.id + "-x", "other-1", r.id, r.id + "-", r.id + "-99"} {
		if _, ok := r.msgIndex(bad); ok {
			t.Errorf("msgIndex(%s) accepted", bad)
		}
	}
}

func TestParseSio(t *testing.T) {
	if parseSio([]byte("2")).kind != sioPing {
		t.Error("ping")
	}
	p := parseSio([]byte(`42["message.new",{"seq":7,"client_msg_id":"x"}]`))
	if p.kind != sioEvent || p.typ != "message.new" || p.seq != 7 {
		t.Errorf("event: %+v", p)
	}
	p = parseSio([]byte(`4312[{"ok":true,"data":{"message":{}}}]`))
	if p.kind != sioAckPacket || p.id != 12 || p.code != "" || string(p.data) != `{"message":{}}` {
		t.Errorf("ack: %+v", p)
	}
	p = parseSio([]byte(`433[{"ok":false,"error":{"code":"forbidden"}}]`))
	if p.code != "forbidden" || p.id != 3 {
		t.Errorf("error ack: %+v", p)
	}
}

func TestParseFlagsBounds(t *testing.T) {
	if _, err := parseFlags("fanout", []string{"--duration", "2h"}); err == nil {
		t.Error("a 2 h run accepted")
	}
	if _, err := parseFlags("fanout", []string{"--nodes", "ws://10.1.1.1:80/ws"}); err == nil {
		t.Error("non-loopback node accepted")
	}
	c, err := parseFlags("ramp", []string{"--step", "5s"})
	if err != nil || c.step != 5*time.Second {
		t.Errorf("ramp flags: %v", err)
	}
}

// FuzzParseSio: server frames are outside input to the client.
func FuzzParseSio(f *testing.F) {
	for _, s := range []string{"2", "3", `40{"sid":"a"}`, `42["message.new",{"seq":1}]`, `431[{"ok":true,"data":{}}]`,
		`43x[`, `42[`, `43[{"ok":false}]`, "44{}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := parseSio(b)
		if p.kind == sioAckPacket && p.id < 0 && p.code == "" && p.data == nil {
			_ = p // any shape is fine; parseSio must only not panic
		}
	})
}
