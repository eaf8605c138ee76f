package socketio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/internal/poll"
)

// echo is a namespace like the conformance server's: it emits "auth" with
// the auth payload, answers "message" with "message-back" and acks
// "message-with-ack" with the same arguments.
func echo(s *Socket, auth json.RawMessage) error {
	if auth == nil {
		auth = json.RawMessage("{}")
	}
	if string(auth) == `{"refuse":true}` {
		return &ConnectError{Message: "refused", Data: map[string]string{"code": "nope"}}
	}
	_ = s.EmitBinary("auth", []json.RawMessage{auth}, nil)
	s.OnEvent(func(ev *Event) {
		switch ev.Name {
		case "message":
			_ = s.EmitBinary("message-back", ev.Args, ev.Attachments)
		case "message-with-ack":
			_ = ev.AckBinary(ev.Args, ev.Attachments)
		}
	})
	return nil
}

func testConfig() Config {
	return Config{
		PingInterval: 5 * time.Second, PingTimeout: 5 * time.Second, ConnectTimeout: 5 * time.Second,
		Namespaces: map[string]ConnectFunc{"/": echo, "/custom": echo},
	}
}

func serve(t *testing.T, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	srv := NewServer(cfg)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		srv.Drain(ctx)
		hs.Close()
	})
	return srv, hs
}

// poller is a raw long-polling client.
type poller struct {
	t    *testing.T
	base string
	sid  string
	open map[string]any
}

func (p *poller) url() string {
	u := p.base + "/socket.io/?EIO=4&transport=polling"
	if p.sid != "" {
		u += "&sid=" + p.sid
	}
	return u
}

func (p *poller) do(method, body string) (int, string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, p.url(), strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s: %v", method, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (p *poller) get() string {
	p.t.Helper()
	status, body := p.do(http.MethodGet, "")
	if status != http.StatusOK {
		p.t.Fatalf("GET: %d %s", status, body)
	}
	return body
}

func (p *poller) post(body string) {
	p.t.Helper()
	if status, res := p.do(http.MethodPost, body); status != http.StatusOK || res != "ok" {
		p.t.Fatalf("POST %q: %d %s", body, status, res)
	}
}

// packets polls until n packets (pings skipped) have arrived.
func (p *poller) packets(n int) []string {
	p.t.Helper()
	var got []string
	for range 20 {
		for _, pk := range strings.Split(p.get(), "\x1e") {
			if pk != "2" {
				got = append(got, pk)
			}
		}
		if len(got) >= n {
			return got
		}
	}
	p.t.Fatalf("got %q, want %d packets", got, n)
	return nil
}

func handshake(t *testing.T, base string) *poller {
	t.Helper()
	p := &poller{t: t, base: base}
	body := p.get()
	if !strings.HasPrefix(body, "0") {
		t.Fatalf("open packet: %q", body)
	}
	if err := json.Unmarshal([]byte(body[1:]), &p.open); err != nil {
		t.Fatal(err)
	}
	p.sid = p.open["sid"].(string)
	return p
}

func TestSocketIOPollingSession(t *testing.T) {
	_, hs := serve(t, testConfig())
	p := handshake(t, hs.URL)
	if p.open["upgrades"].([]any)[0] != "websocket" || p.open["pingInterval"] != 5000.0 ||
		p.open["pingTimeout"] != 5000.0 || p.open["maxPayload"] != 1e6 {
		t.Fatalf("open: %v", p.open)
	}
	p.post(`40{"token":"x"}`)
	got := p.packets(2)
	if !strings.HasPrefix(got[0], `40{"sid":"`) || got[1] != `42["auth",{"token":"x"}]` {
		t.Fatalf("connect: %q", got)
	}
	p.post(`42["message",1,"2",{"3":[true]}]` + "\x1e" + `42456["message-with-ack",{"a":1}]`)
	got = p.packets(2)
	if got[0] != `42["message-back",1,"2",{"3":[true]}]` || got[1] != `43456[{"a":1}]` {
		t.Fatalf("echo: %q", got)
	}
	// Binary attachments travel base64-encoded in polling payloads.
	p.post(`452-7["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]` + "\x1ebAQID\x1ebBAUG")
	got = p.packets(3)
	if got[0] != `462-7[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]` || got[1] != "bAQID" || got[2] != "bBAUG" {
		t.Fatalf("binary ack: %q", got)
	}
	// The client closes: the session is gone.
	p.post("1")
	if status, _ := p.do(http.MethodGet, ""); status != http.StatusOK { // the linger answer
		t.Fatalf("GET after close: %d", status)
	}
	if status, _ := p.do(http.MethodGet, ""); status != http.StatusBadRequest {
		t.Fatalf("second GET after close: %d", status)
	}
}

