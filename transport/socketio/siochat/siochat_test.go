package siochat_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/gateway"
	"github.com/parley-chat/parley/transport/socketio"
	"github.com/parley-chat/parley/transport/socketio/siochat"
)

// rawClient speaks Engine.IO long-polling by hand.
type rawClient struct {
	t    *testing.T
	url  string
	sid  string
	seen []string
}

func (c *rawClient) do(method, body string) string {
	c.t.Helper()
	u := c.url + "/socket.io/?EIO=4&transport=polling"
	if c.sid != "" {
		u += "&sid=" + c.sid
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		c.t.Fatalf("%s %q: %d %s", method, body, res.StatusCode, b)
	}
	return string(b)
}

// next returns the next packet that is not a ping.
func (c *rawClient) next() string {
	c.t.Helper()
	for range 20 {
		if len(c.seen) > 0 {
			p := c.seen[0]
			c.seen = c.seen[1:]
			return p
		}
		for _, p := range strings.Split(c.do(http.MethodGet, ""), "\x1e") {
			if p != "2" {
				c.seen = append(c.seen, p)
			}
		}
	}
	c.t.Fatal("no packet")
	return ""
}

func setup(t *testing.T) (*gateway.Hub, *rawClient) {
	t.Helper()
	return setupLog(t, io.Discard)
}

// setupLog is setup with the node's log (debug level) written to w.
func setupLog(t *testing.T, w io.Writer) (*gateway.Hub, *rawClient) {
	t.Helper()
	hub := gateway.NewHub(0, 0)
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// No service: the tests send only commands that fail before reaching one.
	chat, err := siochat.New(siochat.Config{JWTSecret: "secret"}, hub, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := socketio.NewServer(socketio.Config{Namespaces: map[string]socketio.ConnectFunc{"/": chat.Connect}, Log: log})
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		srv.Drain(ctx)
		hs.Close()
	})
	c := &rawClient{t: t, url: hs.URL}
	open := c.next()
	var o struct{ SID string }
	if err := json.Unmarshal([]byte(open[1:]), &o); err != nil {
		t.Fatalf("open %q: %v", open, err)
	}
	c.sid = o.SID
	return hub, c
}

func TestSocketIOChatRefusals(t *testing.T) {
	hub, c := setup(t)
	bad, _ := auth.Mint("other-secret", "u1", time.Hour)
	// Expired, within the verifier's clock-skew leeway: the socket would
	// end as it opened, racing its own registration.
	expired, _ := auth.Mint("secret", "u1", -2*time.Second)
	for _, payload := range []string{"", `{}`, `{"token":""}`, `{"token":"junk"}`, `{"token":"` + bad + `"}`, `{"token":"` + expired + `"}`} {
		c.do(http.MethodPost, "40"+payload)
		got := c.next()
		var e struct {
			Message string
			Data    struct{ Code string }
		}
		if !strings.HasPrefix(got, "44") || json.Unmarshal([]byte(got[2:]), &e) != nil ||
			e.Data.Code != "unauthorized" || e.Message == "" {
			t.Fatalf("auth %q: %q", payload, got)
		}
	}
	if n := hub.Count(); n != 0 {
		t.Fatalf("refused connects left %d connections in the hub", n)
	}
}

