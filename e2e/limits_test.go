package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// Defences against bad clients, each on a node configured with small limits.
func TestLimits(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.RateLimit, env.Cfg.RateBurst = 5, 5
	env.Cfg.SendQueue = 8
	env.Cfg.MaxConnsPerUser = 2
	env.Cfg.MaxConns = 6
	env.Cfg.PingInterval = 200 * time.Millisecond
	env.Cfg.AllowedOrigins = []string{"https://chat.example"}
	env.Cfg.HeaderTimeout = 300 * time.Millisecond
	n := env.StartNode()

	t.Run("RateLimitAnswersWithoutClosing", func(t *testing.T) {
		c := dial(t, env, n, user("r"))
		limited := 0
		for range 20 {
			if err := try(c, "conversation.list", map[string]any{}); err != nil {
				wantCode(t, err, "rate_limited")
				limited++
			}
		}
		if limited == 0 {
			t.Fatal("20 commands at once against a burst of 5 were never rate limited")
		}
		select {
		case <-c.Done():
			t.Fatal("rate limiting closed the connection")
		default:
		}
	})

	t.Run("RateLimitIsPerUserNotPerConnection", func(t *testing.T) {
		u := user("rr")
		conns := []*wsclient.Client{dial(t, env, n, u), dial(t, env, n, u)}
		start, passed := time.Now(), 0
		for i := range 20 {
			if err := try(conns[i%2], "conversation.list", map[string]any{}); err == nil {
				passed++
			} else {
				wantCode(t, err, "rate_limited")
			}
		}
		// One bucket of burst 5 refilled at 5/s; two connections with a
		// bucket each would pass twice that.
		if most := 5 + int(5*time.Since(start).Seconds()) + 1; passed > most {
			t.Fatalf("two connections of one user passed %d commands, one bucket allows at most %d", passed, most)
		}
	})

	t.Run("ConnectionCaps", func(t *testing.T) {
		u := user("cap")
		// The server registers a connection after its handshake: one that
		// answered a command holds its slot, so the third is the one refused.
		for range 2 {
			if err := try(dial(t, env, n, u), "conversation.list", map[string]any{}); err != nil {
				t.Fatal(err)
			}
		}
		c, _, err := wsclient.Dial(context.Background(), n.WS, env.Token(u), wsclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			c.Close()
			t.Fatal("the third connection of a user was not closed")
		}
		var ce *websocket.CloseError
		if !errors.As(c.CloseErr, &ce) || ce.Code != 1013 || !strings.Contains(ce.Text, "too many connections") {
			t.Fatalf("third connection of a user: %v, want close 1013", c.CloseErr)
		}
	})

	t.Run("OriginCheck", func(t *testing.T) {
		for origin, ok := range map[string]bool{"https://evil.example": false, "https://chat.example": true, "": true} {
			h := http.Header{}
			if origin != "" {
				h.Set("Origin", origin)
			}
			c, resp, err := wsclient.Dial(context.Background(), n.WS, env.Token(user("or")), wsclient.Options{Header: h})
			if ok != (err == nil) {
				t.Fatalf("origin %q: err %v", origin, err)
			}
			if !ok && resp.StatusCode != http.StatusForbidden {
				t.Fatalf("origin %q: status %d, want 403", origin, resp.StatusCode)
			}
			if c != nil {
				c.Close()
			}
		}
	})

	t.Run("IdleClientIsKeptAlive", func(t *testing.T) {
		// Pings come from a timer that re-arms itself: a client that reads
		// (and so answers them) outlives many pong deadlines while idle.
		c := dial(t, env, n, user("idle"))
		select {
		case <-c.Done():
			t.Fatalf("an idle client answering pings was closed: %v", c.CloseErr)
		case <-time.After(10 * env.Cfg.PingInterval): // five pong deadlines
		}
		if err := try(c, "conversation.list", map[string]any{}); err != nil {
			t.Fatalf("idle connection no longer answers: %v", err)
		}
	})

	t.Run("SilentClientIsDropped", func(t *testing.T) {
		// A client that never reads never answers pings: half-open.
		u := user("silent")
		h := http.Header{"Authorization": {"Bearer " + env.Token(u)}}
		ws, _, err := websocket.DefaultDialer.Dial(n.WS, h)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		testenv.WaitFor(t, 20*time.Second, "silent connection dropped", func() bool {
			return env.Logs.HasLine(`"connection closed"`, `"user_id":"`+u+`"`, "i/o timeout")
		})
	})

	t.Run("SlowlorisIsCutOff", func(t *testing.T) {
		conn, err := net.Dial("tcp", n.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Headers that never end: one byte, then silence.
		if _, err := conn.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nX-Slow: a")); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 512)
		for {
			if _, err = conn.Read(buf); err != nil {
				break
			}
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server kept a connection whose headers never ended")
		}
	})

	t.Run("SlowReaderIsClosed", func(t *testing.T) {
		writerUser := user("w")
		writer := dial(t, env, n, writerUser)
		slowUser := user("slow")
		conv := createGroup(t, writer, slowUser)
		h := http.Header{"Authorization": {"Bearer " + env.Token(slowUser)}}
		ws, _, err := websocket.DefaultDialer.Dial(n.WS, h)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		closed := make(chan error, 1)
		body := strings.Repeat("x", 8000)
		// Keep the reader silent until the server gives up on it; bounded.
		// Writes go through the HTTP API, which the per-connection limit
		// does not cover.
		url := n.HTTP + "/api/v1/conversations/" + conv.ConversationID + "/messages"
		tok := env.Token(writerUser)
		go func() {
			for i := 0; i < 3000; i++ {
				req, _ := http.NewRequest("POST", url, strings.NewReader(fmt.Sprintf(`{"client_msg_id":"s%d","body":%q}`, i, body)))
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				resp.Body.Close()
				select {
				case <-closed:
					return
				default:
				}
			}
		}()
		testenv.WaitFor(t, 60*time.Second, "slow reader closed", func() bool {
			return env.Logs.Contains(`"reason":"send queue overflow: client reads too slowly"`)
		})
		close(closed)
		// Reading now drains what was queued, then the close frame with 1008.
		_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			if _, _, err = ws.ReadMessage(); err != nil {
				break
			}
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 1008 {
			t.Fatalf("slow reader got %v, want close 1008", err)
		}
	})

	t.Run("NodeCap", func(t *testing.T) {
		var opened []*wsclient.Client
		defer func() {
			for _, c := range opened {
				c.Close()
			}
		}()
		for i := 0; i < 10; i++ {
			c, _, err := wsclient.Dial(context.Background(), n.WS, env.Token(user("nc")), wsclient.Options{})
			if err != nil {
				t.Fatal(err)
			}
			opened = append(opened, c)
			// An accepted connection answers; a refused one is closed at once.
			if _, err := c.Request(context.Background(), "conversation.list", map[string]any{}); err == nil {
				continue
			}
			<-c.Done()
			var ce *websocket.CloseError
			if errors.As(c.CloseErr, &ce) && ce.Code == 1013 && strings.Contains(ce.Text, "node is full") {
				return
			}
			t.Fatalf("unexpected close %v", c.CloseErr)
		}
		t.Fatal("node cap of 6 connections never refused one of 10")
	})
}

// The HTTP API limits each user's calls (CHAT_API_RATE_LIMIT/BURST): past
// the burst a call gets 429 rate_limited with Retry-After, and another
// user is not affected.
func TestAPIRateLimit(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.APIRateLimit, env.Cfg.APIRateBurst = 1, 3
	n := env.StartNode()
	get := func(u string) (*http.Response, map[string]map[string]string) {
		req, _ := http.NewRequest(http.MethodGet, n.HTTP+"/api/v1/conversations", nil)
		req.Header.Set("Authorization", "Bearer "+env.Token(u))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp, body
	}
	busy := user("api")
	limited := 0
	start := time.Now()
	for range 10 {
		resp, body := get(busy)
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			limited++
			if body["error"]["code"] != "rate_limited" || body["error"]["message"] == "" {
				t.Fatalf("429 body %v, want error code rate_limited with a message", body)
			}
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
				t.Fatalf("Retry-After %q, want whole seconds >= 1", resp.Header.Get("Retry-After"))
			}
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	// At most the burst plus one token per second the loop took went through.
	if allowed, most := 10-limited, 3+int(time.Since(start).Seconds())+1; limited == 0 || allowed > most {
		t.Fatalf("%d of 10 calls went through against a burst of 3 at 1/s (at most %d expected)", allowed, most)
	}
	if resp, _ := get(user("other")); resp.StatusCode != http.StatusOK {
		t.Fatalf("another user's call: status %d", resp.StatusCode)
	}
}