func TestSocketIORequestErrors(t *testing.T) {
	_, hs := serve(t, testConfig())
	cases := []struct {
		method, query string
		status, code  int
	}{
		{"GET", "transport=polling", 400, errUnsupported},
		{"GET", "EIO=3&transport=polling", 400, errUnsupported},
		{"GET", "EIO=abc&transport=polling", 400, errUnsupported},
		{"GET", "EIO=4", 400, errTransportUnknown},
		{"GET", "EIO=4&transport=abc", 400, errTransportUnknown},
		{"POST", "EIO=4&transport=polling", 400, errBadHandshake},
		{"PUT", "EIO=4&transport=polling", 400, errBadHandshake},
		{"GET", "EIO=4&transport=polling&sid=nope", 400, errUnknownSID},
		{"GET", "EIO=4&transport=websocket", 400, errBadRequest}, // no Upgrade header
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, hs.URL+"/socket.io/?"+c.query, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Code int }
		_ = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if res.StatusCode != c.status || body.Code != c.code {
			t.Fatalf("%s %s: %d code %d, want %d code %d", c.method, c.query, res.StatusCode, body.Code, c.status, c.code)
		}
	}
}

func TestSocketIOMalformedPayloadClosesSession(t *testing.T) {
	_, hs := serve(t, testConfig())
	for _, bad := range []string{"abc", "4", "44{}", "42{}", `42abc["x"]`, "bAQID", `451-["x",{"_placeholder":true,"num":0}]` + "\x1e" + `42["x"]`} {
		p := handshake(t, hs.URL)
		p.post("40")
		p.packets(2)
		// Refused at the Engine.IO level (400), or accepted and then the
		// Socket.IO packet in it closed the session: either way it is gone.
		_, _ = p.do(http.MethodPost, bad)
		if status, _ := p.do(http.MethodPost, "3"); status != http.StatusBadRequest {
			t.Fatalf("after %q the session is still open (%d)", bad, status)
		}
	}
}

func dialWS(t *testing.T, base, sid string) *websocket.Conn {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + "/socket.io/?EIO=4&transport=websocket"
	if sid != "" {
		u += "&sid=" + sid
	}
	c, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *websocket.Conn) (int, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		typ, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if typ == websocket.TextMessage && string(b) == "2" {
			continue // ping
		}
		return typ, string(b)
	}
}

func send(t *testing.T, c *websocket.Conn, typ int, msg string) {
	t.Helper()
	if err := c.WriteMessage(typ, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func TestSocketIOWebSocketSession(t *testing.T) {
	_, hs := serve(t, testConfig())
	c := dialWS(t, hs.URL, "")
	_, open := read(t, c)
	if !strings.HasPrefix(open, `0{`) || !strings.Contains(open, `"upgrades":[]`) {
		t.Fatalf("open: %s", open)
	}
	send(t, c, websocket.TextMessage, "40/custom,")
	if _, m := read(t, c); !strings.HasPrefix(m, `40/custom,{"sid":`) {
		t.Fatalf("connect: %s", m)
	}
	if _, m := read(t, c); m != `42/custom,["auth",{}]` {
		t.Fatalf("auth: %s", m)
	}
	send(t, c, websocket.TextMessage, `452-/custom,["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)
	send(t, c, websocket.BinaryMessage, "\x01\x02\x03")
	send(t, c, websocket.BinaryMessage, "\x04\x05\x06")
	want := []struct {
		typ int
		msg string
	}{
		{websocket.TextMessage, `452-/custom,["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`},
		{websocket.BinaryMessage, "\x01\x02\x03"},
		{websocket.BinaryMessage, "\x04\x05\x06"},
	}
	for _, w := range want {
		if typ, m := read(t, c); typ != w.typ || m != w.msg {
			t.Fatalf("got %d %q, want %d %q", typ, m, w.typ, w.msg)
		}
	}
	send(t, c, websocket.TextMessage, "40/nope")
	if _, m := read(t, c); m != `44/nope,{"message":"Invalid namespace"}` {
		t.Fatalf("unknown namespace: %s", m)
	}
	send(t, c, websocket.TextMessage, `40{"refuse":true}`)
	if _, m := read(t, c); m != `44{"message":"refused","data":{"code":"nope"}}` {
		t.Fatalf("refused: %s", m)
	}
	send(t, c, websocket.TextMessage, "4abc")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("a malformed packet did not close the connection")
			}
			break
		}
	}
}

