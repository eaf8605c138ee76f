package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/transport/socketio"
)

// The conformance server answers as the Socket.IO protocol test suite
// expects (the suite itself runs against `go run ./cmd/sioconformance`).
func TestSocketIOConformanceServer(t *testing.T) {
	srv := socketio.NewServer(Config(slog.New(slog.NewTextHandler(io.Discard, nil))))
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/socket.io/?EIO=4&transport=websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func() string {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if string(b) == "2" {
				_ = c.WriteMessage(websocket.TextMessage, []byte("3"))
				continue
			}
			return string(b)
		}
	}
	send := func(m string) {
		t.Helper()
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	var open map[string]any
	if err := json.Unmarshal([]byte(strings.TrimPrefix(read(), "0")), &open); err != nil {
		t.Fatal(err)
	}
	if open["pingInterval"] != 300.0 || open["pingTimeout"] != 200.0 || open["maxPayload"] != 1e6 {
		t.Fatalf("handshake: %v", open)
	}
	send(`40/custom,{"token":"abc"}`)
	if m := read(); !strings.HasPrefix(m, `40/custom,{"sid":`) {
		t.Fatalf("connect: %s", m)
	}
	if m := read(); m != `42/custom,["auth",{"token":"abc"}]` {
		t.Fatalf("auth: %s", m)
	}
	send(`42/custom,["message",1,"2",{"3":[true]}]`)
	if m := read(); m != `42/custom,["message-back",1,"2",{"3":[true]}]` {
		t.Fatalf("message-back: %s", m)
	}
	send(`42/custom,456["message-with-ack",1,"2",{"3":[false]}]`)
	if m := read(); m != `43/custom,456[1,"2",{"3":[false]}]` {
		t.Fatalf("ack: %s", m)
	}
	send("40/random")
	if m := read(); m != `44/random,{"message":"Invalid namespace"}` {
		t.Fatalf("unknown namespace: %s", m)
	}
}