func TestSocketIOChatMapping(t *testing.T) {
	hub, c := setup(t)
	tok, _ := auth.Mint("secret", "u1", time.Hour)
	c.do(http.MethodPost, `40{"token":"`+tok+`"}`)
	if got := c.next(); !strings.HasPrefix(got, `40{"sid":"`) {
		t.Fatalf("connect: %q", got)
	}
	if hub.Count() != 1 {
		t.Fatalf("hub has %d connections", hub.Count())
	}
	// An unknown command is acked with the protocol's error; it is also the
	// connection's first command, which ends the initial hold on pushes.
	c.do(http.MethodPost, `427["no.such",{}]`)
	if got := c.next(); !strings.HasPrefix(got, `437[{"ok":false,"error":{"code":"bad_request","message":"unknown type`) {
		t.Fatalf("ack: %q", got)
	}
	c.do(http.MethodPost, `428["x",{}]`+"\x1e"+`451-9["x",{"_placeholder":true,"num":0}]`+"\x1ebAQ==")
	for _, want := range []string{`438[{"ok":false,"error":{"code":"bad_request"`, `439[{"ok":false,"error":{"code":"bad_request","message":"binary`} {
		if got := c.next(); !strings.HasPrefix(got, want) {
			t.Fatalf("got %q, want %s...", got, want)
		}
	}
	// Invalid UTF-8 is refused, as on /ws (not stored as U+FFFD).
	c.do(http.MethodPost, "4210[\"message.send\",{\"body\":\"a\xffb\"}]")
	if got := c.next(); !strings.HasPrefix(got, `4310[{"ok":false,"error":{"code":"bad_request","message":"data is not valid UTF-8`) {
		t.Fatalf("invalid UTF-8: %q", got)
	}

	hub.Deliver(domain.Delivery{ConversationID: "c1", Seq: 5, Recipients: []string{"u1"},
		Frame: json.RawMessage(`{"type":"message.new","seq":5,"data":{"conversation_id":"c1","seq":5,"body":"hi"}}`)})
	hub.Deliver(domain.Delivery{ConversationID: "c1", Seq: 5, Recipients: []string{"u1"}, // redelivered: dropped
		Frame: json.RawMessage(`{"type":"message.new","seq":5,"data":{"conversation_id":"c1","seq":5,"body":"hi"}}`)})
	hub.Deliver(domain.Delivery{ConversationID: "c1", Recipients: []string{"u1"},
		Frame: json.RawMessage(`{"type":"typing","data":{"conversation_id":"c1","user_id":"u2"}}`)})
	if got := c.next(); got != `42["message.new",{"conversation_id":"c1","seq":5,"body":"hi"},{"seq":5}]` {
		t.Fatalf("push: %q", got)
	}
	if got := c.next(); got != `42["typing",{"conversation_id":"c1","user_id":"u2"}]` {
		t.Fatalf("ephemeral push: %q", got)
	}

	c.do(http.MethodPost, "41") // leaving the namespace leaves the hub
	testenv.WaitFor(t, 5*time.Second, "the connection to leave the hub", func() bool { return hub.Count() == 0 })
}

// When the hub finds a gap in this node's deliveries, the session closes
// cleanly: the client reconnects and syncs.
func TestSocketIOChatResync(t *testing.T) {
	hub, c := setup(t)
	tok, _ := auth.Mint("secret", "u1", time.Hour)
	c.do(http.MethodPost, `40{"token":"`+tok+`"}`)
	c.next()
	hub.Each(func(cl gateway.Client) { cl.(gateway.Resyncer).Resync("test") })
	if got := c.next(); got != "1" {
		t.Fatalf("after resync: %q", got)
	}
	testenv.WaitFor(t, 5*time.Second, "the connection to leave the hub", func() bool { return hub.Count() == 0 })
}

// A socket ends with its token: at exp the server disconnects it ("41",
// "io server disconnect": the client gets a new token before reconnecting).
func TestSocketIOChatTokenExpiry(t *testing.T) {
	hub, c := setup(t)
	tok, _ := auth.Mint("secret", "u1", 1500*time.Millisecond)
	c.do(http.MethodPost, `40{"token":"`+tok+`"}`)
	if got := c.next(); !strings.HasPrefix(got, `40{"sid":"`) {
		t.Fatalf("connect: %q", got)
	}
	if got := c.next(); got != "41" {
		t.Fatalf("at the token's expiry: %q, want the namespace disconnect 41", got)
	}
	testenv.WaitFor(t, 5*time.Second, "the connection to leave the hub", func() bool { return hub.Count() == 0 })
}

// A session id is a bearer credential: the log correlates a session's lines
// by a hash of it, never the sid itself.
func TestSocketIOSidNeverLogged(t *testing.T) {
	var logs safeBuffer
	hub, c := setupLog(t, &logs)
	tok, _ := auth.Mint("secret", "u1", time.Hour)
	c.do(http.MethodPost, `40{"token":"`+tok+`"}`)
	c.next()
	c.do(http.MethodPost, "1") // the client closes the session
	testenv.WaitFor(t, 5*time.Second, "the connection to leave the hub", func() bool { return hub.Count() == 0 })
	testenv.WaitFor(t, 5*time.Second, "the session's log lines", func() bool {
		return strings.Contains(logs.String(), "connection closed") && strings.Contains(logs.String(), "socket.io session closed")
	})
	if strings.Contains(logs.String(), c.sid) {
		t.Fatalf("the sid %s is in the log:\n%s", c.sid, logs.String())
	}
	if !strings.Contains(logs.String(), socketio.SIDForLog(c.sid)) {
		t.Fatalf("the log does not correlate the session by its hash:\n%s", logs.String())
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