func TestSocketIOUpgrade(t *testing.T) {
	srv, hs := serve(t, testConfig())
	p := handshake(t, hs.URL)
	p.post("40")
	p.packets(2)
	c := dialWS(t, hs.URL, p.sid)
	send(t, c, websocket.TextMessage, "2probe")
	if _, m := read(t, c); m != "3probe" {
		t.Fatalf("probe: %s", m)
	}
	if body := p.get(); body != "6" { // the poll is released for the upgrade
		t.Fatalf("poll during the upgrade: %q", body)
	}
	send(t, c, websocket.TextMessage, "5")
	send(t, c, websocket.TextMessage, `42["message","over ws"]`)
	if _, m := read(t, c); m != `42["message-back","over ws"]` {
		t.Fatalf("after upgrade: %s", m)
	}
	if status, _ := p.do(http.MethodGet, ""); status != http.StatusBadRequest {
		t.Fatalf("poll after the upgrade: %d", status)
	}
	// A second upgrade of the same session is refused.
	c2 := dialWS(t, hs.URL, p.sid)
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c2.ReadMessage(); err == nil {
		t.Fatal("second WebSocket for the session was served")
	}
	if srv.Sessions() != 1 {
		t.Fatalf("sessions: %d", srv.Sessions())
	}
}

func TestSocketIOHeartbeat(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval, cfg.PingTimeout = 30*time.Millisecond, 200*time.Millisecond
	srv, hs := serve(t, cfg)
	p := handshake(t, hs.URL)
	p.post("40")
	p.packets(2)
	for range 3 { // answered pings keep the session
		if body := p.get(); body != "2" {
			t.Fatalf("ping: %q", body)
		}
		p.post("3")
	}
	if body := p.get(); body != "2" {
		t.Fatalf("ping: %q", body)
	}
	// Unanswered: the pending poll gets the close packet.
	if body := p.get(); body != "1" {
		t.Fatalf("after the ping timeout: %q", body)
	}
	if status, _ := p.do(http.MethodGet, ""); status != http.StatusBadRequest {
		t.Fatalf("poll of a timed out session: %d", status)
	}
	// The close packet reaches the pending poll before the closing
	// goroutine removes the session (seen under -race in CI).
	poll.Until(t, 5*time.Second, "the timed out session to be removed", func() bool { return srv.Sessions() == 0 })
}

func TestSocketIOConnectTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.ConnectTimeout = 20 * time.Millisecond
	_, hs := serve(t, cfg)
	p := handshake(t, hs.URL)
	if body := p.get(); body != "1" {
		t.Fatalf("no CONNECT: %q", body)
	}
}

// connected is a polling session of a server on cfg, connected to "/".
func connected(t *testing.T, cfg Config) (*Server, *poller, *Socket) {
	t.Helper()
	socks := make(chan *Socket, 1)
	cfg.Namespaces = map[string]ConnectFunc{"/": func(s *Socket, _ json.RawMessage) error { socks <- s; return nil }}
	srv, hs := serve(t, cfg)
	p := handshake(t, hs.URL)
	p.post("40")
	return srv, p, <-socks
}

func TestSocketIOSendQueueOverflow(t *testing.T) {
	cfg := testConfig()
	cfg.SendQueue = 8
	srv, _, s := connected(t, cfg)
	ended := make(chan string, 1)
	s.OnDisconnect(func(reason string) { ended <- reason })
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		err = s.Emit("x", i)
	}
	if !errors.Is(err, ErrOverflow) {
		t.Fatalf("emit past the queue: %v", err)
	}
	select {
	case r := <-ended:
		if r != "send queue overflow" {
			t.Fatalf("reason %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the socket did not end")
	}
	poll.Until(t, 5*time.Second, "the overflowed session to be removed", func() bool { return srv.Sessions() == 0 })
}

func TestSocketIODrain(t *testing.T) {
	srv, hs := serve(t, testConfig())
	p := handshake(t, hs.URL)
	p.post("40")
	p.packets(2)
	done := make(chan string)
	go func() { done <- p.get() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The poll is pending or about to be: either way it gets the close.
	srv.Drain(ctx)
	if body := <-done; body != "1" {
		t.Fatalf("pending poll on drain: %q", body)
	}
	res, err := http.Get(hs.URL + "/socket.io/?EIO=4&transport=polling")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("handshake while draining: %d", res.StatusCode)
	}
}

func TestSocketIOMaxSessions(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSessions = 1
	_, hs := serve(t, cfg)
	handshake(t, hs.URL)
	res, err := http.Get(hs.URL + "/socket.io/?EIO=4&transport=polling")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("handshake past MaxSessions: %d", res.StatusCode)
	}
}

// Sessions that have not joined a namespace (not authenticated) have their
// own cap: past it a handshake closes the oldest of them (a real client
// sends CONNECT one round trip after its handshake; refusing the new one
// let anyone without a token keep every new client out); joining one frees
// a place, and so does the connect timeout.
func TestSocketIOMaxPendingSessions(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPendingSessions = 2
	cfg.ConnectTimeout = 300 * time.Millisecond
	srv, hs := serve(t, cfg)
	oldest := handshake(t, hs.URL)
	p := handshake(t, hs.URL)
	newest := handshake(t, hs.URL) // past the cap: the oldest goes
	if n := srv.PendingSessions(); n != 2 {
		t.Fatalf("%d sessions pending, want the cap of 2", n)
	}
	// Gone at once: not evicted, its GET would wait for the connect
	// timeout and get a close packet with 200.
	if st, body := oldest.do(http.MethodGet, ""); st != http.StatusBadRequest {
		t.Fatalf("the oldest pending session got %d %q, want 400 (closed, forgotten)", st, body)
	}
	newest.post("40")
	if got := newest.packets(1); !strings.HasPrefix(got[0], "40") {
		t.Fatalf("the newest session's CONNECT got %q", got)
	}
	p.post("40")
	poll.Until(t, 5*time.Second, "the joined sessions to leave the pending count", func() bool { return srv.PendingSessions() == 0 })
	handshake(t, hs.URL)
	poll.Until(t, 5*time.Second, "the connect timeout to close the pending session", func() bool { return srv.PendingSessions() == 0 })
	if srv.Sessions() != 2 {
		t.Fatalf("%d sessions open, want the two joined", srv.Sessions())
	}
}

// A session whose last namespace socket left (the client's DISCONNECT, or
// the server's, as at a token's expiry) is pending again: it may CONNECT
// again within the connect timeout, or it is closed. Kept open instead, one
// token could hold sessions past its user's cap, unauthenticated, for as
// long as it answered pings.
func TestSocketIOLeftSessionIsPendingAgain(t *testing.T) {
	cfg := testConfig()
	cfg.ConnectTimeout = 300 * time.Millisecond
	srv, hs := serve(t, cfg)
	stays, leaves := handshake(t, hs.URL), handshake(t, hs.URL)
	for _, p := range []*poller{stays, leaves} {
		p.post("40")
		p.packets(2) // CONNECT's answer, the "auth" event
	}
	poll.Until(t, 5*time.Second, "both sessions joined", func() bool { return srv.PendingSessions() == 0 })
	for _, p := range []*poller{stays, leaves} {
		p.post("41")
	}
	poll.Until(t, 5*time.Second, "the sessions that left pending again", func() bool { return srv.PendingSessions() == 2 })
	stays.post("40")
	poll.Until(t, 5*time.Second, "the connect timeout to close the one that stayed out", func() bool {
		return srv.Sessions() == 1 && srv.PendingSessions() == 0
	})
	if st, body := leaves.do(http.MethodGet, ""); st == http.StatusOK && !strings.Contains(body, "1") {
		t.Fatalf("the session that left got %d %q, want it closed", st, body)
	}
	if got := stays.packets(1); !strings.HasPrefix(got[0], "40") {
		t.Fatalf("the session that joined again got %q", got)
	}
}

func TestSocketIOOrigins(t *testing.T) {
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://app.example"}
	_, hs := serve(t, cfg)
	for origin, want := range map[string]int{"https://app.example": 200, "https://evil.example": 403, "": 200} {
		req, _ := http.NewRequest("GET", hs.URL+"/socket.io/?EIO=4&transport=polling", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("origin %q: %d, want %d", origin, res.StatusCode, want)
		}
		if origin != "" && want == 200 && res.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Fatalf("no CORS header for %q", origin)
		}
	}
}

// staticRouter maps node keys to base URLs.
type staticRouter struct {
	self string
	urls map[string]string
}

func (r *staticRouter) Self() string { return r.self }

func (r *staticRouter) Lookup(_ context.Context, key string) (string, error) {
	if u, ok := r.urls[key]; ok {
		return u, nil
	}
	return "", errors.New("unknown node")
}

// A client whose requests alternate between two nodes keeps one session:
// the node without it forwards to the node that has it, for polls, posts
// and the WebSocket upgrade.
func TestSocketIOForwarding(t *testing.T) {
	urls := map[string]string{}
	cfgA, cfgB := testConfig(), testConfig()
	cfgA.Router = &staticRouter{self: "nodeA", urls: urls}
	cfgB.Router = &staticRouter{self: "nodeB", urls: urls}
	srvA, a := serve(t, cfgA)
	srvB, b := serve(t, cfgB)
	urls["nodeA"], urls["nodeB"] = a.URL, b.URL

	p := handshake(t, a.URL)
	if !strings.HasPrefix(p.sid, "nodeA.") {
		t.Fatalf("sid %q does not name its node", p.sid)
	}
	bases := []string{b.URL, a.URL}
	for i := range 6 { // alternate
		p.base = bases[i%2]
		p.post(`42["message","m"]`)
		if i == 0 {
			p.post("40")
			p.packets(2)
			continue
		}
		if got := p.packets(1); got[0] != `42["message-back","m"]` {
			t.Fatalf("via %s: %q", p.base, got)
		}
	}
	if srvA.Sessions() != 1 || srvB.Sessions() != 0 {
		t.Fatalf("sessions A=%d B=%d, want the session on A only", srvA.Sessions(), srvB.Sessions())
	}
	// The upgrade lands on B and is forwarded to A.
	c := dialWS(t, b.URL, p.sid)
	send(t, c, websocket.TextMessage, "2probe")
	if _, m := read(t, c); m != "3probe" {
		t.Fatalf("probe via B: %s", m)
	}
	p.base = b.URL
	if body := p.get(); body != "6" {
		t.Fatalf("poll during the upgrade: %q", body)
	}
	send(t, c, websocket.TextMessage, "5")
	send(t, c, websocket.TextMessage, `42["message","ws"]`)
	if _, m := read(t, c); m != `42["message-back","ws"]` {
		t.Fatalf("after upgrade via B: %s", m)
	}
	// A session id of an unknown node, and a forwarded request for a
	// session the target does not have, are both answered 400.
	for _, sid := range []string{"nodeZ.x", "nodeA.gone"} {
		q := &poller{t: t, base: b.URL, sid: sid}
		if status, _ := q.do(http.MethodGet, ""); status != http.StatusBadRequest {
			t.Fatalf("sid %s: %d", sid, status)
		}
	}
}

// A forwarded poll answers CORS once: the owner's headers are not added to
// the forwarding node's (two Access-Control-Allow-Origin values make a
// browser refuse the response).
func TestSocketIOForwardedCORSOnce(t *testing.T) {
	urls := map[string]string{}
	cfgA, cfgB := testConfig(), testConfig()
	cfgA.Router = &staticRouter{self: "nodeA", urls: urls}
	cfgB.Router = &staticRouter{self: "nodeB", urls: urls}
	cfgA.AllowedOrigins, cfgB.AllowedOrigins = []string{"https://app.example"}, []string{"https://app.example"}
	_, a := serve(t, cfgA)
	_, b := serve(t, cfgB)
	urls["nodeA"], urls["nodeB"] = a.URL, b.URL
	p := handshake(t, a.URL)
	req, _ := http.NewRequest(http.MethodPost, b.URL+"/socket.io/?EIO=4&transport=polling&sid="+p.sid, strings.NewReader("40"))
	req.Header.Set("Origin", "https://app.example")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || len(res.Header.Values("Access-Control-Allow-Origin")) != 1 ||
		len(res.Header.Values("Access-Control-Allow-Credentials")) != 1 {
		t.Fatalf("forwarded poll: %d, CORS headers %v", res.StatusCode, res.Header)
	}
}

// A session that keeps sending CONNECT (each one a token check, a
// registration and log lines) is closed after MaxConnects.
func TestSocketIOConnectFlood(t *testing.T) {
	srv, hs := serve(t, testConfig())
	p := handshake(t, hs.URL)
	for range MaxConnects {
		p.post("40")
	}
	if srv.Sessions() != 1 {
		t.Fatalf("%d sessions after %d CONNECTs, want the session open", srv.Sessions(), MaxConnects)
	}
	p.do(http.MethodPost, "40")
	poll.Until(t, 5*time.Second, "the flooding session to close", func() bool { return srv.Sessions() == 0 })
}

// TestSocketIOWritesInOrderPastAFullSocket: packets written at once by their
// sender until the socket takes one only in part, then packets queued
// behind it (short ones and ones too long to write at once) reach a client
// that stopped reading whole and in order once it reads.
func TestSocketIOWritesInOrderPastAFullSocket(t *testing.T) {
	cfg := testConfig()
	cfg.SendQueue, cfg.SendQueueBytes = 1<<20, 1<<30
	socks := make(chan *Socket, 1)
	cfg.Namespaces = map[string]ConnectFunc{"/": func(s *Socket, _ json.RawMessage) error { socks <- s; return nil }}
	_, hs := serve(t, cfg)
	c := dialWS(t, hs.URL, "")
	read(t, c) // open
	send(t, c, websocket.TextMessage, "40")
	read(t, c) // connect
	s := <-socks

	pad, big := strings.Repeat("p", 900), strings.Repeat("b", 5000) // big: past inlineWrite
	body := func(i int) string {
		if i%97 == 0 {
			return big
		}
		return pad
	}
	// One sender: a packet is written at once whenever nothing is queued
	// (the writer may still hold the connect reply at first), until the
	// socket is full (a few MB on loopback) and one is left unfinished.
	n := 0
	for ; n < 200000 && s.QueueStats().Unfinished == 0; n++ {
		if err := s.Emit("x", n, pad); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 5*time.Second, "the writer to take the queue", func() bool { return s.QueueStats().Frames == 0 })
	}
	if q := s.QueueStats(); q.Unfinished != 1 || q.Direct < n/2 {
		t.Fatalf("after %d packets: direct %d, unfinished %d", n, q.Direct, q.Unfinished)
	}
	first := n
	for ; n < first+2000; n++ { // queued behind the unfinished frame
		if err := s.Emit("x", n, body(n)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		b := pad
		if i >= first {
			b = body(i)
		}
		if _, m := read(t, c); m != fmt.Sprintf(`42["x",%d,%q]`, i, b) {
			t.Fatalf("packet %d of %d (%d written at once): got %.60q", i, n, first, m)
		}
	}
}

// TestSocketIOWritesAtOncePastAnOldDeadline: a write deadline left by an
// earlier write (here the open packet's, 1 ms) does not fail the packets
// written at once after it passed.
func TestSocketIOWritesAtOncePastAnOldDeadline(t *testing.T) {
	cfg := testConfig()
	cfg.WriteWait = time.Millisecond
	socks := make(chan *Socket, 1)
	cfg.Namespaces = map[string]ConnectFunc{"/": func(s *Socket, _ json.RawMessage) error { socks <- s; return nil }}
	_, hs := serve(t, cfg)
	c := dialWS(t, hs.URL, "")
	read(t, c) // open: written by the writer, through gorilla, with a deadline
	send(t, c, websocket.TextMessage, "40")
	read(t, c)
	s := <-socks
	opened := time.Now()
	poll.Until(t, time.Second, "the deadline to pass", func() bool { return time.Since(opened) > 10*time.Millisecond })
	for i := range 10 {
		if err := s.Emit("x", i); err != nil {
			t.Fatal(err)
		}
		if _, m := read(t, c); m != fmt.Sprintf(`42["x",%d]`, i) {
			t.Fatalf("packet %d: %q", i, m)
		}
	}
	if q := s.QueueStats(); q.Direct < 10 {
		t.Fatalf("%d packets written at once, want 10", q.Direct)
	}
}

// TestSocketIOHeartbeatWaitsForAHandler: a handler that runs on the reader
// longer than the ping timeout (a command the server is slow to finish)
// does not close the session: the client's pong waits behind it.
func TestSocketIOHeartbeatWaitsForAHandler(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval, cfg.PingTimeout = 20*time.Millisecond, 50*time.Millisecond
	release := make(chan struct{})
	cfg.Namespaces = map[string]ConnectFunc{"/": func(s *Socket, _ json.RawMessage) error {
		s.OnEvent(func(ev *Event) {
			if ev.Name == "slow" {
				<-release // past several ping timeouts
			}
			_ = ev.Ack(json.RawMessage(`"done"`))
		})
		return nil
	}}
	_, hs := serve(t, cfg)
	c := dialWS(t, hs.URL, "")
	got := make(chan string, 16)
	var wmu sync.Mutex // one writer at a time on a gorilla connection
	write := func(msg string) {
		wmu.Lock()
		defer wmu.Unlock()
		send(t, c, websocket.TextMessage, msg)
	}
	go func() { // answers every ping, as a client does
		defer close(got)
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			if string(b) == "2" {
				wmu.Lock()
				_ = c.WriteMessage(websocket.TextMessage, []byte("3"))
				wmu.Unlock()
				continue
			}
			got <- string(b)
		}
	}()
	next := func() string {
		select {
		case m, ok := <-got:
			if !ok {
				t.Fatal("the connection closed")
			}
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("no packet")
		}
		return ""
	}
	next() // open
	write("40")
	next() // connect
	write(`421["slow"]`)
	write(`422["fast"]`) // and pongs queue behind the slow one
	start := time.Now()
	poll.Until(t, 5*time.Second, "several ping timeouts to pass", func() bool { return time.Since(start) > 300*time.Millisecond })
	close(release)
	if m := next(); m != `431["done"]` {
		t.Fatalf("slow: %q", m)
	}
	if m := next(); m != `432["done"]` {
		t.Fatalf("fast: %q", m)
	}
}

// A GET whose client does not read its response holds what it took until
// it is written: another GET meanwhile is an overlapping poll (the session
// closes) instead of taking the next payload, so a client that sends GETs
// without reading them cannot make a session hold more than its queue.
func TestSocketIOPollNotReadTakesNoMore(t *testing.T) {
	cfg := testConfig()
	cfg.SendQueue, cfg.SendQueueBytes = 10_000, 64<<20
	srv, p, s := connected(t, cfg)
	p.packets(1) // the CONNECT answer
	// 32 MB: more than the kernel buffers on both ends hold.
	chunk := strings.Repeat("a", 64<<10)
	for i := range 512 {
		if err := s.Emit("x", chunk); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
	conn, err := (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}).Dial("tcp", strings.TrimPrefix(p.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n\r\n", p.sid); err != nil {
		t.Fatal(err)
	}
	sess := srv.session(p.sid)
	poll.Until(t, 5*time.Second, "the unread GET to take the queue", func() bool {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		return sess.inflight > 0
	})
	if status, body := p.do(http.MethodGet, ""); status != http.StatusBadRequest {
		t.Fatalf("a GET while the last is not read: %d %.40q, want 400", status, body)
	}
	poll.Until(t, 5*time.Second, "the session to end", func() bool { return srv.Sessions() == 0 })
}

// A socket disconnected while its namespace handler still runs (the chat's
// token timer firing as the token expires during the connect) is never
// admitted, and its disconnect handler, set after the disconnect, still
// runs once: it releases what the handler took (the hub registration).
// Before, the socket was admitted as ended: its handler never ran, and the
// client's events ran commands on a socket that no longer existed.
func TestSocketIODisconnectedWhileConnecting(t *testing.T) {
	var ended, events atomic.Int32
	cfg := testConfig()
	cfg.Namespaces = map[string]ConnectFunc{"/": func(s *Socket, _ json.RawMessage) error {
		s.Disconnect()
		s.OnEvent(func(*Event) { events.Add(1) })
		s.OnDisconnect(func(string) { ended.Add(1) })
		return nil
	}}
	_, hs := serve(t, cfg)
	p := handshake(t, hs.URL)
	p.post("40")
	if got := p.packets(1); !strings.HasPrefix(got[len(got)-1], "44") {
		t.Fatalf("a socket disconnected as it connected: %q, want CONNECT_ERROR last", got)
	}
	poll.Until(t, 5*time.Second, "the disconnect handler to run", func() bool { return ended.Load() == 1 })
	p.post(`42["message.send",{}]`) // answered once its packets ran
	if n := events.Load(); n != 0 {
		t.Fatalf("an event on a socket that was never admitted ran %d times", n)
	}
	if n := ended.Load(); n != 1 {
		t.Fatalf("the disconnect handler ran %d times, want once", n)
	}
}
